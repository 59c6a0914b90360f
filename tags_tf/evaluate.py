"""Command line: score a detection results file with the official ActivityNet protocol.

    python -m tags_tf.evaluate --predictions P.json --ground-truth GT.json \\
        --subset validation [--protocol anet|thumos] [--video-info CSV] \\
        [--per-class] [--json OUT.json] [--plots DIR]

Prints mAP per tIoU and the average (``--per-class`` adds per-class AP). Ground truth
may be in the official ActivityNet, ActionFormer (THUMOS), G-TAD or BSN/BMN layout
(``--video-info`` for the BSN csv). Bad input prints one line on stderr and exits 2.

It scores with :class:`tags_tf.evaluation.evaluator.Evaluator`, the evaluator of training-time
validation and of the final evaluation after training (there on arrays, here on the
files' contents); :func:`evaluate_detections` (``tags_tf.evaluation.metrics``) is re-exported.
Nothing here imports TensorFlow; matplotlib is imported only for ``--plots``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Sequence

from tags_tf import console
from tags_tf.config import PROTOCOLS, DataConfig
from tags_tf.data.annotation_files import load_annotations
from tags_tf.data.annotations import FORMATS, AnnotationError
from tags_tf.evaluation.evaluator import Evaluator
from tags_tf.evaluation.metrics import DetectionMetrics, evaluate_detections
from tags_tf.evaluation.detections import ResultsError
from tags_tf.evaluation.results_reader import read_results

__all__ = ["main", "Evaluator", "evaluate_detections", "DetectionMetrics", "build_parser"]

logger = logging.getLogger(__name__)
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tags-evaluate",
        description="Temporal action detection mAP, exactly as the official ActivityNet "
                    "evaluator (THUMOS14 protocol with --protocol thumos).")
    parser.add_argument("--predictions", required=True,
                        help="results JSON {'version', 'results': {video: [...]}, 'external_data'}")
    parser.add_argument("--ground-truth", required=True, help="ground-truth JSON")
    parser.add_argument("--subset", required=True,
                        help="ground-truth subset to score, case-insensitive (e.g. validation, test)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=DataConfig.protocol,
                        help="anet: tIoU 0.5:0.05:0.95; thumos: tIoU 0.3:0.1:0.7 "
                             f"(default {DataConfig.protocol}, data.protocol of training)")
    parser.add_argument("--tiou", type=float, nargs="+", metavar="T",
                        help="custom tIoU thresholds (override --protocol)")
    parser.add_argument("--video-info", help="BSN/BMN video_info_new.csv (subsets of a BSN file)")
    parser.add_argument("--gt-format", choices=FORMATS, default="auto",
                        help="ground-truth layout (default: detect)")
    parser.add_argument("--allow-reversed", action="store_true",
                        help="accept predictions with end < start and score them as false "
                             "positives, as the official evaluator does (default: error)")
    parser.add_argument("--per-class", action="store_true", help="also print per-class AP")
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the metrics as JSON")
    parser.add_argument("--plots", metavar="DIR",
                        help="write PR curves, the false-positive profile and timelines (PNG)")
    parser.add_argument("--plot-videos", nargs="+", metavar="VIDEO",
                        help="videos for the timeline plots (default: the first 3 with predictions)")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    console.add_argument(parser)
    return parser


def _header(args, gt, metrics: DetectionMetrics, seconds: float) -> str:
    name = {"anet": "ActivityNet", "thumos": "THUMOS14"}.get(metrics.protocol, metrics.protocol)
    return (f"{name} detection mAP | ground truth {args.ground_truth} [{args.subset}]: "
            f"{metrics.num_videos} videos, {metrics.num_ground_truth} instances, "
            f"{len(metrics.class_names)} classes | predictions {args.predictions}: "
            f"{metrics.num_predictions} scored | {seconds:.2f} s")


def _ground_truth_notes(gt) -> list[str]:
    """What the annotation policy left out of the ground truth (tags_tf.data.annotations)."""
    out = []
    problems = gt.problems()
    if problems:
        shown = "; ".join(f"{vid!r} ({reason})" for vid, _, reason, _ in problems[:5])
        more = "" if len(problems) <= 5 else f" and {len(problems) - 5} more"
        out.append(f"{len(problems)} ground-truth video(s) with an unusable entry were left out "
                   f"(their predictions count as false positives): {shown}{more}")
    if gt.num_bad_segments:
        first = next(v.bad_segments[0] for v in gt.videos.values() if v.bad_segments)
        out.append(f"{gt.num_bad_segments} malformed ground-truth segment(s) were left out "
                   f"(first: {first})")
    return out


def run(args: argparse.Namespace) -> DetectionMetrics:
    """Loads, scores, prints and writes what ``args`` asks for; raises on bad input."""
    start = time.perf_counter()
    if args.tiou and not all(0.0 < t <= 1.0 for t in args.tiou):
        raise ValueError(f"--tiou thresholds must be in (0, 1], got {args.tiou}")
    gt = load_annotations(args.ground_truth, video_info=args.video_info, fmt=args.gt_format,
                          subset=args.subset)
    gt_notes = _ground_truth_notes(gt)
    gt = gt.usable()  # the annotation policy: unusable entries are left out, and said so
    detections = read_results(args.predictions, allow_reversed=args.allow_reversed)
    evaluator = Evaluator(gt.class_names, args.protocol, tiou_thresholds=args.tiou)
    metrics = evaluator.evaluate_sets(detections, gt, keep_matches=bool(args.plots), log_notes=False)
    elapsed = time.perf_counter() - start
    # CLI output: the result table goes to stdout.
    print(_header(args, gt, metrics, elapsed))
    print(metrics.table(per_class=args.per_class))
    for note in gt_notes + metrics.notes():
        print(f"note: {note}")
    if args.json_out:
        out = metrics.to_dict(per_class=True)
        out.update(predictions=os.fspath(args.predictions), ground_truth=os.fspath(args.ground_truth),
                   subset=args.subset, notes=gt_notes + metrics.notes())
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
            with open(args.json_out, "w") as fobj:
                json.dump(out, fobj, indent=1)
        except OSError as err:
            raise OSError(f"{args.json_out}: cannot write metrics ({err.strerror or err})") from None
    if args.plots:
        from tags_tf.evaluation import plots  # matplotlib only when asked for

        written = plots.write_report_plots(args.plots, metrics, detections, gt,
                                           videos=args.plot_videos)
        for path in written:
            logger.info("wrote %s", path)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``tags-evaluate``). Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with usage on bad flags
    console.setup(args.verbose, level=logging.WARNING if args.quiet else logging.INFO, fmt="%(levelname)s: %(message)s")
    try:
        run(args)
    except (AnnotationError, ResultsError, ValueError, OSError) as err:
        message = " ".join(str(err).split())  # exactly one line
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
