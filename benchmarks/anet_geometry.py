"""An ActivityNet-geometry synthetic dataset: real ActivityNet v1.3 durations and segments,
synthetic snippet features (tags_tf.data.demo's generator).

    python benchmarks/anet_geometry.py --output data/anet_geometry
        [--annotations ../shared/datasets/activitynet13/bsn/anet_anno_action.json]
        [--video-info ../shared/datasets/activitynet13/bsn/video_info_new.csv]
        [--num-videos 800] [--num-classes 20] [--feature-dim 128] [--seed 0] [--force]

(``python -m benchmarks.anet_geometry ...`` from the repo root works too.)

What it does, deterministically from ``--seed``:
- picks ``--num-classes`` of ActivityNet's 200 classes at random, takes the "training" and
  "validation" videos (BSN ``video_info_new.csv`` subsets) whose annotations all belong to
  them (about 1,400 for 20 classes), and keeps ``--num-videos`` of them at random;
- keeps each video's real duration (``duration_second``) and every real segment, clipped
  to [0, duration]; segments with end <= start after clipping are dropped, and so is a
  video left without any;
- splits the chosen videos into training / validation / test = 70 / 15 / 15 % at random;
- renders features with ``tags_tf.data.demo.render_features`` (DemoSpec's noise and
  amplitude defaults, D = ``--feature-dim``), ``clip(round(duration * rate), 40, 400)``
  native snippets per video with ``rate ~ U(0.5, 1.0)`` per video, so resampling to
  T = 200 both up- and downsamples.

Writes, under ``--output``::

    annotations.json    official ActivityNet layout (version, taxonomy, database), ids without "v_"
    features/<id>.npy   (T_native, D) float32
    shards/             beam.build_shards output (4 shards a subset, TFRecords + manifest.json)
    spec.json           the arguments (reuse check: a matching spec.json + manifest is reused)

The annotation files themselves are only read, never copied.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing.

from tags_tf.data.demo import (  # noqa: E402
    DemoSpec,
    class_directions,
    render_features,
    taxonomy,
    write_dataset_files,
)
from tags_tf.train import build_shards_locally  # noqa: E402  (beam.build_shards, local runner)

logger = logging.getLogger("anet_geometry")

GENERATOR_VERSION = 1
SPEC_NAME = "spec.json"
DEFAULT_ANNOTATIONS = REPO.parent / "shared" / "datasets" / "activitynet13" / "bsn" / "anet_anno_action.json"
DEFAULT_VIDEO_INFO = REPO.parent / "shared" / "datasets" / "activitynet13" / "bsn" / "video_info_new.csv"
SOURCE_SUBSETS = ("training", "validation")
SPLIT = (("training", 0.70), ("validation", 0.15), ("test", 0.15))
SNIPPET_RATE = (0.5, 1.0)  # native snippets per second of video
SNIPPET_RANGE = (40, 400)
NUM_SHARDS = 4


@dataclass
class Selection:
    """The chosen classes (sorted; ids = positions) and videos.

    ``videos``: {id (no "v_"): {"subset", "duration", "annotations": [{"segment": [s, e], "label"}]}},
    in sorted id order; ``num_candidates``: eligible videos before the ``num_videos`` cap.
    """

    classes: list[str]
    videos: dict[str, dict[str, Any]]
    num_candidates: int


def _read_subsets(video_info: str) -> dict[str, str]:
    with open(video_info, newline="") as f:
        return {row["video"]: row["subset"] for row in csv.DictReader(f)}


def _clipped_annotations(entry: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """(duration, segments clipped to [0, duration] with end > start)."""
    duration = float(entry["duration_second"])
    out = []
    for a in entry.get("annotations", []):
        s, e = (float(x) for x in a["segment"])
        s, e = max(0.0, s), min(duration, e)
        if e > s:
            out.append({"segment": [s, e], "label": a["label"]})
    return duration, out


def select_videos(
    annotations: str, video_info: str, num_videos: int = 800, num_classes: int = 20, seed: int = 0
) -> Selection:
    """Chooses the classes and videos (no feature writing; see the module docstring)."""
    with open(annotations) as f:
        data = json.load(f)
    subsets = _read_subsets(video_info)
    keys = sorted(k for k in data if subsets.get(k) in SOURCE_SUBSETS)
    all_classes = sorted({a["label"] for k in keys for a in data[k].get("annotations", [])})
    if not 1 <= num_classes <= len(all_classes):
        raise ValueError(f"--num-classes must be in 1..{len(all_classes)}, got {num_classes}")
    rng = np.random.default_rng(seed)
    classes = sorted(str(c) for c in rng.choice(all_classes, size=num_classes, replace=False))
    wanted = set(classes)

    candidates = []
    for k in keys:
        labels = {a["label"] for a in data[k].get("annotations", [])}
        if not labels or not labels <= wanted:
            continue
        duration, anns = _clipped_annotations(data[k])
        if anns and duration > 0:
            candidates.append((k, duration, anns))
    chosen = [candidates[i] for i in sorted(rng.permutation(len(candidates))[:num_videos])]

    n = len(chosen)
    counts = [int(round(n * frac)) for _, frac in SPLIT[1:]]
    counts = [n - sum(counts)] + counts
    labels = [name for (name, _), c in zip(SPLIT, counts) for _ in range(c)]
    labels = [labels[i] for i in rng.permutation(n)]
    videos = {}
    for (k, duration, anns), subset in zip(chosen, labels):
        vid = k[2:] if k.startswith("v_") else k
        videos[vid] = {"subset": subset, "duration": duration, "url": "", "annotations": anns}
    return Selection(classes=classes, videos=videos, num_candidates=len(candidates))


def summarize(selection: Selection) -> dict[str, Any]:
    """Videos per subset, instances, classes, median instance length / duration, share of
    single-instance videos."""
    per_subset: dict[str, int] = {}
    counts, rel = [], []
    for v in selection.videos.values():
        per_subset[v["subset"]] = per_subset.get(v["subset"], 0) + 1
        counts.append(len(v["annotations"]))
        rel.extend((a["segment"][1] - a["segment"][0]) / v["duration"] for a in v["annotations"])
    counts_arr = np.asarray(counts)
    return {
        "videos": {name: per_subset.get(name, 0) for name, _ in SPLIT},
        "candidates": selection.num_candidates,
        "instances": int(counts_arr.sum()) if len(counts) else 0,
        "classes": len(selection.classes),
        "median_rel_length": float(np.median(rel)) if rel else float("nan"),
        "single_instance_share": float((counts_arr == 1).mean()) if len(counts) else float("nan"),
    }


def summary_line(stats: dict[str, Any]) -> str:
    v = stats["videos"]
    return (
        f"videos train/val/test {v['training']}/{v['validation']}/{v['test']} "
        f"(of {stats['candidates']} candidates), {stats['instances']} instances, {stats['classes']} classes, "
        f"median instance length/duration {stats['median_rel_length']:.3f}, "
        f"single-instance videos {stats['single_instance_share']:.3f}"
    )


def render_selection(selection: Selection, feature_dim: int, seed: int, snippet_rate=SNIPPET_RATE,
                     snippet_range=SNIPPET_RANGE, **spec_overrides) -> dict[str, np.ndarray]:
    """{id: (T_native, D) float32} for every chosen video (its own RNG stream, seed-derived):
    ``clip(round(duration * rate), *snippet_range)`` snippets, ``rate ~ U(*snippet_rate)``;
    ``spec_overrides``: DemoSpec fields other than the defaults."""
    spec = DemoSpec(feature_dim=feature_dim, seed=seed, **spec_overrides)
    rng = np.random.default_rng([seed, 1])  # independent of the selection stream
    prototypes, action_dir = class_directions(rng, len(selection.classes), feature_dim)
    class_id = {c: i for i, c in enumerate(selection.classes)}
    out = {}
    for vid, v in selection.videos.items():
        duration = v["duration"]
        n = int(np.clip(round(duration * rng.uniform(*snippet_rate)), *snippet_range))
        instances = [
            (a["segment"][0] / duration, a["segment"][1] / duration, class_id[a["label"]]) for a in v["annotations"]
        ]
        out[vid] = render_features(rng, spec, n, instances, prototypes, action_dir)
    return out


def _spec(annotations: str, video_info: str, num_videos: int, num_classes: int, feature_dim: int, seed: int) -> dict:
    demo = dataclasses.asdict(DemoSpec(feature_dim=feature_dim, seed=seed))
    return json.loads(
        json.dumps(
            {
                "generator_version": GENERATOR_VERSION,
                "annotations": os.path.abspath(annotations),
                "video_info": os.path.abspath(video_info),
                "num_videos": num_videos,
                "num_classes": num_classes,
                "feature_dim": feature_dim,
                "seed": seed,
                "num_shards": NUM_SHARDS,
                "snippet_rate": SNIPPET_RATE,
                "snippet_range": SNIPPET_RANGE,
                "demo_spec": demo,  # noise/amplitude defaults of the renderer
            }
        )
    )  # tuples -> lists, as stored


def build_anet_geometry(
    output: str,
    annotations: str,
    video_info: str,
    num_videos: int = 800,
    num_classes: int = 20,
    feature_dim: int = 128,
    seed: int = 0,
    force: bool = False,
) -> str:
    """Makes (or reuses) the dataset under ``output``; returns the shard directory."""
    output, annotations, video_info = os.fspath(output), os.fspath(annotations), os.fspath(video_info)
    for path in (annotations, video_info):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found (see ../shared/datasets/activitynet13/PROVENANCE.md)")
    spec = _spec(annotations, video_info, num_videos, num_classes, feature_dim, seed)
    return build_geometry_set(
        "anet_geometry", output, spec,
        lambda: select_videos(annotations, video_info, num_videos, num_classes, seed),
        lambda selection: render_selection(selection, feature_dim, seed),
        "tags-tf anet_geometry (ActivityNet v1.3 segments)", feature_dim, force,
    )


def build_geometry_set(name: str, output: str, spec: dict, select, render, version: str, feature_dim: int,
                       force: bool = False) -> str:
    """Writes annotations, features and shards of a real-geometry set under ``output``
    (reused when ``spec.json`` matches ``spec``); returns the shard directory.

    ``select()`` -> :class:`Selection`; ``render(selection)`` -> {id: (T, D) features}.
    """
    from tags_tf.data.schema import MANIFEST_NAME

    shard_dir = os.path.join(output, "shards")
    spec_path = os.path.join(output, SPEC_NAME)
    if not force and os.path.isfile(os.path.join(shard_dir, MANIFEST_NAME)) and os.path.isfile(spec_path):
        with open(spec_path) as f:
            if json.load(f) == spec:
                logger.info("%s: reusing %s", name, shard_dir)
                return shard_dir

    t0 = time.perf_counter()
    os.makedirs(output, exist_ok=True)
    if os.path.exists(spec_path):
        os.remove(spec_path)  # invalid until the new shards are complete
    if os.path.isdir(shard_dir):
        shutil.rmtree(shard_dir)
    selection = select()
    stats = summarize(selection)
    logger.info("%s: classes %s", name, ", ".join(selection.classes))

    features = render(selection)
    annotations = {"version": version, "taxonomy": taxonomy(selection.classes), "database": selection.videos}
    ann_path, feat_dir = write_dataset_files(output, annotations, features)

    manifest = build_shards_locally(ann_path, feat_dir, shard_dir, NUM_SHARDS, feature_dim, selection.classes)
    counts = manifest.get("counts", {})
    if counts.get("rejected_total"):
        logger.warning("%s: %s videos rejected, see %s", name, counts["rejected_total"], shard_dir)
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    logger.info(
        "%s: %s; %s videos written to %s in %.1f s",
        name, summary_line(stats), counts.get("written"), shard_dir, time.perf_counter() - t0,
    )
    return shard_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", required=True, help="output directory (e.g. data/anet_geometry)")
    p.add_argument("--annotations", default=str(DEFAULT_ANNOTATIONS), help="BSN anet_anno_action.json")
    p.add_argument("--video-info", default=str(DEFAULT_VIDEO_INFO), help="BSN video_info_new.csv (subsets)")
    p.add_argument("--num-videos", type=int, default=800)
    p.add_argument("--num-classes", type=int, default=20)
    p.add_argument("--feature-dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even when spec.json matches")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    shard_dir = build_anet_geometry(
        args.output, args.annotations, args.video_info, args.num_videos, args.num_classes, args.feature_dim,
        args.seed, args.force,
    )
    print(shard_dir)


if __name__ == "__main__":
    main()
