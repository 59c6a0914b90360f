"""Candidates of one scale (paper Sec. 3.4, Fig. 3b-d): steps 1-3 of the decoder.

Per video and scale (``T = T^s``):

1. ``P = softmax(cls_logits)`` (T, K+1). Each snippet gets ONE candidate class, its
   arg-max foreground class, with score ``P[t, c]``. The ``top_snippets`` snippets
   (capped at T) with the highest such score are decoded.
2. Row ``t`` of ``M = sigmoid(mask_logits)`` is the mask predicted BY snippet t. It is
   binarised at every threshold theta in ``mask_thresholds`` (strictly: ``m > theta``).
   Run choice: the contiguous foreground run that contains ``t`` itself (the instance
   the snippet belongs to; masks are instance-specific); when ``m[t] <= theta``, the run
   that contains the mask's peak (first arg-max). A threshold with no foreground gives
   no candidate. Both need only masked reductions over T (no run labelling). A run
   equal to the one from the previous threshold of the same snippet is dropped (an
   exact duplicate: same segment, same score).
3. Candidate: segment ``[start/T, (end+1)/T]`` in normalized time, score
   ``P[t, c] * mean(m[start..end])`` (the paper's class score x "mean predicted
   foreground segment in M"), class ``c``. With ``mask_score="contrast"`` the mean is
   replaced by the run's outer-inner contrast (Eq. 7, :func:`run_contrast`); with
   ``"gated"`` the row is first multiplied by the actionness ``1 - P_bg`` of each
   position, so runs end where the classifier sees background; with ``"consensus"`` the
   contrast is averaged over the masks of every snippet in the run
   (:func:`consensus_contrast`).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tags_tf import ops
from tags_tf.config import PostprocessConfig
from tags_tf.ops import above

_PP = PostprocessConfig()  # the defaults (one definition: tags_tf.config)


def mask_runs(masks: tf.Tensor, anchor: tf.Tensor, thresholds: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The run of ``masks > theta`` that contains ``anchor``, else the one with the peak.

    For each mask and threshold: the contiguous run of positions with ``m > theta`` that
    contains ``anchor``; when ``m[anchor] <= theta``, the run that contains the mask's
    maximum (its first arg-max). No run when ``max(m) <= theta``.

    Args:
      masks: (..., T) float mask probabilities.
      anchor: (...) int32 in [0, T), the predicting snippet of each mask.
      thresholds: (H,) float.

    Returns:
      start, end: (..., H) int32, first and last position of the run (inclusive); 0
        where there is no run.
      valid: (..., H) bool.
    """
    masks = tf.convert_to_tensor(masks, tf.float32)
    thresholds = tf.convert_to_tensor(thresholds, tf.float32)
    t = tf.shape(masks)[-1]
    anchor = tf.cast(anchor, tf.int32)
    peak = tf.argmax(masks, axis=-1, output_type=tf.int32)  # (...)
    m_anchor = tf.gather(masks, anchor[..., None], batch_dims=anchor.shape.rank)[..., 0]  # (...)
    m_peak = tf.reduce_max(masks, axis=-1)  # (...)
    own = above(m_anchor[..., None], thresholds)  # (..., H)
    valid = own | above(m_peak[..., None], thresholds)  # (..., H)
    seed = tf.where(own, anchor[..., None], peak[..., None])  # (..., H) a position inside the run.
    below = ~above(masks[..., None, :], thresholds[:, None])  # (..., H, T) background at theta.
    pos = tf.range(t)  # (T,)
    # The run is bounded by the nearest background position on each side of the seed.
    left = tf.where(below & (pos < seed[..., None]), pos, -1)  # (..., H, T)
    right = tf.where(below & (pos > seed[..., None]), pos, t)  # (..., H, T)
    start = tf.where(valid, tf.reduce_max(left, axis=-1) + 1, 0)
    end = tf.where(valid, tf.reduce_min(right, axis=-1) - 1, 0)
    return start, end, valid


def run_contrast(csum: tf.Tensor, start: tf.Tensor, end: tf.Tensor, t: tf.Tensor, delta: float) -> tf.Tensor:
    """Outer-inner contrast (Eq. 7, :func:`tags_tf.ops.outer_inner_contrast`) of runs
    ``[start, end]`` of one mask row each, floored at 0.

    Args:
      csum: (B, S, T+1) float64 prefix sums of the masks (``csum[..., 0] = 0``).
      start, end: (B, S, H) int32 inclusive run bounds.
      t: scalar int32, T.
    """
    def span(a, b):  # sum of m over [a, b) from the prefix sums
        return tf.gather(csum, b, batch_dims=2) - tf.gather(csum, a, batch_dims=2)

    return tf.cast(tf.maximum(ops.outer_inner_contrast(span, start, end, t, delta), 0.0), tf.float32)


def consensus_contrast(masks: tf.Tensor, start: tf.Tensor, end: tf.Tensor, delta: float) -> tf.Tensor:
    """Eq. 7's outer-inner contrast of run ``[start, end]``, averaged over the masks of
    every snippet inside the run (not only the decoding snippet's).

    A true instance is predicted by each of its snippets (the paper's "predictive
    redundancy"): the block ``M[start..end, start..end]`` is high and its flanks
    ``M[start..end, outside]`` low. With one shared curve per video (actionness) this
    equals :func:`run_contrast`.

    Args:
      masks: (B, T, T) all mask rows, ``[b, u, k]`` = position k of snippet u's mask.
      start, end: (B, S, H) int32 inclusive run bounds.
    Returns (B, S, H) float32, floored at 0.
    """
    t = tf.shape(masks)[-1]
    m = tf.cast(masks, tf.float64)
    # Integral image: integral[b, u, k] = sum of m[b, :u, :k]; (B, T, T) -> (B, T+1, T+1).
    integral = tf.pad(tf.cumsum(tf.cumsum(m, axis=1), axis=2), [[0, 0], [1, 0], [1, 0]])
    flat = tf.reshape(integral, [tf.shape(m)[0], -1])  # (B, (T+1)^2)
    width = t + 1

    def block(r0, r1, c0, c1):  # sum of m[r0:r1, c0:c1] (exclusive ends), (B, S, H)
        b, s_, h = tf.shape(r0)[0], tf.shape(r0)[1], tf.shape(r0)[2]
        idx = tf.stack([r1 * width + c1, r0 * width + c1, r1 * width + c0, r0 * width + c0], axis=-1)
        v = tf.gather(flat, tf.reshape(idx, [b, -1]), batch_dims=1)  # (B, S*H*4)
        v = tf.reshape(v, [b, s_, h, 4])
        return v[..., 0] - v[..., 1] - v[..., 2] + v[..., 3]

    len_f = tf.cast(tf.maximum(end - start + 1, 1), tf.float64)

    def span(c0, c1):  # the run's rows, averaged: sum over columns [c0, c1) / length
        return block(start, end + 1, c0, c1) / len_f

    return tf.cast(tf.maximum(ops.outer_inner_contrast(span, start, end, t, delta), 0.0), tf.float32)


def actionness_logits(cls_logits: tf.Tensor) -> tf.Tensor:
    """(B, T, K+1) classification logits -> (B, T) logit of the actionness ``1 - P_bg``.

    The "w/o mask branch" ablation (paper Table 6) and the 1-D actionness design of
    Table 8 decode this curve in place of every mask row, so candidates are runs of
    snippets the classifier calls foreground, decoded by the same code.
    """
    log_p = tf.nn.log_softmax(tf.cast(cls_logits, tf.float32), axis=-1)
    log_bg = log_p[..., -1]  # background is the last class, (B, T)
    log_fg = tf.reduce_logsumexp(log_p[..., :-1], axis=-1)  # (B, T)
    return log_fg - log_bg


def decode_scale(
    cls_logits: tf.Tensor,
    mask_logits: tf.Tensor,
    mask_thresholds: Sequence[float],
    top_snippets: int,
    mask_score: str = _PP.mask_score,
    contrast_delta: float = _PP.contrast_delta,
) -> dict[str, tf.Tensor]:
    """Candidates of one scale (steps 1-3 of the module docstring).

    Args:
      cls_logits: (B, T, K+1) pre-softmax, class K = background.
      mask_logits: (B, T, T) pre-sigmoid, [b, t, k] = mask predicted by snippet t at k.
      mask_thresholds: H thresholds in (0, 1).
      top_snippets: snippets decoded per video (capped at T).
      mask_score: "mean" (the paper: mean of m over the run), "contrast"
        (:func:`run_contrast`, Eq. 7's outer-inner contrast of the run) or "gated"
        (each mask row multiplied by the actionness ``1 - P_bg`` at every position
        before its runs are found and averaged).
      contrast_delta: the margin fraction of "contrast" (Eq. 7's delta).

    Returns dict of (B, C) tensors with C = min(top_snippets, T) * H:
      segments (B, C, 2) float32 normalized [start, end]; class_scores (B, C) float32
      class score x mask score; actionness_scores (B, C) float32 (1 - P_bg) x mask
      score; classes (B, C) int32; valid (B, C) bool.
      Invalid candidates have both scores 0.
    """
    cls_logits = tf.cast(cls_logits, tf.float32)
    mask_logits = tf.cast(mask_logits, tf.float32)
    num_classes = tf.shape(cls_logits)[-1] - 1
    t = tf.shape(mask_logits)[-1]
    thresholds = tf.sort(tf.constant(mask_thresholds, tf.float32))  # (H,) ascending.
    h = len(mask_thresholds)

    probs = tf.nn.softmax(cls_logits, axis=-1)  # (B, T, K+1)
    fg_probs = probs[..., :num_classes]  # (B, T, K)
    snippet_score = tf.reduce_max(fg_probs, axis=-1)  # (B, T)
    snippet_class = tf.argmax(fg_probs, axis=-1, output_type=tf.int32)  # (B, T)
    k = tf.minimum(top_snippets, t)
    top_score, top_idx = tf.math.top_k(snippet_score, k=k)  # (B, S), S = min(top_snippets, T)
    top_class = tf.gather(snippet_class, top_idx, batch_dims=1)  # (B, S)
    top_action = 1.0 - tf.gather(probs[..., -1], top_idx, batch_dims=1)  # (B, S) 1 - P_bg

    masks = tf.sigmoid(tf.gather(mask_logits, top_idx, batch_dims=1))  # (B, S, T) rows of M.
    if mask_score == "gated":  # m[t, k] * (1 - P_bg[k]): the mask where the classifier sees action.
        masks = masks * (1.0 - probs[:, None, :, -1])  # (B, S, T) * (B, 1, T)
    start, end, valid = mask_runs(masks, top_idx, thresholds)  # (B, S, H) each.

    # Mean of m over [start, end] from a float64 prefix sum (exact enough at T = 1024+).
    csum = tf.pad(tf.cumsum(tf.cast(masks, tf.float64), axis=-1), [[0, 0], [0, 0], [1, 0]])  # (B, S, T+1)
    run_sum = tf.gather(csum, end + 1, batch_dims=2) - tf.gather(csum, start, batch_dims=2)  # (B, S, H)
    run_len = tf.maximum(end - start + 1, 1)  # (B, S, H)
    if mask_score == "contrast":
        mask_score = run_contrast(csum, start, end, t, contrast_delta)  # (B, S, H)
    elif mask_score == "consensus":
        mask_score = consensus_contrast(tf.sigmoid(mask_logits), start, end, contrast_delta)  # (B, S, H)
    else:
        mask_score = tf.cast(run_sum / tf.cast(run_len, tf.float64), tf.float32)  # (B, S, H)

    # Drop a run identical to the previous threshold's run of the same snippet.
    prev_start = tf.pad(start[:, :, :-1], [[0, 0], [0, 0], [1, 0]], constant_values=-1)  # (B, S, H)
    prev_end = tf.pad(end[:, :, :-1], [[0, 0], [0, 0], [1, 0]], constant_values=-1)  # (B, S, H)
    prev_valid = tf.pad(valid[:, :, :-1], [[0, 0], [0, 0], [1, 0]])  # (B, S, H)
    valid = valid & ~(prev_valid & tf.equal(start, prev_start) & tf.equal(end, prev_end))

    t_f = tf.cast(t, tf.float32)
    segments = tf.stack([tf.cast(start, tf.float32) / t_f, tf.cast(end + 1, tf.float32) / t_f], axis=-1)
    zeros = tf.zeros_like(mask_score)
    class_scores = tf.where(valid, top_score[:, :, None] * mask_score, zeros)  # (B, S, H)
    actionness_scores = tf.where(valid, top_action[:, :, None] * mask_score, zeros)  # (B, S, H)
    classes = tf.broadcast_to(top_class[:, :, None], tf.shape(start))  # (B, S) -> (B, S, H)
    b = tf.shape(cls_logits)[0]
    c = k * h
    return {
        "segments": tf.reshape(segments, [b, c, 2]),  # (B, S, H, 2) -> (B, C, 2)
        "class_scores": tf.reshape(class_scores, [b, c]),  # (B, S, H) -> (B, C)
        "actionness_scores": tf.reshape(actionness_scores, [b, c]),  # (B, S, H) -> (B, C)
        "classes": tf.reshape(classes, [b, c]),  # (B, S, H) -> (B, C)
        "valid": tf.reshape(valid, [b, c]),  # (B, S, H) -> (B, C)
    }
