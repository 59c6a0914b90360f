"""tags_tf/kernels.py: --kernels picks oneDNN or Eigen before TensorFlow loads; both agree."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tags_tf import kernels
from tests.conftest import REPO


def _select_in_fresh_process(code: str, env_value: str | None = None) -> str:
    # A fresh interpreter: TensorFlow not imported yet, the variable as given.
    env = {k: v for k, v in os.environ.items() if k != kernels.ENV}
    if env_value is not None:
        env[kernels.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", "import os\nfrom tags_tf import kernels\n" + code],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_auto_picks_by_workload_and_keeps_what_the_user_exported():
    show = "print(kernels.select({}), os.environ[kernels.ENV])"
    assert _select_in_fresh_process(show.format("'auto', 'batch'")).endswith(" 1")
    assert _select_in_fresh_process(show.format("'auto', 'latency'")).endswith(" 0")
    assert _select_in_fresh_process(show.format("'auto', 'small'")).endswith(" 0")
    kept = _select_in_fresh_process(show.format("'auto', 'batch'"), env_value="0")
    assert "as set in the environment" in kept and kept.endswith(" 0")
    forced = _select_in_fresh_process(show.format("'onednn', 'latency'"), env_value="0")
    assert "as asked" in forced and forced.endswith(" 1")


def test_argv_parsing_and_bad_values():
    assert kernels.choice_from_argv(["--dataset", "demo", "--kernels", "eigen"]) == "eigen"
    assert kernels.choice_from_argv(["--kernels=onednn"]) == "onednn"
    assert kernels.choice_from_argv(["--dataset", "demo"]) == "auto"
    with pytest.raises(ValueError, match="--kernels must be one of"):
        kernels.select("mkl")
    with pytest.raises(ValueError, match="workload"):
        kernels.select("auto", "serving")


def test_too_late_once_tensorflow_is_imported():
    # This test process has imported TensorFlow (conftest / other tests): nothing changes.
    import tensorflow  # noqa: F401

    before = os.environ.get(kernels.ENV)
    flip = "eigen" if before == "1" else "onednn"
    assert "unchanged" in kernels.select(flip)
    assert os.environ.get(kernels.ENV) == before


_FORWARD = """
import json, sys
import numpy as np
from tags_tf import kernels
kernels.select(sys.argv[1])
import keras, tensorflow as tf
from tags_tf.config import get_config
from tags_tf.model.tags_model import TagsModel
from tags_tf.decode.decoder import DetectionDecoder
cfg = get_config("demo", {"model.num_classes": 3, "model.feature_dim": 8, "model.base_snippets": 16,
                          "model.embed_dim": 32, "model.dropout": 0.0})
keras.utils.set_random_seed(0)
model = TagsModel(cfg)
x = np.random.default_rng(0).normal(size=(4, 32, 8)).astype("float32")
out = model(x, training=False)
det = DetectionDecoder.from_tags_config(cfg)(out, tf.constant([10.0, 20.0, 30.0, 40.0]))
print(json.dumps({"outputs": {k: np.asarray(v).tolist() for k, v in out.items()},
                  "segments": det["detection_segments"].numpy()[:, :5].tolist(),
                  "scores": det["detection_scores"].numpy()[:, :5].tolist()}))
"""


@pytest.mark.slow
def test_onednn_and_eigen_give_the_same_outputs_and_detections():
    runs = {}
    for choice in ("onednn", "eigen"):
        env = {k: v for k, v in os.environ.items() if k != kernels.ENV}
        out = subprocess.run([sys.executable, "-c", _FORWARD, choice], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[choice] = json.loads(out.stdout.strip().splitlines()[-1])
    a, b = runs["onednn"], runs["eigen"]
    # float32 through ~10 layers: a few ulps per op, compounded; 1e-4 relative is far
    # above that and far below any change in a detection.
    for key in a["outputs"]:
        np.testing.assert_allclose(a["outputs"][key], b["outputs"][key], rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(a["segments"], b["segments"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4, atol=1e-6)
