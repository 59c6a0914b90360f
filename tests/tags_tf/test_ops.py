"""tags_tf.ops: the binarisation and Eq. 7's outer window, shared by losses and decoder."""

import numpy as np
import tensorflow as tf

from tags_tf.decode.runs import run_contrast
from tags_tf.model.promotion import binarisation_contrast
from tags_tf.ops import above, outer_window


def test_above_is_strict():
    m = tf.constant([0.2, 0.5, 0.7])
    np.testing.assert_array_equal(above(m, 0.5).numpy(), [False, False, True])


def test_outer_window_hand_values():
    start, end = tf.constant([0, 10, 3, 5]), tf.constant([9, 19, 3, 14])
    lo, hi = outer_window(start, end, 20, 0.1)
    # lengths 10, 10, 1, 10 -> n = ceil(0.1 * l) = 1, 1, 1, 1 (0.1 * 10 in float32 would ceil to 2)
    np.testing.assert_array_equal(lo.numpy(), [0, 9, 2, 4])
    np.testing.assert_array_equal(hi.numpy(), [11, 20, 5, 16])
    lo, hi = outer_window(tf.constant([4]), tf.constant([7]), 10, 0.25)  # l = 4 -> n = 1
    np.testing.assert_array_equal([lo.numpy()[0], hi.numpy()[0]], [3, 9])


def test_loss_and_decoder_contrast_agree_on_a_single_run():
    # One foreground run [5, 14] of a 20-cell mask at theta = 0.5, delta = 0.1: inside 0.9,
    # one outer cell each side at 0.1 -> 0.8 for the run; the loss also averages the two
    # background runs (their u = 1 - m inside, outside = the foreground cell next to them).
    m = np.full(20, 0.1, np.float32)
    m[5:15] = 0.9
    csum = tf.constant(np.concatenate([[0.0], np.cumsum(m, dtype=np.float64)])[None, None])  # (1, 1, T+1)
    decoder = run_contrast(csum, tf.constant([[[5]]]), tf.constant([[[14]]]), tf.constant(20), 0.1)
    assert abs(float(decoder[0, 0, 0]) - 0.8) < 1e-6
    # Background runs [0, 4] and [15, 19]: inside 1 - 0.1 = 0.9, outer cell 1 - 0.9 = 0.1.
    expected = (0.8 + (0.9 - 0.1) + (0.9 - 0.1)) / 3
    loss = binarisation_contrast(tf.constant(m[None]), (0.5,), delta=0.1)
    assert abs(float(loss[0, 0]) - expected) < 1e-6
