"""``python -m tags_tf.train --dataset anet|thumos|demo|SHARD_DIR``: the paper's recipe.

Thin CLI over :func:`tags_tf.trainer.train`. Exit codes: 0 done, 2 bad arguments or
missing data (one readable message, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tags_tf.config import ConfigError, parse_set_args
from tags_tf.datasets import MissingDataError


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
    p.add_argument("--verbose", type=int, default=None, help="Keras verbosity (default: 1 on a terminal, else 2)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        overrides = parse_set_args(args.set)
        if args.epochs is not None:
            overrides["train.epochs"] = args.epochs
        if args.batch_size is not None:
            overrides["train.batch_size"] = args.batch_size
        from tags_tf import trainer

        if args.dry_run:
            print(trainer.dry_run_from_args(args, overrides))
            return 0
        result = trainer.train_from_args(args, overrides)
    except (ConfigError, MissingDataError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "table" in result:
        print(result["table"])  # the result: the validation mAP table on stdout
    return 0


if __name__ == "__main__":
    sys.exit(main())
