"""Temporal action detection mAP, exactly as the official ActivityNet evaluator.

Reference: activitynet/ActivityNet ``Evaluation/eval_detection.py`` (``ANETdetection``,
``compute_average_precision_detection``, ``utils.interpolated_prec_rec`` and
``utils.segment_iou``), run with ``check_status=False``. The protocol, per class c:

1. the predictions of class c are sorted by descending score;
2. in that order, at each tIoU threshold, a prediction is a true positive if the
   unmatched ground truth (same class, same video) with the highest tIoU has
   tIoU >= threshold, and that ground truth becomes matched; otherwise it is a
   false positive (also when its video has no ground truth of class c, or is not in
   the ground-truth subset at all);
3. AP = all-point interpolated area under the precision/recall curve (VOC 2011),
   recall normalised by the number of ground truths of class c.

mAP is the mean AP over the classes present in the ground truth, per threshold;
"average mAP" is the mean over thresholds (ActivityNet 0.5:0.05:0.95, THUMOS14
0.3:0.1:0.7, same matching).

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

Long because it is the whole evaluator (matching, AP, the report); splitting it would
scatter what must stay equal to the official code.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from tags_tf.data.annotations import AnnotationSet
from tags_tf.evaluation.detections import Detections
from tags_tf.evaluation.results_reader import parse_results
from tags_tf.data.schema import alternate_video_id

logger = logging.getLogger(__name__)

# The reference uses np.linspace; keeping it gives bit-identical thresholds.
ANET_TIOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
THUMOS_TIOU_THRESHOLDS = np.linspace(0.3, 0.7, 5)
PROTOCOLS = {"anet": ANET_TIOU_THRESHOLDS, "thumos": THUMOS_TIOU_THRESHOLDS}


def tiou_thresholds_for(protocol: str) -> np.ndarray:
    """(T,) thresholds of a protocol name ("anet"/"activitynet" or "thumos")."""
    key = {"activitynet": "anet"}.get(protocol.lower(), protocol.lower())
    if key not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected 'anet' or 'thumos'")
    return PROTOCOLS[key].copy()


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


@dataclass(frozen=True)
class DetectionMetrics:
    """mAP report. T thresholds, C classes present in the ground truth (sorted names).

    Attributes:
      protocol: "anet", "thumos" or "custom".
      tiou_thresholds: (T,). class_names: (C,).
      ap: (T, C) per-class AP. mAP: (T,). average_mAP: mean of mAP.
      num_videos, num_ground_truth: size of the ground-truth subset.
      num_predictions: predictions scored (unknown-label ones excluded).
      unknown_label_predictions / unknown_labels: dropped predictions whose label is not
        a ground-truth class of the subset (the reference cannot score them either).
      absent_video_predictions / absent_videos: predictions (scored as false positives,
        like the reference) and distinct videos not in the ground-truth subset.
      remapped_video_ids: prediction video ids matched only after adding/removing a
        "v_" prefix (BSN/BMN style ids).
      matches: the Matches (only with keep_matches=True).
    """

    protocol: str
    tiou_thresholds: np.ndarray
    class_names: tuple[str, ...]
    ap: np.ndarray
    mAP: np.ndarray
    average_mAP: float
    num_videos: int
    num_ground_truth: int
    num_predictions: int
    unknown_label_predictions: int = 0
    unknown_labels: tuple[str, ...] = ()
    absent_video_predictions: int = 0
    absent_videos: int = 0
    remapped_video_ids: int = 0
    matches: Matches | None = field(default=None, repr=False)

    @property
    def average_map(self) -> float:
        """Alias of ``average_mAP`` (snake case)."""
        return self.average_mAP

    @property
    def map_per_tiou(self) -> np.ndarray:
        """Alias of ``mAP``: (T,) mAP per threshold."""
        return self.mAP

    @property
    def per_class_ap(self) -> dict[str, np.ndarray]:
        """{class name: (T,) AP}."""
        return {name: self.ap[:, i] for i, name in enumerate(self.class_names)}

    def notes(self) -> list[str]:
        """Human-readable warnings about predictions that could not be matched."""
        out = []
        if self.unknown_label_predictions:
            shown = ", ".join(repr(x) for x in self.unknown_labels[:5])
            more = "" if len(self.unknown_labels) <= 5 else f" and {len(self.unknown_labels) - 5} more"
            out.append(f"{self.unknown_label_predictions} prediction(s) with label(s) not in the "
                       f"ground truth were ignored: {shown}{more}")
        if self.absent_video_predictions:
            out.append(f"{self.absent_video_predictions} prediction(s) for {self.absent_videos} "
                       "video(s) not in the ground-truth subset were scored as false positives")
        if self.remapped_video_ids:
            out.append(f"{self.remapped_video_ids} prediction(s) matched their video only after "
                       "adding/removing a 'v_' prefix")
        return out

    def to_dict(self, per_class: bool = True) -> dict[str, Any]:
        out = {
            "protocol": self.protocol,
            "tiou_thresholds": [round(float(t), 10) for t in self.tiou_thresholds],
            "mAP": [float(x) for x in self.mAP],
            "average_mAP": float(self.average_mAP),
            "num_videos": self.num_videos,
            "num_ground_truth": self.num_ground_truth,
            "num_predictions": self.num_predictions,
            "unknown_label_predictions": self.unknown_label_predictions,
            "unknown_labels": list(self.unknown_labels),
            "absent_video_predictions": self.absent_video_predictions,
            "absent_videos": self.absent_videos,
            "remapped_video_ids": self.remapped_video_ids,
        }
        if per_class:
            out["per_class_ap"] = {n: [float(x) for x in a] for n, a in self.per_class_ap.items()}
        return out

    def table(self, per_class: bool = False) -> str:
        """Plain-text table: mAP per tIoU and average (fraction and %), optional per class."""
        lines = ["tIoU      mAP     mAP(%)"]
        for t, m in zip(self.tiou_thresholds, self.mAP):
            lines.append(f"{t:4.2f}  {m:9.6f}  {100 * m:6.2f}")
        lines.append(f"avg   {self.average_mAP:9.6f}  {100 * self.average_mAP:6.2f}")
        if per_class:
            width = max([len(n) for n in self.class_names] + [5])
            head = " ".join(f"{t:5.2f}" for t in self.tiou_thresholds)
            lines += ["", f"{'class':<{width}}  {head}    avg   (AP %)"]
            for i, name in enumerate(self.class_names):
                row = " ".join(f"{100 * a:5.1f}" for a in self.ap[:, i])
                lines.append(f"{name:<{width}}  {row}  {100 * self.ap[:, i].mean():5.1f}")
        return "\n".join(lines)


def evaluate_detections(predictions: Detections | Mapping[str, Any], ground_truth: AnnotationSet,
                        protocol: str = "anet", tiou_thresholds: Sequence[float] | None = None,
                        keep_matches: bool = False, log_notes: bool = True) -> DetectionMetrics:
    """Scores predictions against one ground-truth subset with the official protocol.

    Args:
      predictions: Detections (see tags_tf.evaluation.submission) or a submission-format dict.
      ground_truth: AnnotationSet already restricted to the evaluated subset
        (``load_annotations(...).subset("validation")``).
      protocol: "anet" (tIoU 0.5:0.05:0.95) or "thumos" (0.3:0.1:0.7).
      tiou_thresholds: overrides the protocol's thresholds.
      keep_matches: keep the per-prediction Matches (for PR curves).
      log_notes: log ``DetectionMetrics.notes()`` (unknown labels, absent videos) as
        warnings; the CLI prints them itself.
    Returns:
      DetectionMetrics.
    """
    if not isinstance(predictions, Detections):
        predictions = parse_results(predictions, source="<predictions>")
    thr = (tiou_thresholds_for(protocol) if tiou_thresholds is None
           else np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1))
    name = protocol if tiou_thresholds is None else "custom"

    subsets = {v.subset for v in ground_truth.videos.values()}
    if len(subsets) > 1:
        logger.warning("ground truth spans several subsets %s; pass "
                       "ground_truth.subset(name) to score one", sorted(subsets))
    # Ground truth: classes present in the subset, reference GT order.
    vids, cls_names, starts, ends = [], [], [], []
    video_index = {vid: i for i, vid in enumerate(ground_truth.videos)}
    for vid, ann in ground_truth.videos.items():
        for inst in ann.instances:
            vids.append(video_index[vid])
            cls_names.append(inst.label)
            starts.append(inst.start)
            ends.append(inst.end)
    class_names = tuple(sorted(set(cls_names)))
    class_index = {n: i for i, n in enumerate(class_names)}
    gt_class = np.array([class_index[n] for n in cls_names], dtype=np.int64)
    gt_segments = np.stack([np.array(starts, dtype=np.float64),
                            np.array(ends, dtype=np.float64)], axis=1).reshape(-1, 2)

    # Predictions: map labels and videos to ids.
    labels = predictions.labels.tolist()
    pred_class = np.array([class_index.get(label, -1) for label in labels], dtype=np.int64)
    known = pred_class >= 0
    unknown = sorted({label for label, k in zip(labels, known.tolist()) if not k})
    pred_vid_names = predictions.video_ids.tolist()
    pred_video = np.array([video_index.get(v, -1) for v in pred_vid_names], dtype=np.int64)
    remapped = 0
    if (pred_video < 0).any():
        for i in np.flatnonzero(pred_video < 0).tolist():
            v = pred_vid_names[i]
            alt = alternate_video_id(v)
            if alt in video_index:
                pred_video[i] = video_index[alt]
                remapped += 1
    absent = known & (pred_video < 0)
    absent_videos = len({pred_vid_names[i] for i in np.flatnonzero(absent).tolist()})

    matches = match_detections(
        np.array(vids, dtype=np.int64), gt_class, gt_segments,
        pred_video[known], pred_class[known], predictions.segments[known],
        predictions.scores[known], thr, len(class_names))
    # Report row indices into ``predictions`` rather than into its known-label rows.
    matches = dataclasses.replace(matches, order=np.flatnonzero(known)[matches.order])
    ap = average_precision(matches, len(class_names))
    m_ap = ap.mean(axis=1) if class_names else np.zeros(thr.size)
    result = DetectionMetrics(
        protocol=name, tiou_thresholds=thr, class_names=class_names, ap=ap, mAP=m_ap,
        average_mAP=float(m_ap.mean()) if thr.size else 0.0,
        num_videos=len(ground_truth.videos), num_ground_truth=int(gt_class.size),
        num_predictions=int(known.sum()), unknown_label_predictions=int((~known).sum()),
        unknown_labels=tuple(unknown), absent_video_predictions=int(absent.sum()),
        absent_videos=absent_videos, remapped_video_ids=remapped,
        matches=matches if keep_matches else None)
    for note in result.notes() if log_notes else ():
        logger.warning(note)
    return result
