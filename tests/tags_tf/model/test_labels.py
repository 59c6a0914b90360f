"""Label assignment: hand-computed targets (paper Sec. 3.3, Fig. 3a)."""

import numpy as np
import tensorflow as tf

from tags_tf.config import get_config
from tags_tf.model.labels import assign_targets, assign_targets_batched, build_targets

K = 3  # background id


def _np(d):
    return {k: v.numpy() for k, v in d.items()}


def test_three_instances_give_three_distinct_masks():
    # 10 s video, T = 10 -> snippet t covers [t, t+1) s, centre t + 0.5.
    segs = [[0.0, 2.0], [4.0, 6.0], [7.2, 9.9]]
    out = _np(assign_targets(segs, [0, 1, 2], 10.0, 10, K))
    # centres 0.5, 1.5 in [0, 2]; 4.5, 5.5 in [4, 6]; 7.5, 8.5, 9.5 in [7.2, 9.9].
    np.testing.assert_array_equal(out["cls_target"], [0, 0, 3, 3, 1, 1, 3, 2, 2, 2])
    np.testing.assert_array_equal(out["fg"], [1, 1, 0, 0, 1, 1, 0, 1, 1, 1])
    m0 = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], np.float32)
    m1 = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0], np.float32)
    m2 = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], np.float32)
    expected = np.stack([m0, m0, 0 * m0, 0 * m0, m1, m1, 0 * m0, m2, m2, m2])
    np.testing.assert_array_equal(out["mask_target"], expected)
    distinct = {tuple(r) for r, f in zip(out["mask_target"], out["fg"]) if f}
    assert len(distinct) == 3


def test_empty_video_is_all_background():
    out = _np(assign_targets(np.zeros((0, 2)), np.zeros((0,), np.int32), 30.0, 8, K))
    np.testing.assert_array_equal(out["cls_target"], [K] * 8)
    assert out["fg"].sum() == 0 and out["mask_target"].shape == (8, 8) and out["mask_target"].sum() == 0


def test_instance_shorter_than_a_snippet_gets_its_midpoint_snippet():
    # 10 s, T = 5 -> snippets of 2 s with centres 1, 3, 5, 7, 9. [3.2, 3.6] contains no
    # centre; its midpoint 3.4 s lies in snippet 1 ([2, 4)).
    out = _np(assign_targets([[3.2, 3.6]], [2], 10.0, 5, K))
    np.testing.assert_array_equal(out["cls_target"], [K, 2, K, K, K])
    np.testing.assert_array_equal(out["mask_target"][1], [0, 1, 0, 0, 0])
    # A zero-length annotation (present in ActivityNet) is kept the same way.
    out = _np(assign_targets([[9.5, 9.5]], [0], 10.0, 5, K))
    np.testing.assert_array_equal(out["cls_target"], [K, K, K, K, 0])


def test_overlapping_instances_go_to_the_shortest():
    # T = 10 over 10 s. Long [0, 8] class 0, short [3, 5] class 1 inside it.
    out = _np(assign_targets([[0.0, 8.0], [3.0, 5.0]], [0, 1], 10.0, 10, K))
    np.testing.assert_array_equal(out["cls_target"], [0, 0, 0, 1, 1, 0, 0, 0, K, K])
    long_mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    short_mask = [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(out["mask_target"][0], long_mask)
    np.testing.assert_array_equal(out["mask_target"][3], short_mask)
    np.testing.assert_array_equal(out["mask_target"][5], long_mask)


def test_segments_past_the_duration_are_clipped_and_invalid_ones_ignored():
    # [6, 15] on a 10 s video is clipped to [6, 10]; [12, 14] starts after the end and
    # [5, 4] has end < start: both ignored; label -1 is padding.
    segs = [[6.0, 15.0], [12.0, 14.0], [5.0, 4.0], [0.0, 10.0]]
    out = _np(assign_targets(segs, [1, 2, 0, -1], 10.0, 5, K))
    np.testing.assert_array_equal(out["cls_target"], [K, K, K, 1, 1])
    np.testing.assert_array_equal(out["mask_target"][4], [0, 0, 0, 1, 1])


def test_batched_equals_unbatched_with_padding():
    segs = np.array([[[1.0, 3.0], [0.0, 0.0]], [[0.0, 5.0], [6.0, 9.0]]], np.float32)
    labels = np.array([[2, -1], [0, 1]], np.int32)
    dur = np.array([4.0, 10.0], np.float32)
    batched = _np(assign_targets_batched(segs, labels, dur, 8, K))
    for b in range(2):
        single = _np(assign_targets(segs[b], labels[b], dur[b], 8, K))
        for k in single:
            np.testing.assert_array_equal(batched[k][b], single[k])


def test_build_targets_all_scales_and_inside_tf_data():
    cfg = get_config("demo").model  # scales (1, 2): T = 32, 64
    ds = tf.data.Dataset.from_tensors(
        (tf.constant([[2.0, 5.0]]), tf.constant([1]), tf.constant(10.0))
    ).map(lambda s, l, d: build_targets(s, l, d, cfg))
    out = next(iter(ds))
    assert out["cls_target_s1"].shape == (32,) and out["mask_target_s2"].shape == (64, 64)
    eager = build_targets(tf.constant([[2.0, 5.0]]), tf.constant([1]), tf.constant(10.0), cfg)
    for k in eager:
        np.testing.assert_array_equal(out[k].numpy(), eager[k].numpy())
    # centres (t + 0.5) / 32 * 10 s in [2, 5] -> t = 6..15.
    np.testing.assert_array_equal(np.nonzero(out["fg_s1"].numpy())[0], np.arange(6, 16))


def test_padding_video_has_no_valid_snippet():
    cfg = get_config("demo").model
    out = build_targets(tf.zeros([2, 1, 2]), tf.constant([[-1], [0]]), tf.constant([0.0, 5.0]), cfg)
    assert out["valid_s1"].numpy()[0].sum() == 0 and out["valid_s1"].numpy()[1].sum() == 32
