"""Is the decoder at its optimum? Decode finished runs with one setting changed at a time.

For finished runs of ``benchmarks/ablation_bench.py`` (one ``best.keras`` per row and
seed), decodes validation and test with each run's own config and with one
``postprocess`` setting changed at a time (the variants below), and prints average mAP,
mean ± sd over the seeds found. Validation chooses; test only reports.

    python benchmarks/decode_sweep.py --dataset demo --workdir runs/ablation/demo \\
        --rows bilinear_detached,actionness --seeds 0 1 2 3 4 5
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.finished_runs import SUBSETS, mean_sd, report, start  # noqa: E402

log = logging.getLogger("decode_sweep")
# Variant name -> postprocess overrides ("config": the run's own decoder).
VARIANTS = {
    "config": {},
    "top_snippets x0.5": {"top_snippets": 0.5},
    "top_snippets x2": {"top_snippets": 2.0},
    "contrast_delta 0.15": {"contrast_delta": 0.15},
    "contrast_delta 0.4": {"contrast_delta": 0.4},
    "soft_nms_sigma 0.3": {"soft_nms_sigma": 0.3},
    "soft_nms_sigma 0.9": {"soft_nms_sigma": 0.9},
}


def variant_config(cfg, changes: dict):
    """``cfg`` with ``changes`` applied to its postprocess section; ``top_snippets`` is a
    factor of the run's own value (presets differ: 16 demo, 32 anet)."""
    changes = dict(changes)
    if "top_snippets" in changes:
        changes["top_snippets"] = max(1, int(round(cfg.postprocess.top_snippets * changes["top_snippets"])))
    return dataclasses.replace(cfg, postprocess=dataclasses.replace(cfg.postprocess, **changes))


def score_run(run_dir: str, resolved) -> dict:
    """{variant: {"val": avg mAP, "test": avg mAP}} of one finished run."""
    import keras

    from tags_tf.data.input import make_dataset, subset_pattern
    from tags_tf.evaluation.evaluator import Evaluator
    from tags_tf.evaluation.inference import detect_dataset
    from tags_tf.model.tags_model import TagsModel  # noqa: F401  (registers the class for load_model)
    from tags_tf.decode.decoder import DetectionDecoder

    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"))
    cfg = model.tags_config
    evaluator = Evaluator.from_config(cfg, resolved.class_names)
    datasets = {name: make_dataset(subset_pattern(resolved.shard_dir, subset), cfg, training=False,
                                   batch_size=cfg.train.batch_size, with_metadata=True)
                for name, subset in SUBSETS.items()}
    out = {}
    for i, (name, changes) in enumerate(VARIANTS.items()):
        decoder = DetectionDecoder.from_tags_config(variant_config(cfg, changes), name=f"decoder_{i}")
        out[name] = {}
        for subset, ds in datasets.items():
            det, gt = detect_dataset(model, ds, decoder=decoder)
            out[name][subset] = evaluator.evaluate(det, gt).average_map
    return out



def format_table(results: dict) -> str:
    """results: {row: [score_run(...) of each seed]}."""
    lines = ["| row | decoding | seeds | validation avg mAP | test avg mAP |", "|---|---|---|---|---|"]
    for row, runs in results.items():
        for name in VARIANTS:
            lines.append(f"| {row} | {name} | {len(runs)} | {mean_sd([r[name]['val'] for r in runs])} | "
                         f"{mean_sd([r[name]['test'] for r in runs])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args, resolved, runs = start(__doc__.split("\n\n")[0], argv)
    results = {}
    for row, seed, run_dir in runs:
        results.setdefault(row, []).append(score_run(run_dir, resolved))
        log.info("%s seed %d decoded %d ways", row, seed, len(VARIANTS))
    return report(args, format_table(results) if results else None)


if __name__ == "__main__":
    sys.exit(main())
