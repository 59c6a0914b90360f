"""Detections and ground truth as arrays (what :mod:`tags_tf.inference` yields) -> the
shared numpy evaluator and plots. Training-time validation and the final report use
this; ``python -m tags_tf.evaluate`` uses the same evaluator on files."""

from __future__ import annotations

from typing import Mapping, Sequence

from tags_tf.data.annotations import AnnotationSet
from tags_tf.metrics import DetectionMetrics, evaluate_detections
from tags_tf.plots import write_report_plots
from tags_tf.submission import Detections


def _to_objects(detections: Mapping, ground_truth: Mapping, class_names: Sequence[str]):
    dets = Detections.from_arrays(detections, class_names)
    gt = AnnotationSet.from_arrays(
        {vid: (g["segments"], g["labels"], g["duration"]) for vid, g in ground_truth.items()}, class_names
    )
    return dets, gt


def evaluate_arrays(detections: Mapping, ground_truth: Mapping, class_names: Sequence[str],
                    protocol: str = "anet", keep_matches: bool = False) -> DetectionMetrics:
    """mAP of ``{video: {"segments", "scores", "classes"}}`` against ``{video: {"segments", "labels", "duration"}}``."""
    dets, gt = _to_objects(detections, ground_truth, class_names)
    return evaluate_detections(dets, gt, protocol=protocol, keep_matches=keep_matches)


def format_report(report: DetectionMetrics) -> str:
    return report.table(per_class=False)


def write_plots(out_dir: str, detections: Mapping, ground_truth: Mapping, class_names: Sequence[str],
                report: DetectionMetrics | None = None, protocol: str = "anet") -> list[str]:
    """PR curves, false-positive profile and a few timelines (PNG) into ``out_dir``."""
    dets, gt = _to_objects(detections, ground_truth, class_names)
    if report is None or report.matches is None:
        report = evaluate_detections(dets, gt, protocol=report.protocol if report else protocol, keep_matches=True)
    return write_report_plots(out_dir, report, dets, gt)
