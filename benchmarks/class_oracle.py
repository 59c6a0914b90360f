"""Is a model limited by its classes or by its segments? Average mAP with a video-class oracle.

For finished runs of ``benchmarks/ablation_bench.py`` (one ``best.keras`` per row and
seed), decodes validation and test with the run's own decoder, from its masks and from
its classifier's actionness curve, and scores each twice:

- as is (the number ``ablation_bench`` reports);
- with a *video-class oracle*: every detection whose class is not among the video's
  ground-truth classes is dropped. What remains is scored by the same evaluator. The
  gap between the two is what wrong classes cost; the oracle number compares how well
  two decodings localise the instances of the right class.

    python benchmarks/class_oracle.py --dataset data/anet_geometry/shards \\
        --workdir runs/ablation/shards --rows bilinear_detached,actionness

Prints, per row and decoding, mean ± sd over the seeds found: average mAP as is and
with the oracle (validation and test), and the oracle's test mAP at each tIoU.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.finished_runs import SUBSETS, mean_sd, report, start  # noqa: E402

log = logging.getLogger("class_oracle")


def keep_video_classes(detections: dict, ground_truth: dict) -> dict:
    """``detections`` without the rows whose class is not among the video's ground-truth labels."""
    out = {}
    for vid, det in detections.items():
        labels = ground_truth[vid]["labels"] if vid in ground_truth else np.zeros(0, np.int64)
        keep = np.isin(det["classes"], labels)
        out[vid] = {key: value[keep] for key, value in det.items()}
    return out


def score_run(run_dir: str, resolved, sources) -> dict:
    """{source: {subset: {"avg", "oracle_avg", "oracle_per_tiou"}}} of one finished run."""
    import keras

    from tags_tf.data.input import make_dataset, subset_pattern
    from tags_tf.evaluation.evaluator import Evaluator
    from tags_tf.evaluation.inference import detect_dataset
    from tags_tf.model.tags_model import TagsModel  # noqa: F401  (registers the class for load_model)
    from tags_tf.decode.decoder import DetectionDecoder

    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"))
    cfg = model.tags_config
    evaluator = Evaluator.from_config(cfg, resolved.class_names)
    out = {}
    for source in sources:
        dcfg = dataclasses.replace(cfg, postprocess=dataclasses.replace(cfg.postprocess, mask_source=source))
        decoder = DetectionDecoder.from_tags_config(dcfg, name=f"decoder_{source}")
        out[source] = {}
        for name, subset in SUBSETS.items():
            ds = make_dataset(subset_pattern(resolved.shard_dir, subset), cfg, training=False,
                              batch_size=cfg.train.batch_size, with_metadata=True)
            det, gt = detect_dataset(model, ds, decoder=decoder)
            oracle = evaluator.evaluate(keep_video_classes(det, gt), gt)
            out[source][name] = {"avg": evaluator.evaluate(det, gt).average_map, "oracle_avg": oracle.average_map,
                                 "oracle_per_tiou": [float(x) for x in oracle.map_per_tiou]}
    return out



def format_table(results: dict) -> str:
    """results: {(row, source): [run scores of score_run(...)[source], one per seed]}."""
    lines = ["| row | decoding | seeds | val | val, class oracle | test | test, class oracle | "
             "test oracle mAP at tIoU 0.5 ... 0.95 |", "|---|---|---|---|---|---|---|---|"]
    for (row, source), runs in results.items():
        per_tiou = 100 * np.mean([r["test"]["oracle_per_tiou"] for r in runs], axis=0)
        lines.append(f"| {row} | {source} | {len(runs)} | {mean_sd([r['val']['avg'] for r in runs])} | "
                     f"{mean_sd([r['val']['oracle_avg'] for r in runs])} | {mean_sd([r['test']['avg'] for r in runs])} | "
                     f"{mean_sd([r['test']['oracle_avg'] for r in runs])} | " + " ".join(f"{x:.0f}" for x in per_tiou) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args, resolved, runs = start(__doc__.split("\n\n")[0], argv)
    results = {}
    for row, seed, run_dir in runs:
        # A row trained without the mask loss has no masks worth decoding.
        sources = ("actionness",) if row == "actionness" else ("mask", "actionness")
        for source, scores in score_run(run_dir, resolved, sources).items():
            results.setdefault((row, source), []).append(scores)
            log.info("%s seed %d %s: test %.4f, with the class oracle %.4f", row, seed, source,
                     scores["test"]["avg"], scores["test"]["oracle_avg"])
    return report(args, format_table(results) if results else None)


if __name__ == "__main__":
    sys.exit(main())
