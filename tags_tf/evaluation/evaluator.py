"""The one evaluator: training-time validation, the final evaluation after training and
``python -m tags_tf.evaluate`` all score through :class:`Evaluator`.

An Evaluator holds what a score depends on besides the data: the class names (index =
the class ids of the arrays) and the protocol (``cfg.data.protocol`` in training,
``--protocol`` in the CLI; ``tiou_thresholds`` overrides its thresholds). The scoring
itself is :func:`tags_tf.evaluation.metrics.evaluate_detections`, equal to the official ActivityNet
evaluator.

* :meth:`Evaluator.evaluate` takes arrays, as :func:`tags_tf.evaluation.inference.detect_dataset`
  and :func:`tags_tf.baseline.detect_snippet_baseline` yield them. The ground truth of
  training and of the final evaluation is read from the same shard records as the
  features (its segments clipped to ``[0, duration]`` once, when ``beam.build_shards``
  wrote them); the predictions stay numpy columns
  (:meth:`tags_tf.evaluation.submission.Detections.from_arrays`) and become submission entries only
  when a file is written.
* :meth:`Evaluator.evaluate_sets` takes what the CLI reads: a results file's Detections
  and an annotation file's ground truth, scored as the official evaluator scores them.
* :meth:`Evaluator.write_plots`: PR curves, false-positive profile and timelines (PNG).

Pure numpy; matplotlib is imported only when plots are written.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from tags_tf.data.annotations import AnnotationSet
from tags_tf.evaluation.metrics import DetectionMetrics, evaluate_detections, tiou_thresholds_for
from tags_tf.evaluation.detections import Detections


class Evaluator:
    """Scores detections with one protocol and one class list.

    Args:
      class_names: K names; class id ``c`` of the arrays is ``class_names[c]``.
      protocol: "anet" (tIoU 0.5:0.05:0.95) or "thumos" (0.3:0.1:0.7).
      tiou_thresholds: custom thresholds instead of the protocol's (report protocol
        "custom").
    """

    def __init__(self, class_names: Sequence[str], protocol: str = "anet",
                 tiou_thresholds: Sequence[float] | None = None):
        if tiou_thresholds is None:
            tiou_thresholds_for(protocol)  # an unknown protocol fails here, not after an epoch
        self.class_names = tuple(class_names)
        self.protocol = protocol
        self.tiou_thresholds = None if tiou_thresholds is None else tuple(float(t) for t in tiou_thresholds)

    @classmethod
    def from_config(cls, cfg, class_names: Sequence[str]) -> "Evaluator":
        """The evaluator of a training run: ``cfg.data.protocol`` (a TagsConfig)."""
        return cls(class_names, cfg.data.protocol)

    def to_sets(self, detections: Mapping, ground_truth: Mapping) -> tuple[Detections, AnnotationSet]:
        """Arrays -> (Detections columns, AnnotationSet) in this evaluator's class names.

        Args:
          detections: ``{video: {"segments" (n, 2) s, "scores" (n,), "classes" (n,)}}``.
          ground_truth: ``{video: {"segments" (m, 2) s, "labels" (m,), "duration"}}``.
        """
        dets = Detections.from_arrays(detections, self.class_names)
        gt = AnnotationSet.from_arrays(
            {vid: (g["segments"], g["labels"], g["duration"]) for vid, g in ground_truth.items()},
            self.class_names)
        return dets, gt

    def evaluate(self, detections: Mapping, ground_truth: Mapping, keep_matches: bool = False) -> DetectionMetrics:
        """mAP of detection arrays against ground-truth arrays (layouts as in :meth:`to_sets`).

        ``keep_matches`` keeps the per-prediction matching (for PR curves)."""
        return self.evaluate_sets(*self.to_sets(detections, ground_truth), keep_matches=keep_matches)

    def evaluate_sets(self, detections: Detections, ground_truth: AnnotationSet, keep_matches: bool = False,
                      log_notes: bool = True) -> DetectionMetrics:
        """mAP of Detections (e.g. a results file) against one ground-truth subset.

        ``log_notes`` logs unknown labels and absent videos as warnings (the CLI prints
        them itself)."""
        return evaluate_detections(detections, ground_truth, self.protocol, self.tiou_thresholds,
                                   keep_matches=keep_matches, log_notes=log_notes)

    def write_plots(self, out_dir: str, detections: Mapping, ground_truth: Mapping,
                    report: DetectionMetrics | None = None) -> list[str]:
        """PR curves, false-positive profile and a few timelines (PNG) of arrays into
        ``out_dir``; ``report`` is scored again with its matching when it lacks one."""
        from tags_tf.evaluation.plots import write_report_plots

        dets, gt = self.to_sets(detections, ground_truth)
        if report is None or report.matches is None:
            report = self.evaluate_sets(dets, gt, keep_matches=True)
        return write_report_plots(out_dir, report, dets, gt)


def evaluate_arrays(detections: Mapping, ground_truth: Mapping, class_names: Sequence[str],
                    protocol: str = "anet", keep_matches: bool = False) -> DetectionMetrics:
    """``Evaluator(class_names, protocol).evaluate(detections, ground_truth, keep_matches)``
    in one call (one-off scoring, e.g. in benchmarks)."""
    return Evaluator(class_names, protocol).evaluate(detections, ground_truth, keep_matches)
