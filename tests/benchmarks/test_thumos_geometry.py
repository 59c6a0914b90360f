"""benchmarks/thumos_geometry.py: real THUMOS'14 geometry, synthetic features."""

import json

import numpy as np
import pytest

from benchmarks import thumos_geometry as tg
from benchmarks.anet_geometry import render_selection
from benchmarks.anet_geometry import Selection


@pytest.fixture
def thumos_file(shared):
    path = shared / "datasets" / "thumos14" / "thumos14.json"
    if not path.is_file():
        pytest.skip(f"THUMOS'14 annotations not found at {path}")
    return str(path)


def test_selection_keeps_every_video_and_instance_with_thumos_splits(thumos_file):
    sel = tg.select_videos(thumos_file, seed=0)
    real = json.load(open(thumos_file))["database"]
    subsets = [v["subset"] for v in sel.videos.values()]
    # THUMOS Validation (200) -> training; Test (212) -> validation / test halves.
    assert (subsets.count("training"), subsets.count("validation"), subsets.count("test")) == (200, 106, 106)
    assert len(sel.classes) == 20 and sel.classes == sorted(sel.classes)
    for vid, v in sel.videos.items():
        src = real[vid]
        assert (v["subset"] == "training") == (src["subset"].lower() == "validation")
        assert v["duration"] == src["duration"]
        want = [(max(0.0, a["segment"][0]), min(src["duration"], a["segment"][1]), a["label"])
                for a in src["annotations"]]
        want = [w for w in want if w[1] > w[0]]
        assert [(a["segment"][0], a["segment"][1], a["label"]) for a in v["annotations"]] == want
    assert sum(len(v["annotations"]) for v in sel.videos.values()) == 6335  # 6,365 less 30 clipped away
    assert tg.select_videos(thumos_file, seed=0).videos == sel.videos  # deterministic
    assert tg.select_videos(thumos_file, seed=1).videos != sel.videos  # the held-out split moves


def test_share_of_instances_shorter_than_a_snippet_by_hand():
    sel = Selection(classes=["a"], num_candidates=2, videos={
        "v1": {"subset": "training", "duration": 1024.0,
               "annotations": [{"segment": [0.0, 0.2], "label": "a"}, {"segment": [5.0, 7.0], "label": "a"}]},
        "v2": {"subset": "test", "duration": 2048.0,
               "annotations": [{"segment": [0.0, 1.5], "label": "a"}, {"segment": [10.0, 19.0], "label": "a"}]},
    })
    # native 0.25 s: only 0.2 s; whole video at T = 1024: 1 s (v1) and 2 s (v2) snippets ->
    # 0.2 and 1.5; at T = 256: 4 s and 8 s snippets -> 0.2, 2 and 1.5.
    assert tg.shorter_than_a_snippet(sel, 4.0, (256, 1024)) == {"native": 0.25, "whole_T256": 0.75,
                                                                  "whole_T1024": 0.5}


def test_features_have_the_native_snippet_rate(thumos_file):
    sel = tg.select_videos(thumos_file)
    two = Selection(classes=sel.classes, num_candidates=2, videos=dict(list(sel.videos.items())[:2]))
    feats = render_selection(two, 32, 0, (tg.SNIPPET_RATE, tg.SNIPPET_RATE), (tg.MIN_SNIPPETS, 10**7))
    for vid, f in feats.items():
        assert f.shape == (round(sel.videos[vid]["duration"] * 4), 32) and f.dtype == np.float32
