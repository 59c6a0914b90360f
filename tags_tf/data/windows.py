"""Fixed-length windows of a video's native snippet sequence (long videos, THUMOS-like).

With ``data.window_snippets = W > 0`` a video is not resampled whole to
``model.input_snippets`` (the paper, which squeezes a 28-minute video into 1,024
snippets, 1.6 s each). Instead it is cut into windows of W native snippets that overlap
by ``data.window_overlap``; each window is resampled to ``input_snippets`` (the identity
when the two are equal) and is one sample for the model. docs/design.md.

Window starts of a video of T snippets (:func:`window_starts`): ``0, S, 2S, ...`` with
stride ``S = round(W (1 - overlap))``, the last one moved back to ``T - W`` so the last
window ends with the video; a video shorter than W is one window, zero-padded at the
end. The same starts are used for training (each jittered by up to S/2 per epoch, so a
window sees new crops), validation, batch inference and the serving ``detect``
signature, so every path cuts a video the same way.

Time: snippet i of a video of duration d covers ``[i d / T, (i + 1) d / T)``; window k
covers ``[start_k d / T, (start_k + W) d / T)``. Training targets are the ground-truth
segments clipped to the window (a cut instance keeps its part inside: its snippets are
still action); detections of every window are mapped back to seconds
(:func:`windows_to_seconds`), pooled per video and Soft-NMS'd once.

Pure TF ops (graph-safe): used by tf.data, ``TagsModel.detect`` and the SavedModel.
"""

from __future__ import annotations

import math

import tensorflow as tf


def window_stride(window: int, overlap: float) -> int:
    """S: snippets between the starts of two consecutive windows (>= 1)."""
    return max(1, int(round(window * (1.0 - overlap))))


def num_windows(num_snippets: int, window: int, stride: int) -> int:
    """Windows of a video of ``num_snippets`` (Python ints; what :func:`window_starts` makes)."""
    last = max(int(num_snippets) - window, 0)
    return math.ceil(last / stride) + 1


def window_starts(num_snippets: tf.Tensor, window: int, stride: int) -> tf.Tensor:
    """(n,) int32 first snippet of every window of a video of ``num_snippets`` () snippets."""
    t = tf.cast(num_snippets, tf.int32)
    last = tf.maximum(t - window, 0)
    n = (last + stride - 1) // stride + 1  # ceil(last / S) + 1
    return tf.minimum(tf.range(n, dtype=tf.int32) * stride, last)


def jitter_starts(starts: tf.Tensor, num_snippets: tf.Tensor, window: int, stride: int,
                  seed: int | None = None) -> tf.Tensor:
    """Training crops: every start moved by a uniform integer in [-S/2, S/2], kept inside
    the video (a video of at most W snippets keeps its one window at 0)."""
    last = tf.maximum(tf.cast(num_snippets, tf.int32) - window, 0)
    half = stride // 2
    shift = tf.random.uniform(tf.shape(starts), -half, half + 1, dtype=tf.int32, seed=seed)
    return tf.clip_by_value(starts + shift, 0, last)


def cut_windows(features: tf.Tensor, starts: tf.Tensor, window: int) -> tf.Tensor:
    """Windows of a batch of videos of equal length.

    Args:
      features: (B, T, D).
      starts: (n,) int32 from :func:`window_starts` (or jittered).

    Returns:
      (B, n, W, D); positions past T (a video shorter than W) are zeros.
    """
    t = tf.shape(features)[1]
    padded = tf.pad(features, [[0, 0], [0, tf.maximum(window - t, 0)], [0, 0]])  # (B, max(T, W), D)
    idx = starts[:, None] + tf.range(window, dtype=tf.int32)[None, :]  # (n, W)
    return tf.gather(padded, idx, axis=1)  # (B, n, W, D)


def window_ground_truth(segments: tf.Tensor, labels: tf.Tensor, duration: tf.Tensor, num_snippets: tf.Tensor,
                        starts: tf.Tensor, window: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One video's ground truth relative to each of its windows.

    Args:
      segments: (N, 2) seconds; labels: (N,) int32, -1 = padding; duration, num_snippets: ().
      starts: (n,) int32.

    Returns:
      segments (n, N, 2) seconds from the window's start, clipped to the window; labels
      (n, N) with -1 where the segment has no part inside the window; window durations
      (n,) seconds (W snippets, padding included).
    """
    snippet_s = tf.cast(duration, tf.float32) / tf.cast(tf.maximum(num_snippets, 1), tf.float32)
    offset = tf.cast(starts, tf.float32) * snippet_s  # (n,)
    length = tf.cast(window, tf.float32) * snippet_s  # ()
    rel = tf.clip_by_value(segments[None, :, :] - offset[:, None, None], 0.0, length)  # (n, N, 2)
    inside = (rel[..., 1] > rel[..., 0]) & (labels[None, :] >= 0)  # (n, N)
    out_labels = tf.where(inside, tf.broadcast_to(labels[None, :], tf.shape(inside)), -1)
    return rel, out_labels, tf.fill(tf.shape(starts), length)


def windows_to_seconds(segments: tf.Tensor, duration: tf.Tensor, num_snippets: tf.Tensor, starts: tf.Tensor,
                       window: int) -> tf.Tensor:
    """Window-normalized segments -> seconds of the video, clipped to ``[0, duration]``.

    Args:
      segments: (B, n, C, 2) in [0, 1] of each window (the decoder's normalized time).
      duration: (B,) seconds; num_snippets: () snippets of every video of the batch.
      starts: (n,) int32.

    Returns: (B, n, C, 2) seconds.
    """
    duration = tf.cast(duration, tf.float32)
    snippet_s = duration / tf.cast(tf.maximum(num_snippets, 1), tf.float32)  # (B,)
    offset = tf.cast(starts, tf.float32)[None, :] * snippet_s[:, None]  # (B, n)
    length = tf.cast(window, tf.float32) * snippet_s  # (B,)
    out = offset[:, :, None, None] + segments * length[:, None, None, None]
    return tf.minimum(out, duration[:, None, None, None])
