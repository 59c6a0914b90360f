"""tags_tf/data/windows.py: window starts, cutting, ground truth per window, back to seconds."""

import numpy as np
import pytest
import tensorflow as tf

from tags_tf.data import windows as win


@pytest.mark.parametrize("t, w, s, expected", [
    (600, 256, 128, [0, 128, 256, 344]),  # the last window is moved back to end with the video
    (512, 256, 128, [0, 128, 256]),  # exact fit: no extra window
    (256, 256, 128, [0]),
    (100, 256, 128, [0]),  # shorter than a window: one, zero-padded
    (10, 4, 3, [0, 3, 6]),
    (11, 4, 3, [0, 3, 6, 7]),
])
def test_window_starts_by_hand(t, w, s, expected):
    got = win.window_starts(tf.constant(t), w, s).numpy().tolist()
    assert got == expected
    assert win.num_windows(t, w, s) == len(expected)
    covered = np.zeros(max(t, w), bool)
    for a in got:
        covered[a:a + w] = True
    assert covered[:t].all()  # every snippet is in some window


def test_window_stride_from_overlap():
    assert win.window_stride(256, 0.5) == 128
    assert win.window_stride(256, 0.0) == 256
    assert win.window_stride(10, 0.75) == 2  # round(2.5) -> 2
    assert win.window_stride(4, 0.99) == 1


def test_cut_windows_gathers_and_zero_pads():
    x = tf.reshape(tf.range(2 * 6 * 1, dtype=tf.float32), [2, 6, 1])  # video b: 6b .. 6b+5
    got = win.cut_windows(x, tf.constant([0, 2]), 4).numpy()[..., 0]
    np.testing.assert_array_equal(got[0], [[0, 1, 2, 3], [2, 3, 4, 5]])
    np.testing.assert_array_equal(got[1], [[6, 7, 8, 9], [8, 9, 10, 11]])
    short = win.cut_windows(x[:, :3], tf.constant([0]), 4).numpy()[..., 0]
    np.testing.assert_array_equal(short[1], [[6, 7, 8, 0]])


def test_window_ground_truth_by_hand():
    # 20 snippets over 10 s (0.5 s each); windows of 8 snippets = 4 s at starts 0, 4, 12.
    segs = tf.constant([[1.0, 2.5], [2.0, 7.0], [9.0, 9.5], [0.0, 0.0]])
    labels = tf.constant([0, 1, 2, -1])
    rel, lab, length = win.window_ground_truth(segs, labels, tf.constant(10.0), tf.constant(20),
                                               tf.constant([0, 4, 12]), 8)
    np.testing.assert_allclose(length.numpy(), [4.0, 4.0, 4.0])
    # window 0 = [0, 4) s: the first whole, the second cut at 4 s, the third outside.
    np.testing.assert_allclose(rel.numpy()[0, :3], [[1.0, 2.5], [2.0, 4.0], [4.0, 4.0]])
    assert lab.numpy()[0].tolist() == [0, 1, -1, -1]
    # window 1 = [2, 6) s: the first cut to [0, 0.5], the second cut to [0, 4].
    np.testing.assert_allclose(rel.numpy()[1, :2], [[0.0, 0.5], [0.0, 4.0]])
    assert lab.numpy()[1].tolist() == [0, 1, -1, -1]
    # window 2 = [6, 10) s: the second's last second, the third whole.
    np.testing.assert_allclose(rel.numpy()[2, 1:3], [[0.0, 1.0], [3.0, 3.5]])
    assert lab.numpy()[2].tolist() == [-1, 1, 2, -1]


def test_windows_to_seconds_by_hand():
    # Video of 20 snippets over 10 s, windows of 8 snippets (4 s) at 0 and 12 (6 s).
    segs = tf.constant([[[[0.25, 0.5]], [[0.5, 1.0]]]])  # (B=1, n=2, C=1, 2)
    got = win.windows_to_seconds(segs, tf.constant([10.0]), tf.constant(20), tf.constant([0, 12]), 8).numpy()
    np.testing.assert_allclose(got[0, :, 0], [[1.0, 2.0], [8.0, 10.0]])
    # A window padded past the end of a short video is clipped to its duration.
    got = win.windows_to_seconds(tf.constant([[[[0.5, 1.0]]]]), tf.constant([3.0]), tf.constant(6),
                                 tf.constant([0]), 8).numpy()
    np.testing.assert_allclose(got[0, 0, 0], [2.0, 3.0])


def test_jitter_keeps_windows_inside_the_video():
    tf.random.set_seed(0)
    starts = win.window_starts(tf.constant(600), 256, 128)
    seen = set()
    for _ in range(20):
        j = win.jitter_starts(starts, tf.constant(600), 256, 128).numpy()
        assert j.min() >= 0 and j.max() <= 600 - 256
        assert (np.abs(j - starts.numpy()) <= 64).all()
        seen.update(j.tolist())
    assert len(seen) > 8  # the crops move
    assert win.jitter_starts(tf.constant([0]), tf.constant(100), 256, 128).numpy().tolist() == [0]
