"""benchmarks/anet_geometry.py: real ActivityNet geometry, synthetic features."""

import importlib.util
import json
import sys

import numpy as np
import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("anet_geometry", REPO / "benchmarks" / "anet_geometry.py")
ag = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("anet_geometry", ag)
_spec.loader.exec_module(ag)


@pytest.fixture
def anet_files(shared):
    bsn = shared / "datasets" / "activitynet13" / "bsn"
    ann, info = bsn / "anet_anno_action.json", bsn / "video_info_new.csv"
    if not (ann.is_file() and info.is_file()):
        pytest.skip(f"ActivityNet BSN annotation files not found in {bsn}")
    return str(ann), str(info)


def test_build_small_set_matches_real_annotations(tmp_path, anet_files, monkeypatch):
    ann, info = anet_files
    out = tmp_path / "geo"
    shard_dir = ag.build_anet_geometry(str(out), ann, info, num_videos=60, num_classes=5, feature_dim=16, seed=3)
    assert shard_dir == str(out / "shards")

    db = json.load(open(out / "annotations.json"))
    classes = [t["nodeName"] for t in db["taxonomy"]]
    assert len(classes) == 5 and classes == sorted(classes)
    videos = db["database"]
    assert len(videos) == 60
    subsets = [v["subset"] for v in videos.values()]
    assert (subsets.count("training"), subsets.count("validation"), subsets.count("test")) == (42, 9, 9)

    real = json.load(open(ann))
    for vid, v in videos.items():
        entry = real["v_" + vid]
        dur = entry["duration_second"]
        assert v["duration"] == pytest.approx(dur, abs=1e-3)
        expected = [
            (max(0.0, a["segment"][0]), min(dur, a["segment"][1]), a["label"]) for a in entry["annotations"]
        ]
        expected = [e for e in expected if e[1] > e[0]]
        got = [(a["segment"][0], a["segment"][1], a["label"]) for a in v["annotations"]]
        assert len(got) == len(expected) >= 1
        for (gs, ge, gl), (es, ee, el) in zip(got, expected):
            assert gl == el and gl in classes
            assert gs == pytest.approx(es, abs=1e-3) and ge == pytest.approx(ee, abs=1e-3)
        feats = np.load(out / "features" / f"{vid}.npy")
        assert feats.dtype == np.float32 and feats.shape[1] == 16 and 40 <= feats.shape[0] <= 400

    manifest = json.load(open(out / "shards" / "manifest.json"))
    assert manifest["counts"]["written"] == len(videos)
    assert not manifest["counts"].get("rejected_total")
    spec = json.load(open(out / "spec.json"))
    assert (spec["num_videos"], spec["num_classes"], spec["feature_dim"], spec["seed"]) == (60, 5, 16, 3)

    import beam.build_shards

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt although spec.json matches")

    monkeypatch.setattr(beam.build_shards, "run_build_shards", no_rebuild)
    mtime = (out / "annotations.json").stat().st_mtime_ns
    assert ag.build_anet_geometry(str(out), ann, info, num_videos=60, num_classes=5, feature_dim=16, seed=3) == shard_dir
    assert (out / "annotations.json").stat().st_mtime_ns == mtime


def test_selection_is_deterministic_and_activitynet_like(anet_files):
    ann, info = anet_files
    sel = ag.select_videos(ann, info, num_videos=5000, num_classes=60, seed=0)
    stats = ag.summarize(sel)
    assert len(sel.videos) > 1000 and stats["classes"] == 60
    assert 0.6 <= stats["single_instance_share"] <= 0.9  # ActivityNet: 0.75
    assert all(a["label"] in sel.classes for v in sel.videos.values() for a in v["annotations"])
    again = ag.select_videos(ann, info, num_videos=50, num_classes=20, seed=7)
    assert again == ag.select_videos(ann, info, num_videos=50, num_classes=20, seed=7)
    assert again.classes != ag.select_videos(ann, info, num_videos=50, num_classes=20, seed=8).classes
