"""Temporal resampling of a snippet-feature sequence to a fixed number of snippets.

Linear interpolation over time with ``align_corners=False`` (half-pixel centres), the
same rule as ``tf.image.resize(..., "bilinear")`` along one axis and
``torch.nn.functional.interpolate(mode="linear", align_corners=False)``:

    output snippet j (of T) samples input position  p_j = (j + 0.5) * T_in / T - 0.5,
    clamped to [0, T_in - 1];  out[j] = (1 - w) * x[floor(p_j)] + w * x[floor(p_j) + 1],
    w = p_j - floor(p_j).

In time units this is exact: if the T_in input snippets evenly cover the video, output
snippet j is the value at the centre of its own window ``[j/T, (j+1)/T)`` of the video,
interpolated between the two nearest input centres (and held constant beyond the first
and last centre). No antialiasing is applied when downsampling (as in the paper's code).

Pure TF ops: used eagerly, inside ``tf.data`` (batched, with per-video lengths) and
inside the serving ``detect`` signature.
"""

from __future__ import annotations

import tensorflow as tf


def resample_positions(num_in: tf.Tensor, num_out: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Interpolation indices and weights for ``num_in -> num_out`` snippets.

    Args:
      num_in: () or (B,) int, T_in >= 1 (one length, or one per video).
      num_out: () int, T.

    Returns:
      lo, hi (int32) and w (float32), each (T,) for a scalar ``num_in`` or (B, T), with
      out[..., j, :] = (1 - w[..., j]) x[..., lo[..., j], :] + w[..., j] x[..., hi[..., j], :].
    """
    n_in = tf.cast(num_in, tf.float64)[..., None]  # () -> (1,) or (B,) -> (B, 1)
    n_out = tf.cast(num_out, tf.float64)
    # float64 keeps the positions exact for the snippet counts met in practice.
    pos = (tf.range(n_out, dtype=tf.float64) + 0.5) * (n_in / n_out) - 0.5  # (T,) or (B, T)
    pos = tf.clip_by_value(pos, 0.0, n_in - 1.0)
    lo_f = tf.floor(pos)
    lo = tf.cast(lo_f, tf.int32)
    hi = tf.minimum(lo + 1, tf.cast(n_in, tf.int32) - 1)
    w = tf.cast(pos - lo_f, tf.float32)
    return lo, hi, w


def resample_features(
    features: tf.Tensor,
    num_snippets: int | tf.Tensor,
    lengths: tf.Tensor | None = None,
    name: str = "resample_features",
) -> tf.Tensor:
    """Resamples ``features`` along time to ``num_snippets`` snippets.

    Args:
      features: (T_in, D) or (B, T_in, D) float; T_in >= 1. Upsampling (T_in < T) and
        T_in = 1 (constant output) are supported.
      num_snippets: T, a Python int or a scalar int tensor.
      lengths: optional (B,) int, for batched ``features`` whose videos have different
        lengths (padded at the end): row b uses only its first ``lengths[b]`` >= 1
        snippets. Without it every row uses all T_in snippets.

    Returns:
      (T, D) or (B, T, D), the dtype of ``features``.

    Raises:
      ValueError (static shapes) or tf.errors.InvalidArgumentError (dynamic shapes)
      when a video has 0 snippets or T < 1.
    """
    with tf.name_scope(name):
        x = tf.convert_to_tensor(features)
        if x.shape.rank not in (2, 3):
            raise ValueError(f"resample_features: features must be (T_in, D) or (B, T_in, D), got shape {x.shape}")
        if lengths is not None and x.shape.rank != 3:
            raise ValueError(f"resample_features: lengths needs batched features (B, T_in, D), got shape {x.shape}")
        if not x.dtype.is_floating:
            x = tf.cast(x, tf.float32)
        if isinstance(num_snippets, int) and num_snippets < 1:
            raise ValueError(f"resample_features: num_snippets must be >= 1, got {num_snippets}")
        if x.shape[-2] == 0:
            raise ValueError(f"resample_features: the input has 0 snippets (shape {x.shape}); at least 1 is needed")
        num_in = tf.shape(x)[-2] if lengths is None else tf.convert_to_tensor(lengths)
        checks = [
            tf.debugging.assert_positive(
                num_in, message="resample_features: a video has 0 snippets; at least 1 is needed"
            ),
            tf.debugging.assert_positive(num_snippets, message="resample_features: num_snippets must be >= 1"),
        ]
        if lengths is not None:
            checks.append(
                tf.debugging.assert_less_equal(
                    tf.cast(num_in, tf.int32), tf.shape(x)[1], message="resample_features: lengths exceed T_in"
                )
            )
        with tf.control_dependencies(checks):
            lo, hi, w = resample_positions(num_in, num_snippets)
        w = tf.cast(w, x.dtype)[..., None]  # (T,) -> (T, 1) or (B, T) -> (B, T, 1), broadcasts over D
        if lengths is None:
            return tf.gather(x, lo, axis=-2) * (1.0 - w) + tf.gather(x, hi, axis=-2) * w
        # Per-video indices (B, T) into (B, T_in, D): gather row b from video b.
        return tf.gather(x, lo, batch_dims=1) * (1.0 - w) + tf.gather(x, hi, batch_dims=1) * w
