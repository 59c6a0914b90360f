"""Tests for tags_tf/decode/ and tags_tf/decode/class_fusion.py (hand-built P and M)."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tags_tf.decode.class_fusion import ExternalScoresError, external_scores_batch, load_external_scores
from tags_tf.config import ConfigError, PostprocessConfig, get_config
from tags_tf.decode.decoder import DetectionDecoder
from tags_tf.decode.nms import soft_nms
from tags_tf.decode.runs import mask_runs, run_contrast

SIGMA = 0.5  # Bodla's sigma: decay exp(-tIoU^2 / SIGMA).


def _logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1.0 - p)).astype(np.float32)


def _cls_logits(fg, num_classes):
    """(T,) list of (class, prob) or None -> (T, K+1) logits whose softmax has exactly those
    probabilities: the named class gets prob, the rest spread evenly (background included)."""
    rows = []
    for item in fg:
        p = np.full(num_classes + 1, 0.0)
        if item is None:  # background snippet: P_bg = 0.97.
            p[:] = 0.03 / num_classes
            p[num_classes] = 0.97
        else:
            c, prob = item
            p[:] = (1.0 - prob) / num_classes
            p[c] = prob
        rows.append(np.log(p))
    return np.asarray(rows, np.float32)


def _mask_logits(rows, t):
    """{snippet: (T,) mask probabilities} -> (T, T) logits; other rows are 0.01 everywhere."""
    m = np.full((t, t), 0.01)
    for i, row in rows.items():
        m[i] = row
    return _logit(m)


def _two_instance_video():
    """T=10, K=3: instance A (class 0) on snippets 1-3, instance B (class 2) on 6-8."""
    k, t = 3, 10
    fg = [None, (0, 0.5), (0, 0.9), (0, 0.5), None, None, (2, 0.5), (2, 0.8), (2, 0.5), None]
    masks = {
        2: [0.1, 0.8, 0.9, 0.7, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1],  # >0.5 and >0.65: run 1..3.
        7: [0.1, 0.1, 0.1, 0.1, 0.1, 0.3, 0.6, 0.95, 0.6, 0.3],  # >0.5: 6..8; >0.65: 7..7.
    }
    return _cls_logits(fg, k), _mask_logits(masks, t)


def _decoder(num_classes=3, scales=(1,), **kw):
    args = dict(
        mask_thresholds=(0.5, 0.65),
        top_snippets=2,
        soft_nms_sigma=SIGMA,
        pre_nms_top_k=100,
        max_detections=5,
        score_threshold=1e-4,
        mask_score="mean",  # the paper's score: the hand-computed values below use it
    )
    args.update(kw)
    return DetectionDecoder(num_classes, scales, PostprocessConfig(**args))


def _run(decoder, outputs, duration, external=None, mode="eager"):
    outputs = {key: tf.constant(v) for key, v in outputs.items()}
    duration = tf.constant(duration, tf.float32)
    if mode == "eager":
        res = decoder(outputs, duration) if external is None else decoder(outputs, duration, tf.constant(external))
    else:
        fn = tf.function(lambda o, d, e=None: decoder(o, d, e) if e is not None else decoder(o, d))
        res = fn(outputs, duration) if external is None else fn(outputs, duration, tf.constant(external))
    return {key: v.numpy() for key, v in res.items()}


# --------------------------------------------------------------------------- runs


def test_mask_runs_own_run_peak_fallback_and_empty():
    masks = np.array(
        [
            [0.1, 0.6, 0.7, 0.1, 0.8, 0.9, 0.6, 0.1],  # anchor 1 -> its own run 1..2, not the peak's.
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2],  # max 0.5 is not > 0.5 -> no run.
            [0.6, 0.9, 0.1, 0.3, 0.1, 0.7, 0.7, 0.8],  # anchor 3 below -> the peak's run 0..1.
            [0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6],  # one run covering everything.
            [0.1, 0.6, 0.1, 0.9, 0.1, 0.9, 0.1, 0.6],  # tied peaks -> the first one, 3..3.
        ],
        np.float32,
    )
    start, end, valid = mask_runs(masks, tf.constant([1, 3, 3, 7, 0]), tf.constant([0.5, 0.65]))
    # Second threshold: row 0 anchor 1 (0.6) falls below -> peak 5: run 4..5; row 3 has no run.
    np.testing.assert_array_equal(start.numpy(), [[1, 4], [0, 0], [0, 1], [0, 0], [3, 3]])
    np.testing.assert_array_equal(end.numpy(), [[2, 5], [0, 0], [1, 1], [7, 0], [3, 3]])
    np.testing.assert_array_equal(
        valid.numpy(), [[True, True], [False, False], [True, True], [True, False], [True, True]]
    )


# ------------------------------------------------------------ hand-built videos


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_two_instances_give_exact_segments_scores_and_classes(mode):
    cls, mask = _two_instance_video()
    res = _run(_decoder(), {"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}, [20.0], mode=mode)
    # Candidates (duration 20 s, snippet = 2 s):
    #  snippet 7 (class 2, P=0.8): theta .5 -> 6..8, mean (.6+.95+.6)/3; theta .65 -> 7..7, mean .95.
    #  snippet 2 (class 0, P=0.9): theta .5 and .65 -> 1..3, mean .8 (the duplicate is dropped).
    # Soft-NMS: [12, 18] overlaps the kept [14, 16] of its class with tIoU 2/6.
    s_b_wide = 0.8 * (0.6 + 0.95 + 0.6) / 3 * math.exp(-((1 / 3) ** 2) / SIGMA)
    assert res["num_detections"].tolist() == [3]
    np.testing.assert_allclose(res["detection_scores"][0], [0.8 * 0.95, 0.9 * 0.8, s_b_wide, 0, 0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        res["detection_segments"][0], [[14, 16], [2, 8], [12, 18], [0, 0], [0, 0]], atol=1e-5
    )
    assert res["detection_classes"][0].tolist() == [2, 0, 2, -1, -1]


def test_contrast_score_prefers_the_whole_run_to_its_core():
    cls, mask = _two_instance_video()
    res = _run(_decoder(mask_score="contrast"), {"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}, [20.0])
    # Contrast = mean inside - mean of the ceil(0.25 * len) cells on each side.
    #  snippet 7 (P=0.8): theta .5 -> 6..8: 2.15/3 - (.3+.3)/2 = 0.416667 -> 0.333333;
    #    theta .65 -> 7..7: .95 - (.6+.6)/2 = 0.35 -> 0.28 (the mean ranked this core first).
    #  snippet 2 (P=0.9): 1..3: .8 - (.1+.2)/2 = 0.65 -> 0.585.
    # Soft-NMS: [14, 16] overlaps the kept [12, 18] with tIoU 1/3.
    core = 0.28 * math.exp(-((1 / 3) ** 2) / SIGMA)
    np.testing.assert_allclose(res["detection_scores"][0], [0.585, 0.8 * 0.416667, core, 0, 0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res["detection_segments"][0], [[2, 8], [12, 18], [14, 16], [0, 0], [0, 0]], atol=1e-5)


def test_gated_score_cuts_runs_where_the_classifier_sees_background():
    cls, mask = _two_instance_video()
    res = _run(_decoder(mask_score="gated", mask_thresholds=(0.4, 0.7)),
               {"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}, [20.0])
    # Gate 1 - P_bg per position: background snippets .03; (c, .5) -> 1 - .5/3 = .833333;
    #  (0, .9) -> .966667; (2, .8) -> .933333.
    #  snippet 2 (P=.9), gated row [.003,.666667,.87,.583333,.006,.003,.083,.093,.083,.003]:
    #    theta .4 -> 1..3, mean .706667 -> .636; theta .7 -> 2..2, mean .87 -> .783.
    #  snippet 7 (P=.8), gated row [..., .009, .5, .886667, .5, .009]:
    #    theta .4 -> 6..8, mean .628889 -> .503111; theta .7 -> 7..7 -> .709333.
    # Soft-NMS (sigma .5): each wide run overlaps its class's core with tIoU 1/3.
    decay = math.exp(-((1 / 3) ** 2) / SIGMA)
    np.testing.assert_allclose(res["detection_scores"][0], [0.783, 0.709333, 0.636 * decay, 0.503111 * decay, 0],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res["detection_segments"][0], [[4, 6], [14, 16], [2, 8], [12, 18], [0, 0]], atol=1e-5)
    assert res["detection_classes"][0].tolist() == [0, 2, 0, 2, -1]


def test_consensus_contrast_averages_the_rows_of_the_run():
    from tags_tf.decode.runs import consensus_contrast

    masks = tf.constant([[[0.9, 0.8, 0.1, 0.1], [0.7, 0.9, 0.2, 0.1], [0.1, 0.2, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]]])
    start = tf.constant([[[0, 2, 1]]])
    end = tf.constant([[[1, 3, 1]]])
    got = consensus_contrast(masks, start, end, delta=0.25).numpy()[0, 0]
    # [0, 1]: margin ceil(.5) = 1, clipped on the left. Inside rows 0-1 x cols 0-1:
    #   3.3 / 4 = .825; outside rows 0-1 x col 2: (.1 + .2) / 2 = .15 -> .675.
    # [2, 3]: inside .4 / 4 = .1; outside rows 2-3 x col 1: (.2 + .1) / 2 = .15 -> floored at 0.
    # [1, 1]: inside .9; outside row 1 x cols 0, 2: (.7 + .2) / 2 = .45 -> .45.
    np.testing.assert_allclose(got, [0.675, 0.0, 0.45], rtol=1e-6, atol=1e-7)
    # With every row equal (actionness), it is the single-row contrast of run_contrast.
    row = masks[:, :1, :]
    same = tf.tile(row, [1, 4, 1])
    csum = tf.pad(tf.cumsum(tf.cast(row, tf.float64), axis=-1), [[0, 0], [0, 0], [1, 0]])
    np.testing.assert_allclose(consensus_contrast(same, start, end, 0.25).numpy(),
                               run_contrast(csum, start, end, tf.constant(4), 0.25).numpy(), rtol=1e-6)


def test_run_contrast_hand_values_border_clipping_and_floor():
    rows = np.array([[0.1, 0.2, 0.9, 0.8, 0.9, 0.3, 0.1, 0.05],
                     [1.0, 0.5, 0.55, 0.55, 0.55, 0.55, 0.55, 0.5]])
    csum = tf.constant(np.pad(np.cumsum(rows, axis=-1), [[0, 0], [1, 0]])[None])  # (1, 2, T+1) float64
    start = tf.constant([[[2, 2, 0], [2, 2, 2]]], tf.int32)  # (1, 2, 3) runs per row
    end = tf.constant([[[4, 5, 6], [6, 6, 6]]], tf.int32)
    got = run_contrast(csum, start, end, tf.constant(8), 0.25).numpy()[0]
    # Row 0: [2, 4]: 2.6/3 - (.2 + .3)/2 = 0.616667; [2, 5]: 2.9/4 - (.2 + .1)/2 = 0.575;
    #   [0, 6]: 3.3/7 - margin 2, left clipped away, right only cell 7 (.05) = 0.421429.
    # Row 1: [2, 6]: .55 - (1 + .5 + .5)/3 < 0 -> floored at 0.
    np.testing.assert_allclose(got[0], [0.616667, 0.575, 0.421429], rtol=1e-5)
    np.testing.assert_allclose(got[1], [0.0, 0.0, 0.0], atol=1e-7)


def test_all_background_video_gives_no_detection():
    t, k = 8, 3
    cls = np.zeros((1, t, k + 1), np.float32)
    cls[..., k] = 20.0  # P(foreground class) ~ 2e-9 < score_threshold.
    mask = np.full((1, t, t), 5.0, np.float32)  # masks are all foreground...
    res = _run(_decoder(top_snippets=8), {"cls_logits_s1": cls, "mask_logits_s1": mask}, [10.0])
    assert res["num_detections"].tolist() == [0]
    assert not res["detection_scores"].any() and not res["detection_segments"].any()
    assert (res["detection_classes"] == -1).all()


def test_masks_without_foreground_give_no_detection():
    cls, _ = _two_instance_video()
    mask = np.full((1, 10, 10), _logit(0.4), np.float32)  # below every threshold.
    res = _run(_decoder(), {"cls_logits_s1": cls[None], "mask_logits_s1": mask}, [10.0])
    assert res["num_detections"].tolist() == [0]


def test_batch_of_two_with_different_durations():
    cls, mask = _two_instance_video()
    outputs = {"cls_logits_s1": np.stack([cls, cls]), "mask_logits_s1": np.stack([mask, mask])}
    res = _run(_decoder(), outputs, [20.0, 50.0])
    assert res["num_detections"].tolist() == [3, 3]
    # The two rows go through float32 softmax / sigmoid / Soft-NMS kernels that may
    # vectorise each batch row differently (Eigen vs oneDNN): a few ulp (float32 eps
    # 1.2e-7) per op, so rtol 1e-6, not equality.
    np.testing.assert_allclose(res["detection_scores"][0], res["detection_scores"][1], rtol=1e-6)
    np.testing.assert_allclose(res["detection_segments"][1][:3], [[35, 40], [5, 20], [30, 45]], atol=1e-4)


def test_t_not_divisible_and_top_snippets_capped_at_t():
    t, k = 7, 2
    cls = _cls_logits([None, None, (1, 0.6), (1, 0.7), (1, 0.6), None, None], k)
    mask = _mask_logits({3: [0.1, 0.2, 0.9, 0.8, 0.7, 0.2, 0.1]}, t)
    res = _run(
        _decoder(num_classes=k, mask_thresholds=(0.5,), top_snippets=64),  # 64 > T.
        {"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]},
        [14.0],
    )
    # Only snippet 3's mask has foreground: run 2..4 -> [2/7, 5/7] * 14 s.
    assert res["num_detections"].tolist() == [1]
    np.testing.assert_allclose(res["detection_segments"][0, 0], [4.0, 10.0], atol=1e-5)
    np.testing.assert_allclose(res["detection_scores"][0, 0], 0.7 * 0.8, rtol=1e-5)
    assert res["detection_classes"][0, 0] == 1


def test_multi_scale_candidates_are_merged_before_soft_nms():
    k = 2
    cls1 = _cls_logits([None, (0, 0.9), (0, 0.5), None, None], k)  # T=5
    mask1 = _mask_logits({1: [0.1, 0.8, 0.8, 0.1, 0.1]}, 5)  # run 1..2 -> [0.2, 0.6]
    cls2 = _cls_logits([None, None, None, (0, 0.6), None, None, None, None, None, None], k)  # T=10
    mask2 = _mask_logits({3: [0.1, 0.1, 0.7, 0.7, 0.7, 0.7, 0.1, 0.1, 0.1, 0.1]}, 10)  # 2..5 -> [0.2, 0.6]
    outputs = {
        "cls_logits_s1": cls1[None],
        "mask_logits_s1": mask1[None],
        "cls_logits_s2": cls2[None],
        "mask_logits_s2": mask2[None],
    }
    res = _run(_decoder(num_classes=k, scales=(1, 2), mask_thresholds=(0.5,), top_snippets=1), outputs, [10.0])
    # Same segment from both scales: the scale-2 one is decayed by exp(-1 / sigma).
    assert res["num_detections"].tolist() == [2]
    np.testing.assert_allclose(res["detection_scores"][0, :2], [0.72, 0.42 * math.exp(-1 / SIGMA)], rtol=1e-5)
    np.testing.assert_allclose(res["detection_segments"][0, :2], [[2, 6], [2, 6]], atol=1e-5)


def test_external_class_fusion_relabels_with_video_classes():
    cls, mask = _two_instance_video()
    outputs = {"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}
    ext = np.array([[0.1, 0.7, 0.2]], np.float32)
    res = _run(_decoder(class_fusion="external", fusion_top_k=2), outputs, [20.0], external=ext)
    # Actionness 1 - P_bg = 1 - (1 - P)/3 for the snippets: 2 -> 29/30, 7 -> 14/15.
    a2, a7 = (1 - 0.1 / 3) * 0.8, (1 - 0.2 / 3)
    narrow, wide, left = a7 * 0.95, a7 * (0.6 + 0.95 + 0.6) / 3, a2
    decay = math.exp(-((1 / 3) ** 2) / SIGMA)
    # Per class (1 then 2): narrow, left, wide * decay, each times the class score.
    expected = sorted(
        [(s * e, c) for c, e in ((1, 0.7), (2, 0.2)) for s in (narrow, left, wide * decay)], reverse=True
    )
    assert res["num_detections"].tolist() == [5]  # max_detections 5 of 6 candidates.
    np.testing.assert_allclose(res["detection_scores"][0], [s for s, _ in expected[:5]], rtol=1e-5)
    assert res["detection_classes"][0].tolist() == [c for _, c in expected[:5]]


def test_class_agnostic_nms_decays_across_classes():
    segments = np.array([[[0.0, 0.4], [0.1, 0.4]]], np.float32)  # tIoU 0.75.
    scores = np.array([[0.9, 0.8]], np.float32)
    classes = np.array([[0, 1]], np.int32)
    per_class = soft_nms(segments, scores, classes, 2, SIGMA, 1e-4, per_class=True)
    agnostic = soft_nms(segments, scores, classes, 2, SIGMA, 1e-4, per_class=False)
    np.testing.assert_allclose(per_class["scores"].numpy(), [[0.9, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(agnostic["scores"].numpy(), [[0.9, 0.8 * math.exp(-0.75**2 / SIGMA)]], rtol=1e-5)
    assert agnostic["classes"].numpy().tolist() == [[0, 1]]


# -------------------------------------------------------------------- Soft-NMS


def _tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def soft_nms_reference(segments, scores, classes, max_det, sigma, thr, per_class=True):
    """Straightforward Gaussian Soft-NMS (Bodla et al., Alg. 1): pick the best, decay the rest."""
    segs, sc, cl = [list(s) for s in segments], list(map(float, scores)), list(classes)
    alive = [i for i in range(len(sc)) if sc[i] > thr]
    out = []
    while alive and len(out) < max_det:
        best = max(alive, key=lambda i: (sc[i], -i))
        alive.remove(best)
        out.append((segs[best], sc[best], cl[best]))
        for i in alive:
            if not per_class or cl[i] == cl[best]:
                sc[i] *= math.exp(-(_tiou(segs[i], segs[best]) ** 2) / sigma)
        alive = [i for i in alive if sc[i] > thr]
    return out


@pytest.mark.parametrize("per_class", [True, False])
def test_soft_nms_matches_numpy_reference_and_never_raises_a_score(per_class):
    rng = np.random.default_rng(3)
    b, m, n = 2, 40, 25
    start = rng.uniform(0, 0.8, size=(b, m))
    length = rng.uniform(0.02, 0.4, size=(b, m))
    segments = np.stack([start, np.minimum(start + length, 1.0)], -1).astype(np.float32)
    scores = rng.uniform(0, 1, size=(b, m)).astype(np.float32)
    classes = rng.integers(0, 3, size=(b, m)).astype(np.int32)
    res = soft_nms(segments, scores, classes, n, SIGMA, 0.05, per_class=per_class)
    res = {key: v.numpy() for key, v in res.items()}
    for v in range(b):
        ref = soft_nms_reference(segments[v], scores[v], classes[v], n, SIGMA, 0.05, per_class)
        count = res["num_detections"][v]
        assert count == len(ref)
        np.testing.assert_allclose(res["segments"][v, :count], [r[0] for r in ref], atol=1e-6)
        np.testing.assert_allclose(res["scores"][v, :count], [r[1] for r in ref], atol=1e-5)
        assert res["classes"][v, :count].tolist() == [r[2] for r in ref]
        # Never raises a score: each kept score <= the input score of its segment.
        for seg, kept in zip(res["segments"][v, :count], res["scores"][v, :count]):
            orig = scores[v][np.all(segments[v] == seg, axis=-1)].max()
            assert kept <= orig + 1e-7
        assert np.all(np.diff(res["scores"][v, :count]) <= 1e-7)  # non-increasing.
        assert (res["scores"][v, count:] == 0).all() and (res["classes"][v, count:] == -1).all()
    assert (res["num_detections"] > 5).all()  # The test exercises real suppression.


def test_soft_nms_keeps_pre_nms_top_k_best():
    segments = np.array([[[0.0, 0.1], [0.2, 0.3], [0.4, 0.5]]], np.float32)
    scores = np.array([[0.2, 0.9, 0.5]], np.float32)
    res = soft_nms(segments, scores, np.zeros((1, 3), np.int32), 3, SIGMA, 0.0, pre_nms_top_k=2)
    np.testing.assert_allclose(res["scores"].numpy(), [[0.9, 0.5, 0.0]])
    assert res["num_detections"].numpy().tolist() == [2]


# ------------------------------------------------------------- graph & layer


def test_traced_graph_has_no_python_ops_and_runs_with_unknown_batch():
    dec = _decoder(scales=(1, 2), num_classes=3)
    spec = {
        "cls_logits_s1": tf.TensorSpec([None, 6, 4], tf.float32),
        "mask_logits_s1": tf.TensorSpec([None, 6, 6], tf.float32),
        "cls_logits_s2": tf.TensorSpec([None, 12, 4], tf.float32),
        "mask_logits_s2": tf.TensorSpec([None, 12, 12], tf.float32),
    }
    fn = tf.function(lambda o, d: dec(o, d))
    concrete = fn.get_concrete_function(spec, tf.TensorSpec([None], tf.float32))
    graph_def = concrete.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for func in graph_def.library.function:
        ops |= {node.op for node in func.node_def}
    assert "NonMaxSuppressionV5" in ops  # Soft-NMS is really in the graph (incl. the library).
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc", "NumpyFunction"}
    assert concrete.structured_outputs["detection_segments"].shape.as_list() == [None, 5, 2]
    rng = np.random.default_rng(0)
    outputs = {key: tf.constant(rng.normal(size=[3] + s.shape[1:]).astype(np.float32)) for key, s in spec.items()}
    res = concrete(outputs, tf.constant([5.0, 6.0, 7.0]))
    assert res["detection_scores"].shape == (3, 5)


def test_saved_model_signature_reproduces_eager(tmp_path):
    dec = _decoder()
    cls, mask = _two_instance_video()

    class Export(tf.Module):
        def __init__(self):
            super().__init__()
            self.decoder = dec

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 10, 4], tf.float32, name="cls_logits_s1"),
                tf.TensorSpec([None, 10, 10], tf.float32, name="mask_logits_s1"),
                tf.TensorSpec([None], tf.float32, name="duration"),
            ]
        )
        def serve(self, cls_logits, mask_logits, duration):
            return self.decoder({"cls_logits_s1": cls_logits, "mask_logits_s1": mask_logits}, duration)

    module = Export()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    served = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    got = served(cls_logits_s1=tf.constant(cls[None]), mask_logits_s1=tf.constant(mask[None]), duration=tf.constant([20.0]))
    want = _run(dec, {"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}, [20.0])
    for key, value in want.items():
        np.testing.assert_allclose(got[key].numpy(), value, rtol=1e-6)


def test_decoder_config_round_trip_and_preset_construction():
    dec = DetectionDecoder.from_tags_config(get_config("demo"))
    assert dec.num_classes == 4 and dec.postprocess.top_snippets == 16 and dec.postprocess.max_detections == 50
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(dec))
    assert isinstance(clone, DetectionDecoder)
    assert clone.get_config() == dec.get_config()
    assert clone.postprocess.mask_thresholds == get_config("demo").postprocess.mask_thresholds
    contrast = DetectionDecoder.from_tags_config(
        get_config("demo", {"postprocess.mask_score": "contrast", "postprocess.contrast_delta": 0.5}))
    assert DetectionDecoder.from_config(contrast.get_config()).get_config() == contrast.get_config()
    assert (contrast.postprocess.mask_score, contrast.postprocess.contrast_delta) == ("contrast", 0.5)


def test_decoder_bad_inputs_give_clear_errors():
    cls, mask = _two_instance_video()
    with pytest.raises(KeyError, match="mask_logits_s1"):
        _decoder()({"cls_logits_s1": tf.constant(cls[None])}, tf.constant([1.0]))
    with pytest.raises(ValueError, match="expected num_classes \\+ 1 = 6"):
        _decoder(num_classes=5)({"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}, tf.constant([1.0]))
    with pytest.raises(ValueError, match="needs external_scores"):
        _decoder(class_fusion="external")({"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}, tf.constant([1.0]))
    with pytest.raises(ValueError, match="class_fusion must be"):
        _decoder(class_fusion="cuhk")
    with pytest.raises(ValueError, match="mask_score must be one of \\('mean', 'contrast', 'gated', 'consensus'\\), got 'max'"):
        _decoder(mask_score="max")
    with pytest.raises(ValueError, match="contrast_delta must be in"):
        _decoder(mask_score="contrast", contrast_delta=0.0)
    with pytest.raises(ConfigError, match="postprocess.mask_score must be"):
        get_config("demo", {"postprocess.mask_score": "max"})


def test_half_precision_logits_decode_in_float32():
    cls, mask = _two_instance_video()
    outputs = {"cls_logits_s1": tf.constant(cls[None], tf.float16), "mask_logits_s1": tf.constant(mask[None], tf.float16)}
    res = _decoder()(outputs, tf.constant([20.0], tf.float64))
    assert res["detection_segments"].dtype == tf.float32 and res["detection_classes"].dtype == tf.int32
    assert res["num_detections"].numpy().tolist() == [3]
    np.testing.assert_allclose(res["detection_scores"].numpy()[0, 0], 0.8 * 0.95, rtol=2e-3)


def test_a_checkpoint_with_the_flat_decoder_config_still_loads():
    # Saved before the decoder took its PostprocessConfig: every field at the top level.
    cls, mask = _two_instance_video()
    flat = {"num_classes": 3, "scales": [1], "mask_thresholds": [0.5, 0.65], "top_snippets": 2,
            "soft_nms_sigma": SIGMA, "pre_nms_top_k": 100, "max_detections": 5, "score_threshold": 1e-4,
            "class_fusion": "none", "fusion_top_k": 1, "nms_per_class": True, "mask_source": "mask",
            "mask_score": "mean", "contrast_delta": 0.25, "name": "decoder"}
    old = DetectionDecoder.from_config(flat)
    assert old.postprocess == _decoder().postprocess
    outputs = {"cls_logits_s1": cls[None], "mask_logits_s1": mask[None]}
    np.testing.assert_allclose(_run(old, outputs, [20.0])["detection_scores"],
                               _run(_decoder(), outputs, [20.0])["detection_scores"])


def test_get_config_round_trips_the_dataclass():
    dec = _decoder(mask_score="consensus", nms_per_class=False)
    again = DetectionDecoder.from_config(dec.get_config())
    assert again.postprocess == dec.postprocess and again.scales == (1,) and again.num_classes == 3


# ---------------------------------------------------------------- class fusion


def test_load_external_scores_formats(tmp_path):
    names = ("a", "b", "c")
    top1 = tmp_path / "top1.json"
    top1.write_text(json.dumps({"v_x": {"class": "b", "score": 0.8}}))
    np.testing.assert_allclose(load_external_scores(top1, names)["v_x"], [0, 0.8, 0])
    topk = tmp_path / "topk.json"
    topk.write_text(json.dumps({"x": {"classes": ["c", "a"], "scores": [0.6, 0.3]}, "y": {"b": 0.5}}))
    table = load_external_scores(topk, names)
    np.testing.assert_allclose(table["x"], [0.3, 0, 0.6])
    np.testing.assert_allclose(table["y"], [0, 0.5, 0])
    cuhk = tmp_path / "cuhk.json"
    cuhk.write_text(json.dumps({"class": ["c", "b", "a"], "results": {"x": [0.1, 0.2, 0.7]}}))
    np.testing.assert_allclose(load_external_scores(cuhk, names)["x"], [0.7, 0.2, 0.1])
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"x": [0.1, 0.2, 0.7]}))
    np.testing.assert_allclose(load_external_scores(plain, names)["x"], [0.1, 0.2, 0.7])
    # v_ prefix is matched both ways.
    batch = external_scores_batch(load_external_scores(top1, names), ["x"])
    np.testing.assert_allclose(batch, [[0, 0.8, 0]])


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"x": {"class": "zzz", "score": 0.5}}), "unknown class 'zzz'"),
        (json.dumps({"x": {"class": "a", "score": float("nan")}}), "not a finite number"),
        (json.dumps({"x": [0.1, 0.2]}), "2 scores, expected 3"),
        (json.dumps({"x": {"class": "a"}}), "needs both 'class' and 'score'"),
        (json.dumps([1, 2]), "expected a JSON object"),
        ('{"x": [0.1, 0.2, 0.3], "x": [0.3, 0.2, 0.1]}', "key 'x' appears twice"),
    ],
)
def test_load_external_scores_errors_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "scores.json"
    path.write_text(content)
    with pytest.raises(ExternalScoresError, match=message) as info:
        load_external_scores(path, ("a", "b", "c"))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_external_scores_missing_file_and_missing_video(tmp_path):
    with pytest.raises(ExternalScoresError, match="no such file"):
        load_external_scores(tmp_path / "nope.json", ("a",))
    with pytest.raises(ExternalScoresError, match="no scores for video 'q'"):
        external_scores_batch({"x": np.zeros(1)}, ["q"], source="s.json")


def test_load_tags_best_score_file(shared):
    folder = shared / "datasets" / "activitynet13"
    names = json.loads((folder / "tsp" / "activitynet_v1-3_action_label_mapping.json").read_text())
    table = load_external_scores(folder / "tags" / "tags_best_score.json", names)
    assert len(table) == 4926
    row = table["v_JDg--pjY5gg"]
    assert row.shape == (200,) and np.count_nonzero(row) == 1
    np.testing.assert_allclose(row[names.index("Beer pong")], 0.9998060251937253, rtol=1e-6)
