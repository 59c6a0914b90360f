"""Detections from TAGS outputs (paper Sec. 3.4, Fig. 3b-d), in pure TensorFlow ops.

The same code runs eagerly, under ``tf.function`` and inside a served SavedModel
signature: no ``py_function``/``numpy_function``, no Python loop over data, batch-major
with a static number ``N = max_detections`` of padded output rows.

Algorithm, per video and per scale ``s`` (``T = T^s``):

1. ``P = softmax(cls_logits_s{s})`` (T, K+1). Each snippet gets ONE candidate class,
   its arg-max foreground class, with score ``P[t, c]``. The ``top_snippets`` snippets
   (capped at T) with the highest such score are decoded.
2. Row ``t`` of ``M = sigmoid(mask_logits_s{s})`` is the mask predicted BY snippet t.
   It is binarised at every threshold theta in ``mask_thresholds`` (strictly: ``m > theta``).
   Run choice: the contiguous foreground run that contains ``t`` itself (the instance the
   snippet belongs to; masks are instance-specific); when ``m[t] <= theta``, the run
   that contains the mask's peak (first arg-max). A threshold with no foreground gives
   no candidate. Both need only masked reductions over T (no run labelling).
   A run equal to the one from the previous threshold of the same snippet is dropped
   (it would be an exact duplicate: same segment, same score).
3. Candidate: segment ``[start/T, (end+1)/T]`` in normalized time, score
   ``P[t, c] * mean(m[start..end])`` (the paper's class score x "mean predicted
   foreground segment in M"), class ``c``. With ``mask_score="contrast"`` the mean is
   replaced by the run's outer-inner contrast (Eq. 7, :func:`run_contrast`); with
   ``mask_score="gated"`` the row is first multiplied by the actionness ``1 - P_bg`` of
   each position, so runs end where the classifier sees background; with
   ``"consensus"`` the contrast is averaged over the masks of every snippet in the run
   (:func:`consensus_contrast`).
4. All scales are merged, the ``pre_nms_top_k`` best are kept, then Gaussian Soft-NMS
   (Bodla et al.) via ``tf.image.non_max_suppression_with_scores``. ``soft_nms_sigma``
   follows Bodla's convention, decay ``exp(-tIoU^2 / sigma)``; TF's op decays by
   ``exp(-0.5 * IoU^2 / sigma_tf)``, so it receives ``sigma_tf = sigma / 2``. Segments
   become boxes ``[c, start, c + 1, end]`` so that box IoU equals 1-D tIoU and boxes of
   different classes never overlap (per-class NMS); ``nms_per_class=False`` puts every
   box on ``[0, 1]`` (class-agnostic). Detections whose (decayed) score is not above
   ``score_threshold`` are dropped; the best ``max_detections`` are kept.
5. Segments are scaled to seconds by each video's duration.

Class fusion (``class_fusion="external"``, the usual ActivityNet practice): given
external video-level classifier scores ``(B, K)``, masks are treated as class-agnostic
and labelled by the video classifier. Each candidate is repeated for the
``fusion_top_k`` best external classes ``c_j`` with score
``(1 - P[t, K]) * mean(m[run]) * ext[c_j]`` (snippet actionness x mask score x video
class score); classes with external score 0 give nothing.

Padded rows (index >= ``num_detections``): segments 0, scores 0, classes -1.

Devices: ``NonMaxSuppressionV5`` (Soft-NMS) has only a CPU kernel and no XLA lowering;
on a GPU host TF places it on the CPU and the rest on the GPU. Keep the decoder out of
XLA-compiled functions (``DetectionDecoder.supports_jit`` is False).

Long because it is the whole decoder: runs, the four candidate scores, actionness
candidates, Soft-NMS and the Keras layer that exports them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import tensorflow as tf

from tags_tf.data import schema
from tags_tf.config import MASK_SCORES, MASK_SOURCES, ModelConfig, PostprocessConfig
from tags_tf.ops import above, outer_window

# The decoder's defaults are the config's (one definition: tags_tf.config).
_PP = PostprocessConfig()
_MODEL = ModelConfig()
_NMS_BOX_HEIGHT = 1.0  # y-extent of a segment's box; boxes of classes c and c+1 only touch.


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
    """Outer-inner contrast (Eq. 7, one foreground run) of runs ``[start, end]``.

    ``mean(m[start..end])`` minus the mean of ``m`` over the ``ceil(delta * len)`` cells
    on each side (clipped to the video; 0 when none remain), floored at 0.

    Args:
      csum: (B, S, T+1) float64 prefix sums of the masks (``csum[..., 0] = 0``).
      start, end: (B, S, H) int32 inclusive run bounds.
      t: scalar int32, T.
    """
    length = end - start + 1
    lo, hi_excl = outer_window(start, end, t, delta)  # (B, S, H) each
    hi = hi_excl - 1

    def span(a, b):  # sum of m over [a, b) from the prefix sums
        return tf.gather(csum, b, batch_dims=2) - tf.gather(csum, a, batch_dims=2)

    inside = span(start, end + 1) / tf.cast(tf.maximum(length, 1), tf.float64)
    n_out = tf.cast(start - lo + hi - end, tf.float64)
    outside = tf.math.divide_no_nan(span(lo, start) + span(end + 1, hi + 1), n_out)
    return tf.cast(tf.maximum(inside - outside, 0.0), tf.float32)


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

    length = end - start + 1
    lo, hi_excl = outer_window(start, end, t, delta)
    hi = hi_excl - 1
    rows0, rows1 = start, end + 1
    len_f = tf.cast(tf.maximum(length, 1), tf.float64)
    inside = block(rows0, rows1, start, end + 1) / (len_f * len_f)
    n_out = tf.cast(start - lo + hi - end, tf.float64) * len_f
    outside = tf.math.divide_no_nan(block(rows0, rows1, lo, start) + block(rows0, rows1, end + 1, hi + 1), n_out)
    return tf.cast(tf.maximum(inside - outside, 0.0), tf.float32)


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


def fuse_external_scores(
    actionness_scores: tf.Tensor,
    segments: tf.Tensor,
    external_scores: tf.Tensor,
    top_k: int = 1,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Labels class-agnostic candidates with a video-level classifier.

    Args:
      actionness_scores: (B, C) (1 - P_bg) x mask score per candidate.
      segments: (B, C, 2).
      external_scores: (B, K) video-level class scores (0 = class not proposed).
      top_k: candidates are repeated for this many best external classes.

    Returns:
      segments (B, C*top_k, 2), scores (B, C*top_k), classes (B, C*top_k) int32, with
      score = actionness score x external score of the class.
    """
    external_scores = tf.cast(external_scores, tf.float32)
    ext_score, ext_class = tf.math.top_k(external_scores, k=top_k)  # (B, k)
    b = tf.shape(segments)[0]
    c = tf.shape(segments)[1]
    scores = actionness_scores[:, None, :] * ext_score[:, :, None]  # (B, k, C)
    classes = tf.broadcast_to(ext_class[:, :, None], tf.shape(scores))  # (B, k, C)
    segs = tf.broadcast_to(segments[:, None], [b, top_k, c, 2])  # (B, C, 2) -> (B, k, C, 2)
    return (
        tf.reshape(segs, [b, top_k * c, 2]),  # (B, k, C, 2) -> (B, k*C, 2)
        tf.reshape(scores, [b, top_k * c]),  # (B, k, C) -> (B, k*C)
        tf.reshape(classes, [b, top_k * c]),  # (B, k, C) -> (B, k*C)
    )


def best_candidates(segments: tf.Tensor, scores: tf.Tensor, classes: tf.Tensor,
                    k: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Each row's ``k`` best-scoring candidates (all when it has fewer), best first:
    segments (B, C', 2), scores (B, C'), classes (B, C')."""
    scores, keep = tf.math.top_k(scores, k=tf.minimum(k, tf.shape(scores)[1]))  # (B, C')
    return tf.gather(segments, keep, batch_dims=1), scores, tf.gather(classes, keep, batch_dims=1)


def soft_nms(
    segments: tf.Tensor,
    scores: tf.Tensor,
    classes: tf.Tensor,
    max_detections: int,
    sigma: float,
    score_threshold: float,
    pre_nms_top_k: int | None = None,
    per_class: bool = True,
) -> dict[str, tf.Tensor]:
    """Gaussian Soft-NMS per video on 1-D segments, padded to ``max_detections`` rows.

    Args:
      segments: (B, C, 2) float [start, end] (any unit; normalized time in the decoder).
      scores: (B, C) float; candidates with score <= score_threshold are ignored.
      classes: (B, C) int32.
      max_detections: N, rows of the output.
      sigma: Bodla et al.'s sigma: a kept detection multiplies the score of every
        other candidate (of the same class when ``per_class``) by exp(-tIoU^2 / sigma).
      score_threshold: detections whose decayed score is not above this are dropped.
      pre_nms_top_k: keep only this many best-scoring candidates first (None: all).
      per_class: suppress only within a class (else across classes).

    Returns dict: segments (B, N, 2), scores (B, N) non-increasing, classes (B, N)
    int32 (-1 in padded rows), num_detections (B,) int32.
    """
    if sigma <= 0:
        raise ValueError(f"soft_nms_sigma must be > 0 (Gaussian Soft-NMS), got {sigma}")
    segments = tf.cast(segments, tf.float32)
    scores = tf.cast(scores, tf.float32)
    classes = tf.cast(classes, tf.int32)
    if pre_nms_top_k is not None:
        segments, scores, classes = best_candidates(segments, scores, classes, pre_nms_top_k)
    y0 = tf.cast(classes, tf.float32) * _NMS_BOX_HEIGHT if per_class else tf.zeros_like(scores)
    # Boxes [y1, x1, y2, x2] = [c, start, c + 1, end]: box IoU == 1-D tIoU within a class.
    boxes = tf.stack([y0, segments[..., 0], y0 + _NMS_BOX_HEIGHT, segments[..., 1]], axis=-1)  # (B, C', 4)
    n = int(max_detections)

    def one_video(args):
        v_boxes, v_scores = args
        idx, kept = tf.image.non_max_suppression_with_scores(
            v_boxes,
            v_scores,
            max_output_size=n,
            iou_threshold=1.0,  # Unused by Soft-NMS; 1.0 keeps older TF kernels from hard-pruning.
            score_threshold=score_threshold,
            soft_nms_sigma=0.5 * sigma,  # TF: exp(-0.5 IoU^2 / sigma_tf) == exp(-IoU^2 / sigma).
        )
        count = tf.size(idx)
        idx = tf.pad(idx, [[0, n - count]])
        kept = tf.pad(kept, [[0, n - count]])
        return idx, kept, count

    idx, kept, count = tf.map_fn(
        one_video,
        (boxes, scores),
        fn_output_signature=(
            tf.TensorSpec([n], tf.int32),
            tf.TensorSpec([n], tf.float32),
            tf.TensorSpec([], tf.int32),
        ),
    )  # (B, N), (B, N), (B,)
    is_row = tf.range(n)[None, :] < count[:, None]  # (B, N)
    out_segments = tf.where(is_row[..., None], tf.gather(segments, idx, batch_dims=1), 0.0)
    out_classes = tf.where(is_row, tf.gather(classes, idx, batch_dims=1), -1)
    out_scores = tf.where(is_row, kept, 0.0)
    return {
        "segments": out_segments,
        "scores": out_scores,
        "classes": out_classes,
        "num_detections": count,
    }


def decode_candidates(
    outputs: Mapping[str, tf.Tensor],
    scales: Sequence[int],
    mask_thresholds: Sequence[float],
    top_snippets: int,
    external_scores: tf.Tensor | None = None,
    fusion_top_k: int = 1,
    mask_score: str = _PP.mask_score,
    contrast_delta: float = _PP.contrast_delta,
    mask_source: str = _PP.mask_source,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Steps 1-3 of the module docstring for every scale, pooled: the candidates before
    Soft-NMS, in normalized time.

    Args:
      outputs: dict with ``cls_logits_s{s}`` (B, T^s, K+1) and ``mask_logits_s{s}``
        (B, T^s, T^s) for every s in ``scales``.
      external_scores: optional (B, K) video-level class scores (class fusion).
      mask_source: where candidate runs come from: "mask" (the global masks), "actionness"
        (every row replaced by the classifier's foreground curve, :func:`actionness_logits`)
        or "both" (the candidates of the two, pooled).

    Returns segments (B, C, 2) in [0, 1], scores (B, C) float32 and classes (B, C) int32.
    """
    if mask_source not in MASK_SOURCES:
        raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}")
    cands = []
    for s in scales:
        cls_key, mask_key = f"cls_logits_s{s}", f"mask_logits_s{s}"
        for key in (cls_key, mask_key):
            if key not in outputs:
                raise KeyError(f"model outputs have no {key!r} (scales {tuple(scales)}); got {sorted(outputs)}")
        rows = []  # (B, T, T) candidate-mask logits of each source
        if mask_source in ("mask", "both"):
            rows.append(outputs[mask_key])
        if mask_source in ("actionness", "both"):
            curve = actionness_logits(outputs[cls_key])  # (B, T)
            rows.append(tf.tile(curve[:, None, :], [1, tf.shape(curve)[1], 1]))  # (B, 1, T) -> (B, T, T)
        for mask_logits in rows:
            cands.append(decode_scale(outputs[cls_key], mask_logits, mask_thresholds, top_snippets,
                                      mask_score, contrast_delta))
    merged = {key: tf.concat([c[key] for c in cands], axis=1) for key in cands[0]}  # (B, sum C_s)
    if external_scores is None:
        return merged["segments"], merged["class_scores"], merged["classes"]
    return fuse_external_scores(merged["actionness_scores"], merged["segments"], external_scores, fusion_top_k)


def decode_detections(
    outputs: Mapping[str, tf.Tensor],
    duration: tf.Tensor,
    scales: Sequence[int],
    mask_thresholds: Sequence[float],
    top_snippets: int,
    soft_nms_sigma: float,
    pre_nms_top_k: int,
    max_detections: int,
    score_threshold: float,
    external_scores: tf.Tensor | None = None,
    fusion_top_k: int = 1,
    nms_per_class: bool = True,
    mask_score: str = _PP.mask_score,
    contrast_delta: float = _PP.contrast_delta,
    mask_source: str = _PP.mask_source,
) -> dict[str, tf.Tensor]:
    """Model outputs -> padded detections in seconds (the whole module docstring):
    :func:`decode_candidates`, then :func:`soft_nms`, then seconds.

    Args: those of :func:`decode_candidates` and :func:`soft_nms`; ``duration`` (B,) seconds.

    Returns dict: detection_segments (B, N, 2) float32 seconds, detection_scores (B, N)
    float32, detection_classes (B, N) int32, num_detections (B,) int32.
    """
    segments, scores, classes = decode_candidates(
        outputs, scales, mask_thresholds, top_snippets, external_scores, fusion_top_k, mask_score,
        contrast_delta, mask_source,
    )
    det = soft_nms(
        segments,
        scores,
        classes,
        max_detections=max_detections,
        sigma=soft_nms_sigma,
        score_threshold=score_threshold,
        pre_nms_top_k=pre_nms_top_k,
        per_class=nms_per_class,
    )
    duration = tf.reshape(tf.cast(duration, tf.float32), [-1, 1, 1])  # (B,) -> (B, 1, 1)
    return detections_dict(det, tf.clip_by_value(det["segments"], 0.0, 1.0) * duration)


def detections_dict(det: Mapping[str, tf.Tensor], segments_s: tf.Tensor) -> dict[str, tf.Tensor]:
    """:func:`soft_nms`'s output with ``segments_s`` (B, N, 2) seconds, under the schema's keys."""
    return {
        schema.DETECTION_SEGMENTS: segments_s,
        schema.DETECTION_SCORES: det["scores"],
        schema.DETECTION_CLASSES: det["classes"],
        schema.NUM_DETECTIONS: det["num_detections"],
    }


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


@keras.saving.register_keras_serializable(package="tags_tf")
class DetectionDecoder(keras.layers.Layer):
    """Model outputs -> detections; shared by ``predict_step``, evaluation and serving.

    Weight-free. Always computes in float32. Not XLA-compilable (Soft-NMS has no XLA
    kernel), hence ``supports_jit = False``.

    Call args:
      outputs: dict with ``cls_logits_s{s}`` (B, T^s, K+1) and ``mask_logits_s{s}``
        (B, T^s, T^s) for each scale.
      duration: (B,) seconds.
      external_scores: (B, K) video-level classifier scores; required when
        ``class_fusion == "external"``, refused otherwise.

    Returns dict: detection_segments (B, N, 2) float32 seconds, detection_scores (B, N)
    float32, detection_classes (B, N) int32, num_detections (B,) int32; N =
    ``max_detections``; rows past ``num_detections`` are 0 (classes -1).
    """

    def __init__(
        self,
        num_classes: int,
        scales: Sequence[int] = _MODEL.scales,
        mask_thresholds: Sequence[float] = _PP.mask_thresholds,
        top_snippets: int = _PP.top_snippets,
        soft_nms_sigma: float = _PP.soft_nms_sigma,
        pre_nms_top_k: int = _PP.pre_nms_top_k,
        max_detections: int = _PP.max_detections,
        score_threshold: float = _PP.score_threshold,
        class_fusion: str = _PP.class_fusion,
        fusion_top_k: int = 1,
        nms_per_class: bool = True,
        mask_source: str = _PP.mask_source,
        mask_score: str = _PP.mask_score,
        contrast_delta: float = _PP.contrast_delta,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if class_fusion not in ("none", "external"):
            raise ValueError(f"class_fusion must be 'none' or 'external', got {class_fusion!r}")
        if not mask_thresholds or any(not 0.0 < th < 1.0 for th in mask_thresholds):
            raise ValueError(f"mask_thresholds must lie in (0, 1), got {tuple(mask_thresholds)}")
        for name, value in (
            ("num_classes", num_classes),
            ("top_snippets", top_snippets),
            ("pre_nms_top_k", pre_nms_top_k),
            ("max_detections", max_detections),
            ("fusion_top_k", fusion_top_k),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}")
        if mask_score not in MASK_SCORES:
            raise ValueError(f"mask_score must be one of {MASK_SCORES}, got {mask_score!r}")
        if not 0.0 < contrast_delta <= 1.0:
            raise ValueError(f"contrast_delta must be in (0, 1], got {contrast_delta}")
        if soft_nms_sigma <= 0:
            raise ValueError(f"soft_nms_sigma must be > 0, got {soft_nms_sigma}")
        if fusion_top_k > num_classes:
            raise ValueError(f"fusion_top_k {fusion_top_k} exceeds num_classes {num_classes}")
        self.num_classes = int(num_classes)
        self.scales = tuple(int(s) for s in scales)
        self.mask_thresholds = tuple(float(th) for th in mask_thresholds)
        self.top_snippets = int(top_snippets)
        self.soft_nms_sigma = float(soft_nms_sigma)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.max_detections = int(max_detections)
        self.score_threshold = float(score_threshold)
        self.class_fusion = class_fusion
        self.fusion_top_k = int(fusion_top_k)
        self.nms_per_class = bool(nms_per_class)
        self.mask_source = mask_source
        self.mask_score = mask_score
        self.contrast_delta = float(contrast_delta)
        self.supports_jit = False

    @classmethod
    def from_tags_config(cls, cfg, **kwargs) -> "DetectionDecoder":
        """Builds the decoder from a ``TagsConfig`` (model.num_classes/scales, postprocess.*)."""
        p = cfg.postprocess
        return cls(
            num_classes=cfg.model.num_classes,
            scales=cfg.model.scales,
            mask_thresholds=p.mask_thresholds,
            top_snippets=p.top_snippets,
            soft_nms_sigma=p.soft_nms_sigma,
            pre_nms_top_k=p.pre_nms_top_k,
            max_detections=p.max_detections,
            score_threshold=p.score_threshold,
            class_fusion=p.class_fusion,
            mask_source=p.mask_source,
            mask_score=p.mask_score,
            contrast_delta=p.contrast_delta,
            **kwargs,
        )

    def _check(self, outputs, external_scores) -> None:
        for s in self.scales:
            key = f"cls_logits_s{s}"
            if key in outputs:
                k1 = outputs[key].shape[-1]
                if k1 is not None and k1 != self.num_classes + 1:
                    raise ValueError(
                        f"{key} has {k1} classes in its last axis; expected num_classes + 1 = "
                        f"{self.num_classes + 1} (class {self.num_classes} = background)"
                    )
        if self.class_fusion == "external" and external_scores is None:
            raise ValueError("class_fusion='external' needs external_scores of shape (B, num_classes)")
        if self.class_fusion == "none" and external_scores is not None:
            raise ValueError("external_scores were given but class_fusion is 'none'")
        if external_scores is not None:
            k = external_scores.shape[-1]
            if k is not None and k != self.num_classes:
                raise ValueError(f"external_scores has {k} classes; expected {self.num_classes}")

    def call(self, outputs, duration, external_scores=None):
        self._check(outputs, external_scores)
        return decode_detections(
            outputs,
            duration,
            scales=self.scales,
            mask_thresholds=self.mask_thresholds,
            top_snippets=self.top_snippets,
            soft_nms_sigma=self.soft_nms_sigma,
            pre_nms_top_k=self.pre_nms_top_k,
            max_detections=self.max_detections,
            score_threshold=self.score_threshold,
            external_scores=external_scores,
            fusion_top_k=self.fusion_top_k,
            nms_per_class=self.nms_per_class,
            mask_score=self.mask_score,
            contrast_delta=self.contrast_delta,
            mask_source=self.mask_source,
        )

    def candidates(self, outputs, external_scores=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The candidates before Soft-NMS (:func:`decode_candidates`), each sample's best
        ``pre_nms_top_k``: segments (B, C, 2) in [0, 1], scores (B, C), classes (B, C)."""
        self._check(outputs, external_scores)
        segments, scores, classes = decode_candidates(
            outputs, self.scales, self.mask_thresholds, self.top_snippets, external_scores, self.fusion_top_k,
            self.mask_score, self.contrast_delta, self.mask_source,
        )
        return best_candidates(segments, scores, classes, self.pre_nms_top_k)

    def select(self, segments, scores, classes) -> dict[str, tf.Tensor]:
        """Soft-NMS over pooled candidates whose ``segments`` (B, C, 2) are already in
        seconds (the windows of a long video): the detections dict of :meth:`call`."""
        det = soft_nms(segments, scores, classes, max_detections=self.max_detections, sigma=self.soft_nms_sigma,
                       score_threshold=self.score_threshold, per_class=self.nms_per_class)
        return detections_dict(det, det["segments"])

    def compute_output_spec(self, outputs, duration, external_scores=None):
        b, n = duration.shape[0], self.max_detections
        return {
            schema.DETECTION_SEGMENTS: keras.KerasTensor((b, n, 2), dtype="float32"),
            schema.DETECTION_SCORES: keras.KerasTensor((b, n), dtype="float32"),
            schema.DETECTION_CLASSES: keras.KerasTensor((b, n), dtype="int32"),
            schema.NUM_DETECTIONS: keras.KerasTensor((b,), dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "scales": list(self.scales),
                "mask_thresholds": list(self.mask_thresholds),
                "top_snippets": self.top_snippets,
                "soft_nms_sigma": self.soft_nms_sigma,
                "pre_nms_top_k": self.pre_nms_top_k,
                "max_detections": self.max_detections,
                "score_threshold": self.score_threshold,
                "class_fusion": self.class_fusion,
                "fusion_top_k": self.fusion_top_k,
                "nms_per_class": self.nms_per_class,
                "mask_source": self.mask_source,
                "mask_score": self.mask_score,
                "contrast_delta": self.contrast_delta,
            }
        )
        return config
