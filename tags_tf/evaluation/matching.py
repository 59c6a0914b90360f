"""The official ActivityNet matching and AP (see :mod:`tags_tf.evaluation.metrics` for the
protocol), vectorised.

Implementation: instead of the reference's per-prediction Python loop (about 90 s on
ActivityNet validation) the tIoU of every (prediction, same-class same-video ground
truth) pair is computed at once, pairs below the lowest threshold are dropped (they can
never match), and the greedy matching runs in rounds: round r handles, for every
(class, video) group simultaneously, its r-th prediction in score order, vectorised over
thresholds. Within a group the order is the reference order, and groups never share
ground truth, so the result is identical. Tie rules reproduced from the reference:

* equal scores: ``argsort()[::-1]`` puts the *later* prediction (file order) first;
* equal tIoU: ``argsort()[::-1]`` tries the *later* ground truth of the video first;
* a zero-length prediction against a zero-length ground truth gives 0/0 = NaN tIoU
  (3 such GT segments exist in ActivityNet val). ``NaN < thr`` is False, so the
  reference counts the pair as a match at every threshold, and NaN sorts last in
  ``argsort`` so it is tried first; we do the same (and silence the 0/0 warning).

Pure numpy; no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def segment_iou(segments: np.ndarray, gt_segments: np.ndarray) -> np.ndarray:
    """tIoU matrix with the reference's arithmetic (NaN for two zero-length segments).

    Args:
      segments: (A, 2) predictions [start, end].
      gt_segments: (B, 2) ground truth [start, end].
    Returns:
      (A, B) float64.
    """
    a = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    # (A, 1) against (1, B) broadcasts to (A, B).
    return _pair_iou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])


def _pair_iou(ps, pe, gs, ge):
    """Element-wise tIoU, same operation order as the reference ``segment_iou``."""
    inter = (np.minimum(pe, ge) - np.maximum(ps, gs)).clip(0)
    union = (ge - gs) + (pe - ps) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """All-point interpolated AP (VOC 2011), the reference ``interpolated_prec_rec``.

    Args:
      precision, recall: (..., N) curves in ranking order (recall non-decreasing).
    Returns:
      (...,) AP; 0 for N == 0.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.shape[-1] == 0:
        return np.zeros(precision.shape[:-1])
    # Precision envelope: running max from the right (the reference's trailing 0 adds nothing).
    envelope = np.flip(np.maximum.accumulate(np.flip(precision, -1), axis=-1), -1)
    # Recall steps; a zero step contributes exactly 0, so summing all steps equals the
    # reference's sum over the steps where recall changes.
    steps = np.diff(recall, axis=-1, prepend=0.0)
    return np.sum(steps * envelope, axis=-1)


@dataclass(frozen=True)
class Matches:
    """Matching outcome, predictions in evaluation order (class asc, score desc).

    Attributes (P predictions, T thresholds, C classes):
      order: (P,) index of each row into the arrays given to :func:`match_detections`
        (:func:`evaluate_detections` maps it to rows of its Detections).
      pred_class: (P,) class id. scores: (P,) score.
      tp: (T, P) bool, true positive at each threshold.
      matched_gt: (T, P) int64 ground-truth index matched, -1 for false positives.
      npos: (C,) number of ground truths per class.
    """

    order: np.ndarray
    pred_class: np.ndarray
    scores: np.ndarray
    tp: np.ndarray
    matched_gt: np.ndarray
    npos: np.ndarray


def match_detections(gt_video: np.ndarray, gt_class: np.ndarray, gt_segments: np.ndarray,
                     pred_video: np.ndarray, pred_class: np.ndarray, pred_segments: np.ndarray,
                     pred_scores: np.ndarray, tiou_thresholds: Sequence[float],
                     num_classes: int) -> Matches:
    """Greedy official matching of predictions to ground truth at every threshold.

    Args:
      gt_video, gt_class: (G,) int ids; gt_segments: (G, 2). Order = reference GT order.
      pred_video: (P,) int video ids, -1 for a video with no ground truth (always a
        false positive). pred_class: (P,) int in [0, num_classes). pred_segments: (P, 2).
      pred_scores: (P,). Row order is the file order (used only to break score ties).
      tiou_thresholds: (T,) thresholds.
      num_classes: C, class ids are in [0, C).
    Returns:
      Matches.
    """
    thr = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    gt_video = np.asarray(gt_video, dtype=np.int64).reshape(-1)
    gt_class = np.asarray(gt_class, dtype=np.int64).reshape(-1)
    gt_segments = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    pred_video = np.asarray(pred_video, dtype=np.int64).reshape(-1)
    pred_class = np.asarray(pred_class, dtype=np.int64).reshape(-1)
    pred_segments = np.asarray(pred_segments, dtype=np.float64).reshape(-1, 2)
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    num_t, num_p, num_g = thr.size, pred_scores.size, gt_class.size

    # Evaluation order: class asc, score desc, later file row first on ties (the
    # reference's stable ascending argsort reversed).
    order = np.lexsort((-np.arange(num_p), -pred_scores, pred_class))
    cls, vid, seg = pred_class[order], pred_video[order], pred_segments[order]

    # Ground truth grouped by (class, video), file order inside a group.
    num_v = int(max(gt_video.max(initial=-1), vid.max(initial=-1))) + 1
    gkey = gt_class * num_v + gt_video
    gorder = np.argsort(gkey, kind="stable")
    gkey_sorted = gkey[gorder]
    pkey = np.where(vid >= 0, cls * num_v + vid, -1)
    lo = np.searchsorted(gkey_sorted, pkey, side="left")
    count = np.where(vid >= 0, np.searchsorted(gkey_sorted, pkey, side="right") - lo, 0)

    # Every (prediction, same-group GT) pair. pos = GT position inside its group.
    pair_pred = np.repeat(np.arange(num_p), count)
    pos = np.arange(pair_pred.size) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = gorder[np.repeat(lo, count) + pos]
    iou = _pair_iou(seg[pair_pred, 0], seg[pair_pred, 1],
                    gt_segments[pair_gt, 0], gt_segments[pair_gt, 1])
    is_nan = np.isnan(iou)
    keep = is_nan | (iou >= thr.min(initial=np.inf))
    pair_pred, pos, pair_gt, iou, is_nan = (
        pair_pred[keep], pos[keep], pair_gt[keep], iou[keep], is_nan[keep])
    # Try order per prediction: NaN first, then tIoU desc, then later GT first.
    try_order = np.lexsort((-pos, -np.where(is_nan, np.inf, iou), pair_pred))
    pair_pred, pair_gt, iou = pair_pred[try_order], pair_gt[try_order], iou[try_order]

    tp = np.zeros((num_t, num_p), dtype=bool)
    matched = np.full((num_t, num_p), -1, dtype=np.int64)
    if pair_pred.size:
        # Pad candidates into (Pc, K): row = candidate prediction, col = try order.
        cand, first_pair, k = np.unique(pair_pred, return_index=True, return_counts=True)
        width = int(k.max())
        row = np.repeat(np.arange(cand.size), k)
        col = np.arange(pair_pred.size) - np.repeat(first_pair, k)
        valid_pad = np.zeros((cand.size, width), dtype=bool)
        gt_pad = np.zeros((cand.size, width), dtype=np.int64)
        iou_pad = np.zeros((cand.size, width))
        valid_pad[row, col] = True
        gt_pad[row, col] = pair_gt
        iou_pad[row, col] = iou
        # Rank of each candidate inside its (class, video) group, in evaluation order.
        ckey = pkey[cand]
        by_key = np.argsort(ckey, kind="stable")
        sorted_key = ckey[by_key]
        group_start = np.searchsorted(sorted_key, sorted_key, side="left")
        rank = np.empty(cand.size, dtype=np.int64)
        rank[by_key] = np.arange(cand.size) - group_start
        locked = np.zeros((num_t, num_g), dtype=bool)
        rounds = np.argsort(rank, kind="stable")
        bounds = np.searchsorted(rank[rounds], np.arange(int(rank.max()) + 2))
        for r in range(bounds.size - 1):
            rows = rounds[bounds[r]:bounds[r + 1]]  # at most one per group
            g = gt_pad[rows]  # (n, K)
            # (T, n, K): candidates not yet matched at each threshold.
            avail = valid_pad[rows][None] & ~locked[:, g]
            first = avail.argmax(axis=-1)  # (T, n) first available in try order
            cols = np.arange(rows.size)[None, :]
            best = iou_pad[rows][cols, first]  # (T, n)
            hit = avail.any(axis=-1) & ((best >= thr[:, None]) | np.isnan(best))
            t_idx, n_idx = np.nonzero(hit)
            gt_hit = g[n_idx, first[t_idx, n_idx]]
            locked[t_idx, gt_hit] = True
            tp[t_idx, cand[rows[n_idx]]] = True
            matched[t_idx, cand[rows[n_idx]]] = gt_hit
    npos = np.bincount(gt_class, minlength=num_classes)
    return Matches(order, cls, pred_scores[order], tp, matched, npos)


def average_precision(matches: Matches, num_classes: int) -> np.ndarray:
    """(T, C) AP per threshold and class from :func:`match_detections` output.

    A class without predictions has AP 0 (reference behaviour); a class without ground
    truth gets NaN (the callers only use classes present in the ground truth).
    """
    num_t = matches.tp.shape[0]
    ap = np.zeros((num_t, num_classes))
    starts = np.searchsorted(matches.pred_class, np.arange(num_classes + 1))
    for c in range(num_classes):
        s, e = starts[c], starts[c + 1]
        if matches.npos[c] == 0:
            ap[:, c] = np.nan
            continue
        if s == e:
            continue
        tp = matches.tp[:, s:e]
        tp_cum = np.cumsum(tp, axis=1).astype(np.float64)  # (T, n_c)
        fp_cum = np.cumsum(~tp, axis=1).astype(np.float64)
        recall = tp_cum / float(matches.npos[c])
        precision = tp_cum / (tp_cum + fp_cum)
        ap[:, c] = interpolated_average_precision(precision, recall)
    return ap
