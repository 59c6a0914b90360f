"""tf.distribute: MirroredStrategy on 2 logical CPUs matches the default strategy;
MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1 completes a run."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tags_tf.testing import tiny_set_args, write_tiny_shards
from tests.conftest import REPO

# Runs trainer.train under one strategy and prints the per-epoch losses as JSON.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()  # same batches in the same order in both runs
    from tags_tf.training import dataset_resolver
    from tags_tf.training import trainer
    from tags_tf.config import parse_set_args
    shards, workdir, which, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    if which == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.get_strategy()
    resolved = dataset_resolver.resolve(shards)
    cfg = dataset_resolver.config_for(resolved, parse_set_args(sets))
    trainer.train(cfg, resolved, workdir, strategy, verbose=0)
    rows = [json.loads(l) for l in open(workdir + "/metrics.jsonl")]
    print("LOSSES=" + json.dumps([r["loss"] for r in rows]) + " REPLICAS=" + str(strategy.num_replicas_in_sync))
    """
)


def _run_strategy(tmp_path, shards, which, sets):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(shards), str(tmp_path / which), which, *sets],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("LOSSES=")][-1]
    losses, replicas = line[len("LOSSES="):].split(" REPLICAS=")
    return np.array(json.loads(losses)), int(replicas)


_CURVES = textwrap.dedent(
    """
    import json
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()
    import keras
    from tags_tf.testing import synthetic_batch, tiny_config
    from tags_tf.model.tags_model import TagsModel
    x, y = synthetic_batch(16)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)
    out = {}
    for name, st in [("default", tf.distribute.get_strategy()),
                     ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
        keras.utils.set_random_seed(0)
        with st.scope():
            model = TagsModel(tiny_config(**{"model.dropout": 0.0}))
            model.compile(optimizer=keras.optimizers.Adam(3e-3))
        hist = model.fit(ds, epochs=4, verbose=0).history
        out[name] = {"replicas": st.num_replicas_in_sync, **hist}
    print("CURVES=" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_default_strategy():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _CURVES], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    curves = json.loads([l for l in proc.stdout.splitlines() if l.startswith("CURVES=")][-1][len("CURVES="):])
    default, mirrored = curves["default"], curves["mirrored"]
    assert (default["replicas"], mirrored["replicas"]) == (1, 2)
    assert default["loss"][-1] < 0.6 * default["loss"][0]  # it trains
    for key in ("loss", "cls_loss", "mask_loss", "pp_loss", "fc_loss"):
        np.testing.assert_allclose(mirrored[key], default[key], rtol=1e-3, err_msg=key)


@pytest.mark.slow
def test_trainer_runs_under_mirrored_strategy(tmp_path):
    # With EMA, the one trainer path that touches mirrored variables itself (tags_tf.training.ema
    # swaps them); without EMA the trainer differs only by that callback.
    shards = write_tiny_shards(tmp_path / "shards", num_train=16)
    sets = tiny_set_args(**{"model.dropout": 0.0, "train.epochs": 2, "train.batch_size": 8,
                            "train.ema_momentum": 0.9})
    losses, replicas = _run_strategy(tmp_path, shards, "mirrored", sets)
    assert replicas == 2 and len(losses) == 2 and np.isfinite(losses).all()
    assert (tmp_path / "mirrored" / "best.keras").exists() and (tmp_path / "mirrored" / "last.keras").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes_on_localhost(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards", num_train=16)
    work = tmp_path / "run"
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    args = [sys.executable, "-m", "tags_tf.train", "--dataset", str(shards), "--workdir", str(work),
            "--epochs", "2", "--batch-size", "4", "--strategy", "multi_worker", "--keras-verbose", "0", "--no-export"]
    for s in tiny_set_args():
        args += ["--set", s]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=600))
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "with 2 replica(s)" in outs[0][1]  # CollectiveAllReduceStrategy = MultiWorkerMirrored
    rows = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # the chief wrote the metrics, once per epoch
    assert (work / "best.keras").exists() and (work / "summary.json").exists()
