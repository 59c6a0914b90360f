"""Shared test fixtures and helpers (the ones benchmarks also use are in tags_tf/testing.py)."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

# Test files whose float results depend on which CPU kernels TensorFlow uses (oneDNN or
# Eigen, TF_ENABLE_ONEDNN_OPTS): marked "kernels", run by .ci/run under both. Paths under
# tests/, which mirrors the package.
KERNEL_SENSITIVE = {
    "tags_tf/model/test_layers.py", "tags_tf/model/test_losses.py", "tags_tf/decode/test_postprocess.py",
    "tags_tf/model/test_tags_model.py", "tags_tf/decode/test_actionness.py", "tags_tf/model/test_labels.py", "tags_tf/test_ops.py",
    "tags_tf/data/test_resample.py", "beam/encoders/test_movinet_cpu_conv3d.py", "serving/test_export.py",
    "benchmarks/test_roofline.py",
}
_MISSING = sorted(rel for rel in KERNEL_SENSITIVE if not (TESTS / rel).is_file())
if _MISSING:  # a moved or renamed test file would silently lose its marker
    raise pytest.UsageError(f"tests/conftest.py KERNEL_SENSITIVE names missing files: {_MISSING}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS) and path.relative_to(TESTS).as_posix() in KERNEL_SENSITIVE:
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


# ---- the corpus of bad beam.build_shards inputs (test_faults_beam, test_dask_runner) ----

FEATURE_DIM = 6  # of the corpus's feature files
NUM_GOOD = 21


def _good(t=8, seed=0):
    return np.random.default_rng(seed).normal(size=(t, FEATURE_DIM)).astype(np.float32)


def _entry(subset="training", duration=10.0, segments=((1.0, 4.0),)):
    return {"subset": subset, "duration": duration,
            "annotations": [{"segment": list(s), "label": "run"} for s in segments]}


@dataclass(frozen=True)
class Bad:
    """One bad input: ``make(feat_dir)`` writes its feature file(s) and returns
    ``(video_id, annotation entry)``; ``reason`` is the expected dead-letter reason."""

    kind: str
    make: Callable
    reason: str


def _npy(feat_dir, vid, arr):
    np.save(feat_dir / f"{vid}.npy", arr)


def _nan():
    a = _good()
    a[2, 3] = np.nan
    return a


def _inf():
    a = _good()
    a[5, 0] = np.inf
    return a


BAD = [
    Bad("missing feature file", lambda f: ("b_missing", _entry()), "missing_feature_file"),
    Bad("empty feature file",
        lambda f: ((f / "b_empty.npy").write_bytes(b""), ("b_empty", _entry()))[1], "empty_file"),
    Bad("garbage feature file",
        lambda f: ((f / "b_garbage.npy").write_bytes(b"\x93NUMPY garbage \x00\xff" * 7), ("b_garbage", _entry()))[1],
        "unreadable_file"),
    Bad("wrong width", lambda f: (_npy(f, "b_width", np.ones((8, FEATURE_DIM + 3), np.float32)), ("b_width", _entry()))[1],
        "wrong_feature_dim"),
    Bad("NaN", lambda f: (_npy(f, "b_nan", _nan()), ("b_nan", _entry()))[1], "non_finite_values"),
    Bad("Inf", lambda f: (_npy(f, "b_inf", _inf()), ("b_inf", _entry()))[1], "non_finite_values"),
    Bad("one snippet", lambda f: (_npy(f, "b_one", _good(1)), ("b_one", _entry()))[1], "too_few_snippets"),
    Bad("end < start", lambda f: (_npy(f, "b_reversed", _good()),
                                  ("b_reversed", _entry(segments=((1.0, 4.0), (30.0, 20.0)))))[1], "bad_segment"),
    Bad("negative duration", lambda f: (_npy(f, "b_negdur", _good()), ("b_negdur", _entry(duration=-5.0)))[1],
        "bad_duration"),
    Bad("'..' id", lambda f: (_npy(f, "b_dots", _good()), ("../b_dots", _entry()))[1], "unsafe_video_id"),
    Bad("duplicate id", lambda f: (_npy(f, "b_twice", _good()), ("b_twice", _entry()))[1], "duplicate_video_id"),
]


def _json_with_duplicate(db: dict, twice: str) -> str:
    """The annotation file text, with video ``twice`` listed a second time (raw JSON:
    a dict cannot hold a key twice)."""
    body = json.dumps({"version": "1.3", "taxonomy": [], "database": db})
    again = json.dumps({twice: _entry(subset="validation", duration=12.0)})[1:-1]
    return body[:-2] + ", " + again + "}}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(annotation file, feature directory, good video ids, {bad video id: expected reason})."""
    root = tmp_path_factory.mktemp("corpus")
    feat_dir = root / "feats"
    feat_dir.mkdir()
    db, good = {}, []
    for i in range(NUM_GOOD):
        vid = f"g{i:02d}"
        _npy(feat_dir, vid, _good(6 + i % 5, seed=i))
        db[vid] = _entry("training" if i < 15 else "validation", 10.0 + i,
                         ((1.0, 3.0), (4.0, 9.0)) if i % 2 else ((0.5, 2.5),))
        good.append(vid)
    expected = {}
    for bad in BAD:
        vid, entry = bad.make(feat_dir)
        db[vid] = entry
        expected[vid] = bad.reason
    ann = root / "anet.json"
    ann.write_text(_json_with_duplicate(db, "b_twice"))
    assert len(db) == NUM_GOOD + len(BAD) == 32 and len({b.kind for b in BAD}) == 11
    return ann, feat_dir, good, expected
