"""Mask operations shared by the losses, the decoder and the baseline (one definition each).

- :func:`above`: a mask position is foreground at threshold ``theta`` when ``m > theta``
  (Eq. 7-9 binarisations, the decoder's runs, the consistency loss).
- :func:`outer_window`: the ``ceil(delta * length)`` cells on each side of a run that
  Eq. 7's outer-inner contrast compares it with, clipped to the video.
- :func:`outer_inner_contrast`: Eq. 7's contrast of runs, ``mean inside - mean over the
  outer window``, given any way to sum the curve over a span (prefix sums of one row,
  of the rows of a block, of ``1 - m`` on background runs).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def above(m: tf.Tensor, theta: tf.Tensor | float) -> tf.Tensor:
    """``m > theta`` (bool, broadcast): foreground at ``theta``."""
    return m > theta


def outer_window(start: tf.Tensor, end: tf.Tensor, num_snippets: tf.Tensor | int,
                 delta: float) -> tuple[tf.Tensor, tf.Tensor]:
    """``(lo, hi)``: the outer cells of run ``[start, end]`` (inclusive, int32) are
    ``[lo, start)`` and ``[end + 1, hi)``, ``n = ceil(delta * (end - start + 1))`` on
    each side, clipped to ``[0, num_snippets)``. ``n`` is computed in float64, so that
    e.g. 0.1 x 10 is exactly 1."""
    length = end - start + 1
    n = tf.cast(tf.math.ceil(tf.cast(length, tf.float64) * float(delta)), tf.int32)
    return tf.maximum(start - n, 0), tf.minimum(end + 1 + n, num_snippets)


def outer_inner_contrast(span_sum: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], start: tf.Tensor,
                         end: tf.Tensor, num_snippets: tf.Tensor | int, delta: float) -> tf.Tensor:
    """Eq. 7's outer-inner contrast of runs ``[start, end]`` (inclusive int32, any shape).

    ``span_sum(a, b)`` returns the curve's sum over ``[a, b)`` for int32 tensors of
    ``start``'s shape. The result is the mean over the run minus the mean over its outer
    window (:func:`outer_window`; 0 when the window is empty), in ``span_sum``'s dtype,
    not floored (the decoder floors its scores at 0, the loss averages signed runs).
    """
    lo, hi = outer_window(start, end, num_snippets, delta)
    inner = span_sum(start, end + 1)
    count_in = tf.cast(tf.maximum(end - start + 1, 1), inner.dtype)
    count_out = tf.cast((start - lo) + (hi - end - 1), inner.dtype)
    outer = span_sum(lo, start) + span_sum(end + 1, hi)
    return inner / count_in - tf.math.divide_no_nan(outer, count_out)
