"""Mask operations shared by the losses and the decoder (one definition each).

- :func:`above`: a mask position is foreground at threshold ``theta`` when ``m > theta``
  (Eq. 7-9 binarisations, the decoder's runs, the consistency loss).
- :func:`outer_window`: the ``ceil(delta * length)`` cells on each side of a run that
  Eq. 7's outer-inner contrast compares it with, clipped to the video.
"""

from __future__ import annotations

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
