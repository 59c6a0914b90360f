"""Evaluator speed: the whole ``python -m tags_tf.evaluate`` process on the eval oracle.

For the ActivityNet validation oracle (4,926 videos, 23,257 predictions) and the THUMOS14
test oracle (212 videos, 4,368 predictions) this runs the CLI as a subprocess a few
times and prints wall-clock and CPU (user + sys) seconds of the whole process, and the
speed-up over the official evaluator (EXPECTED.md: about 90 s and 13 s on these 2-core
machines). On a shared machine the wall clock includes waiting for a core; the CPU
column is the steadier number. It then splits one in-process run into its stages, and scores a synthetic
top-100-per-video ActivityNet file (about 490k predictions: what post-processing
writes) to show how the matching scales.

    python benchmarks/eval_bench.py [--repeats 3] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing.

from tags_tf.data.annotation_files import load_annotations  # noqa: E402
from tags_tf.evaluation.metrics import evaluate_detections  # noqa: E402
from tags_tf.evaluation.detections import Detections  # noqa: E402
from tags_tf.evaluation.results_reader import read_results

CASES = [
    # name, predictions, ground truth, subset, protocol, official seconds (EXPECTED.md)
    ("ActivityNet val", "eval_oracle/anet_val_seed1.json",
     "datasets/activitynet13/activity_net.v1-3.reconstructed.json", "validation", "anet", 90.0),
    ("THUMOS14 test", "eval_oracle/thumos_test_seed1.json",
     "datasets/thumos14/thumos14.json", "test", "thumos", 13.0),
]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_cli(argv: list[str], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of the CLI process over ``repeats`` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu0, t0 = _children_cpu(), time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "tags_tf.evaluate", *argv, "--quiet"],
                             cwd=REPO, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - cpu0)
        if run.returncode != 0:
            raise SystemExit(f"evaluator failed: {run.stderr.strip()}")
    return min(walls), min(cpus)


def stages(pred: Path, gt: Path, subset: str, protocol: str) -> dict[str, float]:
    out = {}
    t0 = time.process_time()
    ann = load_annotations(gt, subset=subset)
    out["load ground truth"] = time.process_time() - t0
    t0 = time.process_time()
    det = read_results(pred, allow_reversed=True)
    out["read + validate predictions"] = time.process_time() - t0
    t0 = time.process_time()
    evaluate_detections(det, ann, protocol, log_notes=False)
    out["match + AP"] = time.process_time() - t0
    return out


def synthetic_top100(gt_path: Path, per_video: int = 100, seed: int = 0):
    """Top-100-per-video ActivityNet predictions: noisy copies of the GT plus random ones."""
    ann = load_annotations(gt_path, subset="validation")
    rng = np.random.default_rng(seed)
    names = ann.class_names
    vids, labels, segs = [], [], []
    for vid, video in ann.videos.items():
        duration = video.duration or 100.0
        starts = rng.uniform(0, duration, per_video)
        lengths = rng.uniform(0.02, 0.6, per_video) * duration
        for i, inst in enumerate(video.instances[: per_video // 4]):
            noise = rng.normal(0, 0.1 * max(inst.length, 1.0), 2)
            starts[i], lengths[i] = inst.start + noise[0], max(inst.length + noise[1], 0.1)
        vids += [vid] * per_video
        own = [i.label for i in video.instances] or [names[0]]
        labels += [own[j % len(own)] if rng.random() < 0.7 else names[rng.integers(len(names))]
                   for j in range(per_video)]
        segs.append(np.stack([starts, starts + lengths], 1))
    det = Detections(np.array(vids, dtype=object), np.array(labels, dtype=object),
                     np.concatenate(segs), rng.random(len(vids)))
    return det, ann


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shared", default=os.environ.get("TAGS_SHARED_DIR", str(REPO.parent / "shared")))
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the THUMOS oracle's reversed-segment warning
    shared = Path(args.shared)
    if not (shared / "eval_oracle").is_dir():
        raise SystemExit(f"eval oracle not found under {shared} (pass --shared or TAGS_SHARED_DIR)")

    print(f"Full CLI process (python -m tags_tf.evaluate), best of {args.repeats}:")
    print(f"{'case':<16} {'wall s':>7} {'cpu s':>7} {'official s':>10} {'x (wall)':>9} {'x (cpu)':>8}")
    for name, pred, gt, subset, protocol, official in CASES:
        argv = ["--predictions", str(shared / pred), "--ground-truth", str(shared / gt),
                "--subset", subset, "--protocol", protocol, "--allow-reversed"]
        wall, cpu = time_cli(argv, args.repeats)
        print(f"{name:<16} {wall:7.2f} {cpu:7.2f} {official:10.0f} {official / wall:8.0f}x "
              f"{official / cpu:7.0f}x")

    print("\nIn-process stages (CPU seconds):")
    for name, pred, gt, subset, protocol, _ in CASES:
        parts = stages(shared / pred, shared / gt, subset, protocol)
        print(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))

    if not args.skip_synthetic:
        det, ann = synthetic_top100(shared / CASES[0][2])
        t0 = time.process_time()
        m = evaluate_detections(det, ann, "anet", log_notes=False)
        print(f"\nSynthetic top-100 ActivityNet val: {len(det)} predictions scored in "
              f"{time.process_time() - t0:.2f} CPU s (average mAP {m.average_mAP:.4f})")


if __name__ == "__main__":
    main()
