"""Training CLI: missing data, config errors, a tiny end-to-end run, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tags_tf.training import dataset_resolver
from tags_tf.config import get_config
from tags_tf.testing import run_train, tiny_set_args, write_tiny_shards
from tests.conftest import REPO


def test_missing_data_names_the_files_and_the_command(tmp_path):
    proc = run_train(["--dataset", "anet", "--data-dir", str(tmp_path / "nothing")], timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "manifest.json" in proc.stderr and "python -m beam.build_shards" in proc.stderr
    assert str(tmp_path / "nothing") in proc.stderr


def test_unknown_config_key_is_a_one_line_error(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards")
    proc = run_train(["--dataset", str(shards), "--set", "model.nope=1"], timeout=120)
    assert proc.returncode == 2 and "unknown config key 'model.nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_shard_directory_takes_classes_and_dim_from_its_manifest(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards", dim=2048)
    resolved = dataset_resolver.resolve(str(shards))
    assert resolved.preset == "thumos"  # 3 classes, 2048-d: closer to THUMOS than ActivityNet
    cfg = dataset_resolver.config_for(resolved, {})
    assert cfg.model.num_classes == 3 and cfg.model.feature_dim == 2048
    # 16 training videos: the recipe fitted to them (batch 8 floor, cosine, the fitted peak).
    assert cfg.train.learning_rate == pytest.approx(get_config("thumos").train.fit_learning_rate)
    assert cfg.train.schedule == "cosine" and cfg.train.batch_size == 8


@pytest.mark.slow
def test_tiny_run_writes_everything_and_resumes_for_more_epochs(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards")
    work = tmp_path / "run"
    args = ["--dataset", str(shards), "--workdir", str(work), "--epochs", "2", "--batch-size", "4", "--keras-verbose", "0"]
    for s in tiny_set_args():
        args += ["--set", s]
    proc = run_train(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.json", "best.keras", "last.keras", "metrics.jsonl", "val_detections.json",
                 "summary.json", "class_names.json"):
        assert (work / name).exists(), name
    assert (work / "export" / "tags" / "1" / "saved_model.pb").exists()
    assert any((work / "plots").glob("*.png"))
    assert any((work / "tensorboard").rglob("*tfevents*"))
    rows = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"cls_loss", "mask_loss", "pp_loss", "fc_loss", "lr", "val_mAP"} <= set(rows[0])
    assert "avg" in proc.stdout  # the mAP table

    # The same command again does nothing; --resume continues to 3 epochs.
    again = run_train(args)
    assert again.returncode == 0 and "finished run" in again.stderr
    more = run_train([*args[:5], "3", *args[6:], "--resume", "--no-export"])
    assert more.returncode == 0, more.stderr[-3000:]
    rows = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


@pytest.mark.slow
def test_sigkill_mid_run_then_same_command_finishes_continuously(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards", num_train=32)
    work = tmp_path / "run"
    args = ["--dataset", str(shards), "--workdir", str(work), "--epochs", "6", "--batch-size", "4",
            "--keras-verbose", "0", "--no-export"]
    for s in tiny_set_args():
        args += ["--set", s]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "tags_tf.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = work / "metrics.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline:  # kill once 2 epochs are logged (mid-run)
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("training ended before it could be killed")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Rows are written before the epoch's backup commits it (tags_tf.training.checkpointing), so
    # the committed epoch is the backup's: 1 or 2 here, whichever instant the kill hit.
    done_before = json.loads((work / "backup" / "training_metadata.json").read_text())["epoch"]
    assert 1 <= done_before < 6 and done_before <= len(metrics.read_text().splitlines())
    assert not (work / "state.json").exists()

    again = run_train(args)
    assert again.returncode == 0, again.stderr[-3000:]
    # It restarted after the last backed-up epoch, not from scratch.
    assert f"training from epoch {done_before + 1} to 6" in again.stderr
    rows = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]  # continuous: no epoch lost or repeated
    assert all(np.isfinite(r["loss"]) for r in rows)
    state = json.loads((work / "state.json").read_text())
    assert state == {"finished": True, "epochs": 6}


def test_held_out_subset_is_separate_from_training_and_validation():
    from tags_tf.training.trainer import held_out_subset

    from tags_tf.data.schema import Manifest

    manifest = Manifest([], None, subsets={"training": {}, "validation": {}, "Test": {}})
    assert held_out_subset(manifest, "test", ("training", "validation")) == "Test"
    # THUMOS validates on its test subset: then there is nothing held out.
    assert held_out_subset(manifest, "test", ("training", "Test")) is None
    no_test = Manifest([], None, subsets={"training": {}, "validation": {}})
    assert held_out_subset(no_test, "test", ("training", "validation")) is None


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards")
    work = tmp_path / "run"
    args = ["--dataset", str(shards), "--workdir", str(work), "--epochs", "2", "--batch-size", "4", "--dry-run",
            "--set", "train.min_steps=20"]
    for s in tiny_set_args():
        args += ["--set", s]
    proc = run_train(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 16 training videos at batch 4: 4 steps per epoch; min_steps 20 stretches 2 epochs to 5.
    assert "steps: 4 per epoch (batch 4) x 5 epochs = 20" in proc.stdout, proc.stdout
    assert "s per training step" in proc.stdout and "estimated wall time" in proc.stdout
    assert not work.exists()


def test_dry_run_counts_windows_of_long_videos(tmp_path):
    from tags_tf.data.windows import num_windows

    shards = write_tiny_shards(tmp_path / "shards")
    lengths = [len(v["features"]) for v in _shard_records(shards, "training")]
    windows = sum(num_windows(t, 8, 4) for t in lengths)
    args = ["--dataset", str(shards), "--workdir", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "4",
            "--dry-run"]
    for s in tiny_set_args(**{"data.window_snippets": 8}):
        args += ["--set", s]
    proc = run_train(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"16 training videos ({windows} windows)" in proc.stdout, proc.stdout
    assert f"steps: {windows // 4} per epoch (batch 4)" in proc.stdout, proc.stdout


def _shard_records(shard_dir, subset):
    import tensorflow as tf

    from tags_tf.data.features import example_to_numpy

    files = tf.io.gfile.glob(f"{shard_dir}/{subset}-*")
    return [example_to_numpy(r.numpy()) for r in tf.data.TFRecordDataset(files)]


@pytest.mark.slow
def test_early_stopping_ends_a_run_that_stops_improving(tmp_path):
    # Learning rate 0: validation mAP cannot improve after epoch 1, so patience 1 stops
    # the run after epoch 2 of 5; the run is finished and evaluated as usual.
    shards = write_tiny_shards(tmp_path / "shards")
    work = tmp_path / "run"
    args = ["--dataset", str(shards), "--workdir", str(work), "--epochs", "5", "--batch-size", "4", "--keras-verbose", "0",
            "--no-export"]
    for s in tiny_set_args(**{"train.early_stopping_patience": 1, "train.learning_rate": 0.0}):
        args += ["--set", s]
    proc = run_train(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (work / "summary.json").exists()


def _long_video_shards(shard_dir, num_train=48, num_val=12, dim=8, seed=0):
    """Videos of 60-120 snippets (2 s each) with 3-6 short instances (3-6 snippets) of 3
    classes whose features carry the class prototype: many short actions per video."""
    from tags_tf.data.features import make_example
    from tags_tf.data.schema import MANIFEST_NAME, Manifest
    from tags_tf.data.tfrecord import write_shards

    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(3, dim)) * 2.0
    counts = {}
    for subset, n in (("training", num_train), ("validation", num_val)):
        records = []
        for i in range(n):
            t = int(rng.integers(60, 121))
            feats = rng.normal(size=(t, dim)) * 0.3
            slots = rng.choice(np.arange(0, t - 8, 10), size=int(rng.integers(3, 7)), replace=False)
            segs, labels = [], []
            for a in sorted(slots):
                b, c = a + int(rng.integers(3, 7)), int(rng.integers(0, 3))
                feats[a:b] += protos[c]
                segs.append([2.0 * a, 2.0 * b])
                labels.append(c)
            records.append(make_example(f"{subset}_{i}", subset, 2.0 * t, feats, segs, labels,
                                        [f"class{c}" for c in labels]).SerializeToString())
        write_shards(str(shard_dir), subset, records, num_shards=1)
        counts[subset] = {"videos": n}
    manifest = Manifest.from_dict({"class_names": ["class0", "class1", "class2"], "feature_dim": dim,
                                   "subsets": counts})
    (shard_dir / MANIFEST_NAME).write_text(manifest.to_json())
    return shard_dir


@pytest.mark.slow
def test_a_model_trained_on_windows_learns_long_videos_with_short_actions(tmp_path):
    """Windows of 16 native snippets (the tiny model's T) over 60-120-snippet videos: the
    validation mAP of the windowed model is high, and above the same model fed whole
    videos squeezed to 16 snippets (instances of 3-6 snippets shrink to about one)."""
    shards = _long_video_shards(tmp_path / "shards")
    scores = {}
    for name, window in (("windows", 16), ("whole", 0)):
        work = tmp_path / name
        args = ["--dataset", str(shards), "--workdir", str(work), "--epochs", "6", "--batch-size", "8",
                "--keras-verbose", "0", "--no-export", "--preset", "thumos"]
        for s in tiny_set_args(**{"data.window_snippets": window, "model.scales": (1,),
                                  "postprocess.max_detections": 50}):
            args += ["--set", s]
        proc = run_train(args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((work / "summary.json").read_text())
        scores[name] = summary["average_mAP"]  # validation, best checkpoint
    print("validation mAP", scores)
    assert scores["windows"] > 0.5, scores
    assert scores["windows"] > scores["whole"] + 0.2, scores
