"""Tests of the per-snippet detection baseline (tags_tf.baseline)."""

from __future__ import annotations

import numpy as np
import pytest

from tags_tf import baseline as B

CLASS_NAMES = ["jump", "run"]


# ---------------------------------------------------------------------------- data


def _synthetic_videos(num_videos: int, seed: int, feature_dim: int = 8, num_snippets: int = 50) -> list[dict]:
    """Videos whose snippets inside an instance of class c are ``prototype[c] + noise``.

    One or two non-overlapping instances per video, 6-12 snippets long, random class.
    """
    rng = np.random.default_rng(seed)
    prototypes = 2.0 * rng.standard_normal((len(CLASS_NAMES) + 1, feature_dim))  # last: background
    videos = []
    for i in range(num_videos):
        duration = float(rng.uniform(30.0, 120.0))
        step = duration / num_snippets
        starts = sorted(rng.choice(np.arange(2, num_snippets - 14), size=2, replace=False))
        if starts[1] - starts[0] < 14:  # would overlap: keep one instance
            starts = starts[:1]
        cls = np.full((num_snippets,), len(CLASS_NAMES))
        segments, labels = [], []
        for s in starts:
            length, label = int(rng.integers(6, 13)), int(rng.integers(len(CLASS_NAMES)))
            cls[s:s + length] = label
            segments.append((s * step, (s + length) * step))
            labels.append(label)
        feats = prototypes[cls] + 0.8 * rng.standard_normal((num_snippets, feature_dim))
        videos.append({"video_id": f"v{i:03d}", "features": feats.astype(np.float32), "duration": duration,
                       "segments": np.asarray(segments, np.float64), "labels": np.asarray(labels, np.int64)})
    return videos


def _ground_truth(videos):
    return {v["video_id"]: {"segments": v["segments"], "labels": v["labels"], "duration": v["duration"]}
            for v in videos}


def _average_map(model, videos) -> float:
    from tags_tf.evaluation.evaluator import Evaluator

    detections = B.detect_snippet_baseline(model, videos)
    return Evaluator(CLASS_NAMES, "anet").evaluate(detections, _ground_truth(videos)).average_mAP


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def split():
    videos = _synthetic_videos(40, seed=0)
    return videos[:30], videos[30:]


def test_fitted_baseline_beats_untrained_and_shuffled(split):
    train, held_out = split
    fitted = _average_map(B.fit_snippet_baseline(train, num_classes=2), held_out)
    untrained = _average_map(B.fit_snippet_baseline(train, num_classes=2, steps=0), held_out)
    # Snippet features permuted across the whole training set, annotations kept: the
    # targets no longer depend on the features. (Shuffling within a video, or swapping
    # annotations between videos, keeps some signal: a video's own class and the
    # always-background video edges still correlate with its features.)
    snippets = np.concatenate([v["features"] for v in train])  # (30 * 50, 8)
    permuted = snippets[np.random.default_rng(1).permutation(len(snippets))].reshape(len(train), 50, 8)
    shuffled_train = [dict(v, features=f) for v, f in zip(train, permuted)]
    shuffled = _average_map(B.fit_snippet_baseline(shuffled_train, num_classes=2), held_out)
    assert fitted > 0.6
    assert untrained < 0.05  # one whole-video segment per class: tIoU < 0.5 with every instance
    assert shuffled < 0.1


def test_fit_shapes_standardisation_and_determinism(split):
    train, _ = split
    a = B.fit_snippet_baseline(train, num_classes=2, steps=20, seed=3)
    b = B.fit_snippet_baseline(train, num_classes=2, steps=20, seed=3)
    assert a.weights.shape == (8, 3) and a.bias.shape == (3,) and a.num_classes == 2
    np.testing.assert_array_equal(a.weights, b.weights)
    x = np.concatenate([v["features"] for v in train])
    np.testing.assert_allclose(a.mean, x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.std, x.std(0), rtol=1e-5)
    probs = a.probabilities(train[0]["features"])
    assert probs.shape == (50, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_detections_format(split):
    train, held_out = split
    model = B.fit_snippet_baseline(train, num_classes=2, steps=50)
    dets = B.detect_snippet_baseline(model, held_out, max_detections=5)
    assert set(dets) == {v["video_id"] for v in held_out}
    for d in dets.values():
        n = len(d["scores"])
        assert n <= 5
        assert d["segments"].shape == (n, 2) and d["segments"].dtype == np.float64
        assert d["scores"].dtype == np.float64 and d["classes"].dtype == np.int64
        assert np.all(np.diff(d["scores"]) <= 0)


# ---------------------------------------------------------------------------- targets


def test_snippet_targets_centre_rule_and_shortest_wins():
    # T = 10 over 10 s: centres 0.5, 1.5, ..., 9.5.
    segments = [[1.0, 6.0], [3.0, 4.0], [5.6, 5.9], [8.5, 10.0], [0.0, 1.5]]
    labels = [0, 1, 2, 2, 1]
    targets = B.snippet_targets(10, 10.0, np.array(segments), np.array(labels), num_classes=3)
    # 0.5 -> [0, 1.5] (1); 1.5 -> [0, 1.5] is shorter than [1, 6] (1); 3.5 -> [3, 4] (1);
    # [5.6, 5.9] holds no centre; 8.5 -> inclusive start (2); 6.5, 7.5 background (3).
    np.testing.assert_array_equal(targets, [1, 1, 0, 1, 0, 0, 3, 3, 2, 2])


def test_snippet_targets_no_ground_truth():
    np.testing.assert_array_equal(B.snippet_targets(4, 8.0, np.zeros((0, 2)), np.zeros((0,)), 5), [5] * 4)


# ---------------------------------------------------------------------------- decoding


def test_smooth_is_centred_and_truncated_at_edges():
    np.testing.assert_allclose(B.smooth(np.array([0, 0, 3, 0, 0.]), 3), [0, 1, 1, 1, 0])
    np.testing.assert_allclose(B.smooth(np.array([3, 0, 0.]), 3), [1.5, 1, 0])
    np.testing.assert_allclose(B.smooth(np.array([0, 0, 3, 0, 0.]), 2), [0, 1.5, 1.5, 0, 0])
    np.testing.assert_allclose(B.smooth(np.array([1, 2.]), 1), [1, 2])
    assert B.smoothing_window(100, 0.04) == 4 and B.smoothing_window(10, 0.04) == 1


def test_runs_above():
    assert B.runs_above(np.array([0.9, 0.1, 0.6, 0.7, 0.2, 0.8]), 0.5) == [(0, 0), (2, 3), (5, 5)]
    assert B.runs_above(np.array([0.1, 0.2]), 0.5) == []


def test_probabilities_to_segments_by_hand():
    # T = 10 snippets over 20 s (2 s each), K = 3; no smoothing (window 1).
    a = np.array([0.05, 0.35, 0.75, 0.75, 0.35, 0.05, 0.05, 0.25, 0.65, 0.95])
    share = np.array([0.5, 0.2, 0.3])  # every snippet splits its actionness alike
    probs = np.concatenate([a[:, None] * share, 1.0 - a[:, None]], axis=1)  # (10, 4)
    out = B.detect_from_probabilities(probs, 20.0, smooth_fraction=0.0, thresholds=(0.3, 0.5, 0.7))
    # Runs: 0.3 -> (1,4) (8,9); 0.5 -> (2,3) (8,9) dup; 0.7 -> (2,3) dup, (9,9) touching the end.
    # Class scores = share * sum(a^2) / sum(a) = share * 2.765 / 4.2; top-2 = classes 0, 2.
    r = 2.765 / 4.2
    expected = [  # (segment, run mean, class)
        ((18.0, 20.0), 0.95, 0), ((16.0, 20.0), 0.80, 0), ((4.0, 8.0), 0.75, 0), ((18.0, 20.0), 0.95, 2),
        ((2.0, 10.0), 0.55, 0), ((16.0, 20.0), 0.80, 2), ((4.0, 8.0), 0.75, 2), ((2.0, 10.0), 0.55, 2),
    ]
    np.testing.assert_allclose(out["segments"], [e[0] for e in expected])
    np.testing.assert_allclose(out["scores"], [m * share[c] * r for _, m, c in expected])
    np.testing.assert_array_equal(out["classes"], [e[2] for e in expected])

    top3 = B.detect_from_probabilities(probs, 20.0, smooth_fraction=0.0, thresholds=(0.3, 0.5, 0.7),
                                       top_classes=1, max_detections=3)
    np.testing.assert_allclose(top3["segments"], [[18, 20], [16, 20], [4, 8]])
    np.testing.assert_array_equal(top3["classes"], [0, 0, 0])


def test_contrast_run_score_ranks_whole_runs_above_their_cores():
    # The same curve as above, top-1 class, score = run mean - mean of the ceil(.25 len)
    # cells on each side (clipped to the video):
    #  (1,4): .55 - (.05 + .05)/2 = .50; (8,9): .80 - .25 (no cell right of 9) = .55;
    #  (2,3): .75 - (.35 + .35)/2 = .40; (9,9): .95 - .65 = .30.
    a = np.array([0.05, 0.35, 0.75, 0.75, 0.35, 0.05, 0.05, 0.25, 0.65, 0.95])
    share = np.array([0.5, 0.2, 0.3])
    probs = np.concatenate([a[:, None] * share, 1.0 - a[:, None]], axis=1)
    out = B.detect_from_probabilities(probs, 20.0, smooth_fraction=0.0, thresholds=(0.3, 0.5, 0.7),
                                      top_classes=1, score="contrast")
    r = 2.765 / 4.2
    np.testing.assert_allclose(out["segments"], [[16, 20], [2, 10], [4, 8], [18, 20]])
    np.testing.assert_allclose(out["scores"], np.array([0.55, 0.50, 0.40, 0.30]) * 0.5 * r)


def test_no_candidates_gives_empty_arrays():
    probs = np.tile([0.01, 0.01, 0.98], (6, 1))  # actionness 0.02 everywhere
    out = B.detect_from_probabilities(probs, 12.0)
    assert out["segments"].shape == (0, 2) and out["scores"].shape == (0,) and out["classes"].shape == (0,)


# ---------------------------------------------------------------------------- shards


def test_read_shard_videos_round_trip(tmp_path):
    import tensorflow as tf

    from tags_tf.data.features import make_example

    rng = np.random.default_rng(0)
    written = [
        ("a", 10.0, rng.standard_normal((5, 4)), [[1.0, 3.0], [4.0, 9.5]], [1, 0]),
        ("b", 7.5, rng.standard_normal((3, 4)), [[0.0, 7.5]], [2]),
        ("c", 4.0, rng.standard_normal((6, 4)), [], []),
    ]
    with tf.io.TFRecordWriter(str(tmp_path / "training-00000-of-00001.tfrecord")) as w:
        for vid, dur, feats, segs, labels in written:
            w.write(make_example(vid, "training", dur, feats, segs, labels).SerializeToString())
    gz = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(tmp_path / "validation-00000-of-00001.tfrecord.gz"), gz) as w:
        w.write(make_example("z", "validation", 2.0, np.ones((2, 4)), [[0.5, 1.0]], [0]).SerializeToString())

    videos = B.read_shard_videos(str(tmp_path), "training")
    assert [v["video_id"] for v in videos] == ["a", "b", "c"]
    for v, (vid, dur, feats, segs, labels) in zip(videos, written):
        assert v["duration"] == pytest.approx(dur)
        np.testing.assert_allclose(v["features"], feats.astype(np.float32))
        assert v["features"].dtype == np.float32
        np.testing.assert_allclose(v["segments"], np.reshape(segs, (-1, 2)), rtol=1e-6)
        np.testing.assert_array_equal(v["labels"], labels)
        assert v["segments"].shape == (len(labels), 2)

    (val,) = B.read_shard_videos(str(tmp_path), "validation")
    assert val["video_id"] == "z" and val["features"].shape == (2, 4)


def test_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, tags_tf.baseline; assert 'tensorflow' not in sys.modules, 'tf imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
