"""``python -m tags_tf.train --dataset anet|thumos|demo|SHARD_DIR``: the paper's recipe.

Thin CLI over :func:`tags_tf.training.trainer.train`. Exit codes: 0 done, 2 bad arguments or
missing data (one readable message, no traceback).

This is where the packages meet: the library (``tags_tf``) neither builds shards nor
exports SavedModels itself; this CLI hands it ``beam.build_shards`` (to make the demo
shards on first use) and ``serving.export`` (the export at the end of training).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from tags_tf import console, kernels
from tags_tf.config import ConfigError, parse_set_args
from tags_tf.data.tfrecord import ShardChecksumError
from tags_tf.training.dataset_resolver import MissingDataError

log = logging.getLogger("tags_tf.train")  # not "__main__" under python -m


def build_shards_locally(ann_path: str, feat_dir: str, shard_dir: str, num_shards: int, feature_dim: int,
                         class_names: Sequence[str]) -> dict:
    """``beam.build_shards`` on the local runner over written files; returns the manifest.

    A :data:`tags_tf.data.demo.ShardWriter`.
    """
    from beam.build_shards import run_build_shards  # Beam is heavy; only when building

    return run_build_shards(
        annotations=ann_path,
        features=feat_dir,
        output=shard_dir,
        num_shards=num_shards,
        pipeline_args=["--runner=DirectRunner"],
        feature_dim=feature_dim,
        class_map=list(class_names),
        overwrite=True,
    )


def export_servable(model, cfg, export_dir: str, class_names: Sequence[str]) -> None:
    """``serving.export`` of the trained model (replacing ``export_dir``); a :data:`tags_tf.training.trainer.Exporter`."""
    from serving.export import export_saved_model

    export_saved_model(model, cfg, export_dir, class_names=list(class_names), overwrite=True)


def train_from_args(args, overrides: dict) -> dict:
    # The strategy first: MultiWorkerMirroredStrategy must exist before any other TF op.
    from tags_tf.training.distribute import build_strategy

    strategy = build_strategy(args.strategy)
    from tags_tf.training import dataset_resolver
    from tags_tf.training import trainer

    resolved = dataset_resolver.resolve(args.dataset, args.data_dir, getattr(args, "preset", None),
                                        shard_writer=build_shards_locally)
    if resolved.reason:
        log.info("%s", resolved.reason)  # one line: what was chosen, why, how to override
    cfg = dataset_resolver.config_for(resolved, overrides)
    workdir = args.workdir or os.path.join("runs", os.path.basename(os.path.normpath(args.dataset)))
    verbose = args.keras_verbose if args.keras_verbose is not None else (1 if sys.stdout.isatty() else 2)
    return trainer.train(cfg, resolved, workdir, strategy, resume=args.resume,
                         exporter=None if args.no_export else export_servable, verbose=verbose)


def dry_run_from_args(args, overrides: dict) -> str:
    """The plan of ``train_from_args`` (dataset, config, steps, timed estimate) as text; trains nothing."""
    from tags_tf.training import dataset_resolver
    from tags_tf.training.dry_run import plan_run

    resolved = dataset_resolver.resolve(args.dataset, args.data_dir, getattr(args, "preset", None),
                                        shard_writer=build_shards_locally)
    cfg = dataset_resolver.config_for(resolved, overrides)
    log.info("resolved config (%s preset, shards %s):\n%s", resolved.preset, resolved.shard_dir, cfg.to_json())
    return plan_run(cfg, resolved).describe()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tags_tf.train", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="anet, thumos, demo, or a beam.build_shards output directory")
    p.add_argument("--preset", default=None, choices=["anet", "thumos", "demo"],
                   help="model size and recipe for a shard directory (default: chosen from its temporal statistics)")
    p.add_argument("--data-dir", default=None, help="where the preset's shards are (default data/<dataset>)")
    p.add_argument("--workdir", default=None, help="run directory (default runs/<dataset>)")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch size (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--strategy", default="auto", choices=["auto", "default", "mirrored", "multi_worker"])
    p.add_argument("--resume", action="store_true", help="continue a finished run up to --epochs")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel export at the end")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve dataset and config, time a few steps, print the plan and exit without training")
    p.add_argument("--keras-verbose", type=int, default=None,
                   help="Keras progress: 0 silent, 1 a bar, 2 a line per epoch (default: 1 on a terminal, else 2)")
    kernels.add_argument(p)
    console.add_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    console.setup(args.verbose)  # before TensorFlow and Beam are imported
    workload = "small" if args.dataset == "demo" else "batch"  # the demo model: Eigen (tags_tf.kernels)
    log.info("%s", kernels.select(args.kernels, workload))  # before anything imports TensorFlow
    try:
        overrides = parse_set_args(args.set)
        if args.epochs is not None:
            overrides["train.epochs"] = args.epochs
        if args.batch_size is not None:
            overrides["train.batch_size"] = args.batch_size
        if args.dry_run:
            print(dry_run_from_args(args, overrides))
            return 0
        result = train_from_args(args, overrides)
    except (ConfigError, MissingDataError, FileExistsError, ShardChecksumError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "table" in result:
        print(result["table"])  # the result: the validation mAP table on stdout
    return 0


if __name__ == "__main__":
    sys.exit(main())
