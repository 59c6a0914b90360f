"""Candidates to detections: class fusion, the pre-NMS top-k and Gaussian Soft-NMS.

Soft-NMS (Bodla et al.) runs per video via ``tf.image.non_max_suppression_with_scores``.
``soft_nms_sigma`` follows Bodla's convention, decay ``exp(-tIoU^2 / sigma)``; TF's op
decays by ``exp(-0.5 * IoU^2 / sigma_tf)``, so it receives ``sigma_tf = sigma / 2``.
Segments become boxes ``[c, start, c + 1, end]`` so that box IoU equals 1-D tIoU and
boxes of different classes never overlap (per-class NMS); ``per_class=False`` puts every
box on ``[0, 1]`` (class-agnostic). Detections whose (decayed) score is not above
``score_threshold`` are dropped; the best ``max_detections`` are kept. Padded rows
(index >= ``num_detections``): segments 0, scores 0, classes -1.

Class fusion (``class_fusion="external"``, the usual ActivityNet practice): given
external video-level classifier scores ``(B, K)``, masks are treated as class-agnostic
and labelled by the video classifier. Each candidate is repeated for the
``fusion_top_k`` best external classes ``c_j`` with score
``(1 - P[t, K]) * mean(m[run]) * ext[c_j]``; classes with external score 0 give nothing.

Devices: ``NonMaxSuppressionV5`` has only a CPU kernel and no XLA lowering; on a GPU host
TF places it on the CPU and the rest on the GPU.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from tags_tf.data import schema

_NMS_BOX_HEIGHT = 1.0  # y-extent of a segment's box; boxes of classes c and c+1 only touch.


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


def detections_dict(det: Mapping[str, tf.Tensor], segments_s: tf.Tensor) -> dict[str, tf.Tensor]:
    """:func:`soft_nms`'s output with ``segments_s`` (B, N, 2) seconds, under the schema's keys."""
    return {
        schema.DETECTION_SEGMENTS: segments_s,
        schema.DETECTION_SCORES: det["scores"],
        schema.DETECTION_CLASSES: det["classes"],
        schema.NUM_DETECTIONS: det["num_detections"],
    }
