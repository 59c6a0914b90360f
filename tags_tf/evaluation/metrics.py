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

The matching and AP: :mod:`tags_tf.evaluation.matching`. Pure numpy; no TensorFlow.

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
from tags_tf.evaluation.matching import Matches, average_precision, match_detections

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
