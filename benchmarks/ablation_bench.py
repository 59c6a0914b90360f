"""The learning-quality table: TAGS heads vs. the actionness ablation vs. a per-snippet baseline.

Trains every row for every seed on the same shards, selects each run's checkpoint on
``validation`` (the trainer's ``best.keras``) and reports the held-out ``test`` split as
mean +- sd over seeds. Each trained row is also decoded with every candidate scoring
(``postprocess.mask_score``), so the decoding default can be chosen on validation.

    python benchmarks/ablation_bench.py --dataset demo                  # ~20 min on 2 cores
    python benchmarks/ablation_bench.py --dataset data/anet_geometry/shards --preset anet

Runs are kept under ``--workdir`` (one folder per row and seed) and reused when their
``summary.json`` exists, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.finished_runs import mean_sd as _mean_sd  # noqa: E402

log = logging.getLogger("ablation_bench")

# Row name -> (label, config overrides). "baseline" is not a TAGS model (tags_tf.baseline).
ROWS = {
    "paper_exact": ("TAGS as printed (paper head, Eq. 6 only, interior bIoU, fg rows, mean)", {
        "model.mask_head": "paper", "loss.mask_bce": 0.0, "loss.mask_background": 0.0,
        "loss.boundary": "interior", "postprocess.mask_score": "mean", "model.mask_trunk_gradient": 1.0}),
    "paper": ("TAGS, paper mask head (Eq. 4 as printed)", {"model.mask_head": "paper", "model.mask_trunk_gradient": 1.0}),
    "bilinear": ("TAGS, bilinear mask head, all the mask gradient into the encoder", {
        "model.mask_head": "bilinear", "model.mask_trunk_gradient": 1.0}),
    "bilinear_fg_rows": ("TAGS, bilinear, foreground rows only (loss.mask_background=0)", {
        "model.mask_head": "bilinear", "loss.mask_background": 0.0}),
    "bilinear_interior": ("TAGS, bilinear, interior bIoU (loss.boundary=interior)", {
        "model.mask_head": "bilinear", "loss.boundary": "interior"}),
    "bilinear_detached": ("TAGS, bilinear, mask branch off the encoder's gradient (model.mask_trunk_gradient=0)", {
        "model.mask_head": "bilinear", "model.mask_trunk_gradient": 0.0}),
    "bilinear_half": ("TAGS, bilinear, half the mask branch's gradient into the encoder", {
        "model.mask_head": "bilinear", "model.mask_trunk_gradient": 0.5}),
    "bilinear_narrow": ("TAGS, bilinear, mask head 128 wide (model.mask_hidden_dim=128)", {
        "model.mask_head": "bilinear", "model.mask_hidden_dim": 128}),
    "bilinear_no_pp": ("TAGS, bilinear, no prediction promotion (loss.pp_weight=0)", {
        "model.mask_head": "bilinear", "loss.pp_weight": 0.0}),
    "actionness": ("w/o mask branch (actionness decoding)", {
        "loss.mask_weight": 0.0, "postprocess.mask_source": "actionness", "model.mask_trunk_gradient": 1.0}),
    # Long videos (thumos preset): the paper's whole-video input instead of windows.
    "whole_video": ("TAGS, whole videos resampled to the model's T (data.window_snippets=0)", {
        "data.window_snippets": 0}),
    "paper_thumos": ("TAGS, the paper's THUMOS reading: whole videos at T = 1024, the printed recipe", {
        "data.window_snippets": 0, "model.base_snippets": 512, "train.recipe": "preset"}),
    "baseline": ("per-snippet logistic regression + smoothing", None),
}
BASELINE_SMOOTHING = (0.0025, 0.01, 0.04, 0.1, 0.2, 0.3)  # moving-average window, fraction of the video (long videos: the small ones)
# Decoding name -> (postprocess.mask_source or None for the row's own, postprocess.mask_score).
DECODINGS = {
    "mean": (None, "mean"),
    "contrast": (None, "contrast"),
    "gated": (None, "gated"),
    "consensus": (None, "consensus"),
    "actionness+contrast": ("actionness", "contrast"),  # the same checkpoint's classifier curve
    "both+contrast": ("both", "contrast"),  # mask and actionness candidates pooled
}


def _datasets(cfg, resolved, subsets):
    from tags_tf.data.input import make_dataset, subset_pattern

    return {name: make_dataset(subset_pattern(resolved.shard_dir, sub), cfg, training=False,
                               batch_size=cfg.train.batch_size, compression=cfg.data.compression or None,
                               with_metadata=True)
            for name, sub in subsets.items()}


def _score(model, decoder, datasets, resolved, protocol) -> dict:
    from tags_tf.evaluation.evaluator import evaluate_arrays
    from tags_tf.evaluation.inference import detect_dataset

    out = {}
    for name, ds in datasets.items():
        det, gt = detect_dataset(model, ds, decoder=decoder)
        rep = evaluate_arrays(det, gt, resolved.class_names, protocol)
        out[name] = {"avg": rep.average_map, "map50": float(rep.map_per_tiou[0])}
    return out


def run_tags(row: str, seed: int, args, resolved, subsets) -> dict:
    """Trains one row and seed (or reuses its folder); returns {decoding: {subset: scores}}."""
    import keras

    from tags_tf import config as config_lib
    from tags_tf.training import dataset_resolver as datasets_lib
    from tags_tf.training import trainer
    from tags_tf.model.tags_model import TagsModel  # noqa: F401  (registers the class for load_model)
    from tags_tf.decode.decoder import DetectionDecoder

    run_dir = os.path.join(args.workdir, row, f"seed{seed}")
    result_path = os.path.join(run_dir, "ablation.json")
    result = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        if all(d in result for d in args.decodings):
            return result
    if args.report_only:
        return result or None
    if args.decode_only and not os.path.exists(os.path.join(run_dir, "summary.json")):
        return result or None  # never trains: only finished runs get their missing decodings
    overrides = {**ROWS[row][1], "train.seed": seed, **config_lib.parse_set_args(args.set)}
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    cfg = datasets_lib.config_for(resolved, overrides)
    import tensorflow as tf

    start = time.time()
    if not result:  # (a cached result that misses a decoding only needs decoding)
        trainer.train(cfg, resolved, run_dir, tf.distribute.get_strategy(), verbose=0)
    seconds = time.time() - start
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path):  # a finished run reused: its own training time
        with open(summary_path) as f:
            seconds = json.load(f).get("train_seconds") or seconds
    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"))
    ds = _datasets(cfg, resolved, subsets)
    protocol = cfg.data.protocol
    result["seconds"] = seconds
    for decoding in args.decodings:
        if decoding in result:
            continue
        source, score = DECODINGS[decoding]
        dcfg = dataclasses.replace(cfg, postprocess=dataclasses.replace(
            cfg.postprocess, mask_score=score, mask_source=source or cfg.postprocess.mask_source))
        decoder = DetectionDecoder.from_tags_config(dcfg, name=f"decoder_{decoding.replace('+', '_')}")
        result[decoding] = _score(model, decoder, ds, resolved, protocol)
    result["default"] = ("contrast" if cfg.postprocess.mask_source == "actionness" and cfg.postprocess.mask_score == "contrast"
                         else cfg.postprocess.mask_score if cfg.postprocess.mask_source == "mask"
                         else f"{cfg.postprocess.mask_source}+{cfg.postprocess.mask_score}")
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    log.info("%s seed %d: %.0f s, test average mAP %s", row, seed, seconds,
             {d: round(result[d]["test"]["avg"], 4) for d in args.decodings})
    return result


def run_baseline(args, resolved, subsets) -> dict:
    from tags_tf.training import dataset_resolver as datasets
    from tags_tf.baseline import detect_snippet_baseline, fit_snippet_baseline, read_shard_videos
    from tags_tf.evaluation.evaluator import evaluate_arrays

    train_videos = read_shard_videos(resolved.shard_dir, subsets["train"])
    model = fit_snippet_baseline(train_videos, len(resolved.class_names))
    protocol = datasets.config_for(resolved, {}).data.protocol  # the TAGS rows' protocol

    def score(name, **kw):
        videos = read_shard_videos(resolved.shard_dir, subsets[name])
        det = detect_snippet_baseline(model, videos, **kw)
        gt = {v["video_id"]: {"segments": v["segments"], "labels": v["labels"], "duration": v["duration"]}
              for v in videos}
        rep = evaluate_arrays(det, gt, resolved.class_names, protocol)
        return {"avg": rep.average_map, "map50": float(rep.map_per_tiou[0])}

    # Its two settings (run score, smoothing window) are chosen on validation, like a
    # TAGS checkpoint; the test split is scored once with the choice.
    grid = [dict(score=s, smooth_fraction=f) for s in ("mean", "contrast") for f in BASELINE_SMOOTHING]
    val = [score("val", **kw) for kw in grid]
    best = max(range(len(grid)), key=lambda i: val[i]["avg"])
    log.info("baseline on validation: %s", {f"{g['score']}/{g['smooth_fraction']}": round(v["avg"], 4)
                                            for g, v in zip(grid, val)})
    return {"val": val[best], "test": score("test", **grid[best]), "setting": grid[best]}


def format_table(results: dict, seeds, first_tiou: float = 0.5) -> str:
    """The table; ``first_tiou``: the protocol's first threshold (the "map50" column)."""
    lines = [
        f"| row | decoding | validation avg mAP | test avg mAP | test mAP@{first_tiou} | test per seed |",
        "|---|---|---|---|---|---|",
    ]
    for row, per_seed in results.items():
        label = ROWS[row][0]
        if row == "baseline":
            r = per_seed
            setting = r.get("setting", {})
            lines.append(f"| {label} | {setting.get('score', 'mean')}, window {setting.get('smooth_fraction', 0.04)} "
                         f"(chosen on validation) | {100 * r['val']['avg']:.1f} | "
                         f"{100 * r['test']['avg']:.1f} | {100 * r['test']['map50']:.1f} | deterministic |")
            continue
        default = per_seed[0]["default"]
        for decoding in DECODINGS:
            runs = [r for r in per_seed if decoding in r]
            if not runs:
                continue
            vals = [r[decoding]["val"]["avg"] for r in runs]
            tests = [r[decoding]["test"]["avg"] for r in runs]
            map50 = [r[decoding]["test"]["map50"] for r in runs]
            mark = " (config)" if decoding == default else ""
            lines.append(f"| {label} | {decoding}{mark} | {_mean_sd(vals)} | {_mean_sd(tests)} | {_mean_sd(map50)} | "
                         + " / ".join(f"{100 * t:.1f}" for t in tests) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="demo", help="demo or a shard directory with training/validation/test")
    p.add_argument("--preset", default=None, help="preset for a shard directory (default: the trainer's choice)")
    p.add_argument("--rows", default="paper,bilinear,actionness,baseline", help=f"comma list of {sorted(ROWS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--decodings", default=",".join(DECODINGS),
                   help=f"comma list of {list(DECODINGS)} to decode every checkpoint with (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every TAGS row")
    p.add_argument("--workdir", default="runs/ablation")
    p.add_argument("--json", default=None, help="write all numbers here")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: report the runs already in --workdir (rows with the seeds they have)")
    p.add_argument("--decode-only", action="store_true",
                   help="train nothing: add the missing decodings to the finished runs in --workdir, then report")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tags_tf.training import dataset_resolver as datasets_lib
    from tags_tf.train import build_shards_locally

    resolved = datasets_lib.resolve(args.dataset, shard_writer=build_shards_locally)  # demo: shards on first use
    if args.preset:
        resolved = dataclasses.replace(resolved, preset=args.preset)
    subsets_present = {s.lower(): s for s in resolved.manifest.subset_names()}
    missing = [s for s in ("training", "validation", "test") if s not in subsets_present]
    if missing:
        print(f"error: {resolved.shard_dir} has no {missing} subset(s); the benchmark selects on "
              "validation and reports on test", file=sys.stderr)
        return 2
    subsets = {"train": subsets_present["training"], "val": subsets_present["validation"],
               "test": subsets_present["test"]}
    args.workdir = os.path.join(args.workdir, os.path.basename(os.path.normpath(args.dataset)))
    rows = args.rows.split(",")
    args.decodings = args.decodings.split(",")
    if any(d not in DECODINGS for d in args.decodings):
        print(f"error: unknown decoding(s) in {args.decodings}; choose from {list(DECODINGS)}", file=sys.stderr)
        return 2
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        print(f"error: unknown row(s) {unknown}; choose from {sorted(ROWS)}", file=sys.stderr)
        return 2
    results = {row: [] for row in rows}
    if "baseline" in rows:
        results["baseline"] = run_baseline(args, resolved, subsets)
    for seed in args.seeds:  # seed-major: every row has its first seeds early
        for row in rows:
            if row != "baseline":
                result = run_tags(row, seed, args, resolved, subsets)
                if result is not None:
                    results[row].append(result)
    results = {row: r for row, r in results.items() if r}
    table = format_table(results, args.seeds, 0.3 if resolved.preset == "thumos" else 0.5)
    print(f"{args.dataset} ({resolved.preset} model size), checkpoints selected on validation, "
          f"mean ± sd over seeds {args.seeds}, average mAP over tIoU "
          + ("0.5:0.05:0.95" if resolved.preset != "thumos" else "0.3:0.1:0.7"))
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
