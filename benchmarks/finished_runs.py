"""Finished runs of ``benchmarks/ablation_bench.py`` (``WORKDIR/ROW/seedN/best.keras``) for
the tools that score them again (``class_oracle.py``, ``decode_sweep.py``): their
command-line arguments, the runs found, and the mean ± sd the tables print."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Iterator, Sequence

import numpy as np

log = logging.getLogger("finished_runs")

SUBSETS = {"val": "validation", "test": "test"}  # table key -> shard subset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="demo or the shard directory the runs trained on")
    p.add_argument("--workdir", required=True, help="ablation_bench's per-dataset folder: ROW/seedN/best.keras")
    p.add_argument("--rows", default="bilinear_detached,actionness")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])


def start(description: str, argv=None):
    """Parses the common arguments, sets up logging and resolves the dataset: ``(args,
    resolved, runs)`` with ``runs`` the :func:`finished_runs` of the requested rows and seeds."""
    p = argparse.ArgumentParser(description=description)
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tags_tf.training import dataset_resolver

    resolved = dataset_resolver.resolve(args.dataset)
    return args, resolved, list(finished_runs(args.workdir, args.rows.split(","), args.seeds))


def report(args, table: str | None) -> int:
    """Prints ``table`` (exit 0), or an error when no finished run was found (exit 2)."""
    if table is None:
        print(f"error: no finished runs under {args.workdir} for rows {args.rows}", file=sys.stderr)
        return 2
    print(table)
    return 0


def finished_runs(workdir: str, rows: Sequence[str], seeds: Sequence[int]) -> Iterator[tuple[str, int, str]]:
    """``(row, seed, run_dir)`` of every run with a ``best.keras``; a missing one is logged and skipped."""
    for row in rows:
        for seed in seeds:
            run_dir = os.path.join(workdir, row, f"seed{seed}")
            if not os.path.exists(os.path.join(run_dir, "best.keras")):
                log.warning("%s: no best.keras, skipped", run_dir)
                continue
            yield row, seed, run_dir


def mean_sd(values) -> str:
    """``"mean ± sd"`` in percent of the non-None fractions (sd 0 for one value, "-" for none)."""
    v = np.asarray([x for x in values if x is not None], float)
    if not len(v):
        return "-"
    return f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1) if len(v) > 1 else 0.0:.1f}"
