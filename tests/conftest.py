"""Shared test fixtures and helpers."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]

# Test files whose float results depend on which CPU kernels TensorFlow uses (oneDNN or
# Eigen, TF_ENABLE_ONEDNN_OPTS): marked "kernels", run by .ci/run under both.
KERNEL_SENSITIVE = {
    "test_layers.py", "test_losses.py", "test_postprocess.py", "test_movinet_cpu_conv3d.py", "test_model.py",
    "test_actionness.py", "test_labels.py", "test_resample.py", "test_export.py", "test_mask_ops.py",
    "test_roofline.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in KERNEL_SENSITIVE:
            item.add_marker(pytest.mark.kernels)


def shared_dir() -> Path:
    """The ../shared folder (or $TAGS_SHARED_DIR)."""
    env = os.environ.get("TAGS_SHARED_DIR")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture
def shared():
    d = shared_dir()
    if not d.is_dir():
        pytest.skip(f"shared data folder not found at {d} (set TAGS_SHARED_DIR to run this test)")
    return d
