"""What the TAGS losses share: the weighted reduction, the L2 of Eq. 6-8 and the erosion
of Eq. 6 (:mod:`tags_tf.model.losses`, :mod:`tags_tf.model.promotion`)."""

from __future__ import annotations

import keras
import tensorflow as tf


_REDUCTIONS = ("mean_with_sample_weight", None, "none")


def masked_mean(values: tf.Tensor, weight: tf.Tensor | None) -> tf.Tensor:
    """``sum(values * weight) / max(sum(weight), 1)``; ``weight=None`` means all ones."""
    values = tf.convert_to_tensor(values, tf.float32)
    if weight is None:
        weight = tf.ones_like(values)
    weight = tf.cast(weight, values.dtype)
    total = tf.reduce_sum(values * weight)
    return total / tf.maximum(tf.reduce_sum(weight), 1.0)


def safe_l2(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """L2 norm over ``axis`` whose gradient is 0 (not NaN) where the norm is 0."""
    sq = tf.reduce_sum(tf.square(x), axis=axis)
    positive = sq > 0.0
    safe_sq = tf.where(positive, sq, tf.ones_like(sq))
    return tf.where(positive, tf.sqrt(safe_sq), tf.zeros_like(sq))


def erode(x: tf.Tensor, kernel: int) -> tf.Tensor:
    """Morphological erosion Phi along the last axis: a sliding minimum of width ``kernel``.

    ``x`` is ``(..., T)``. Implemented as ``-max_pool1d(-x)`` with stride 1 and 'SAME'
    padding; TF's max pool ignores the padded cells, so the window is clipped at the
    video borders and a mask touching a border is not eroded there.
    """
    if kernel <= 1:
        return x
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, shape[-1], 1])  # (..., T) -> (N, T, 1) for pool1d (NWC)
    pooled = tf.nn.max_pool1d(-flat, ksize=kernel, strides=1, padding="SAME")
    return tf.reshape(-pooled, shape)  # (N, T, 1) -> (..., T)




def band_kernel(width: float, num_snippets: int | None) -> int:
    """Erosion kernel ``2 d + 1`` of a boundary band ``d = max(1, round(width * T))`` cells wide."""
    if num_snippets is None:
        raise ValueError("the boundary band needs a static number of snippets T")
    return 2 * max(1, int(round(width * num_snippets))) + 1


class WeightedLoss(keras.losses.Loss):
    """Base: masked-mean reduction over a ``(B, T)`` (or ``(B,)``) sample weight."""

    def __init__(self, name=None, reduction="mean_with_sample_weight", dtype=None, **kwargs):
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r} "
                "(the loss is always normalised by max(sum(sample_weight), 1))"
            )
        super().__init__(name=name, reduction=reduction, dtype=dtype, **kwargs)

    def _reduce(self, per: tf.Tensor, sample_weight) -> tf.Tensor:
        if self.reduction in (None, "none"):
            if sample_weight is None:
                return per
            return per * tf.cast(sample_weight, per.dtype)
        return masked_mean(per, sample_weight)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self.name):
            per = self.call(y_true, y_pred, sample_weight=sample_weight)
            return self._reduce(per, sample_weight)
