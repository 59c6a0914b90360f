"""The demo dataset (``--dataset demo``): synthetic snippet features with realistic statistics.

Writes, under ``data_dir``::

    annotations.json    official ActivityNet layout (version, taxonomy, database)
    features/<id>.npy   (T_native, D) float32 per video
    shards/             beam.build_shards output (TFRecords + manifest.json + rejected.jsonl)
    demo_spec.json      the generator parameters the shards were built from (reuse check)

What the data looks like (defaults, matching the ``demo`` config preset):
- ``num_videos`` videos (60 % "training", 20 % "validation" for model selection, 20 %
  "test" held out for reporting), 4 classes, D = 32;
- durations uniform in 30-240 s; native snippet counts 40-200 that grow with the
  duration at a per-video rate (so resampling to T_in = 64 both up- and downsamples);
- instances placed like ActivityNet's (measured from its annotations, see
  ``ANET_INSTANCE_COUNTS``): 75 % of the videos have one instance, mostly long (median
  79 % of the video), the others 2-6 shorter ones (median 9 %), non-overlapping; 99 %
  of the instances share their video's class;
- features = per-video background offset + slow drift + white noise, plus, inside an
  action, a shared "action" direction and a class prototype (each instance with its own
  random variation and amplitude), with boundaries blurred by ramps of 1-3 snippets;
  background clutter includes unannotated distractor bumps along the action direction
  mixed with a random prototype (so "action-like" alone is not enough).
A per-snippet linear probe separates foreground and classes well above chance but far
from perfectly (see tests/tags_tf/data/test_demo.py); temporal context is needed to do
well.

Deterministic from ``seed`` (a ``numpy.random.Generator`` drives everything; no global
seeds). ``prepare_demo`` is idempotent: it reuses existing shards whose spec matches.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tags_tf.data.schema import MANIFEST_NAME, read_manifest

logger = logging.getLogger(__name__)

CLASS_NAMES = ("Juggling balls", "Rowing", "Skipping rope", "Vaulting")  # sorted, ids 0..3
GENERATOR_VERSION = 5  # 5: + a held-out test subset; 4: ActivityNet instance statistics
SPEC_NAME = "demo_spec.json"
ANNOTATIONS_NAME = "annotations.json"

# Turns written files into a shard directory (shards + manifest.json, which prepare_demo
# reads back; the return value is not used): (annotation file, feature directory, shard
# directory, number of shards, feature dim, class names in id order). The library does
# not build shards itself
# (that is ``beam``, above it); the train CLI passes ``tags_tf.train.build_shards_locally``,
# ``beam.build_shards`` on the local runner.
ShardWriter = Callable[[str, str, str, int, int, Sequence[str]], Any]


@dataclass(frozen=True)
class DemoSpec:
    """Generator parameters; everything here goes into ``demo_spec.json``."""

    num_videos: int = 240
    val_fraction: float = 0.2  # "validation": model selection
    test_fraction: float = 0.2  # "test": held out, reported
    feature_dim: int = 32
    min_duration: float = 30.0
    max_duration: float = 240.0
    min_snippets: int = 40
    max_snippets: int = 200
    snippet_rate: tuple[float, float] = (0.5, 1.2)  # native snippets per second
    length_fraction: tuple[float, float] = (0.02, 0.95)  # clip of the ActivityNet-drawn lengths
    max_coverage: float = 0.95  # most of a video that its instances may cover together
    main_class_prob: float = 0.99  # ActivityNet: 99.9 % of videos have a single class
    action_amplitude: float = 1.8  # along the shared action direction
    class_amplitude: float = 1.8  # along the class prototype
    instance_jitter: float = 0.5  # per-instance random vector (norm ~ this)
    amplitude_range: tuple[float, float] = (0.6, 1.3)  # per-instance strength factor
    ramp_snippets: tuple[float, float] = (1.0, 3.0)  # boundary blur
    background_offset: float = 0.4
    drift: float = 0.4
    noise: float = 0.7  # per-dimension white noise std
    distractors: tuple[int, int] = (0, 3)  # unannotated bumps per video
    distractor_amplitude: float = 0.8
    seed: int = 0
    version: int = GENERATOR_VERSION


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# Instance statistics of ActivityNet v1.3 "training" (10,024 videos, 15,410 instances),
# measured from ../shared/datasets/activitynet13 (tests/tags_tf/data/test_demo.py
# re-measures them when that folder is present): the share of videos with 1..6 instances
# (7 or more folded into 6), and deciles of an instance's length as a fraction of its
# video, for single-instance videos and for the instances of multi-instance videos.
ANET_INSTANCE_COUNTS = (0.753, 0.132, 0.048, 0.027, 0.015, 0.025)
ANET_LENGTH_DECILES_SINGLE = (0.0, 0.259, 0.462, 0.605, 0.71, 0.792, 0.858, 0.906, 0.953, 0.996, 1.0)
ANET_LENGTH_DECILES_MULTI = (0.0, 0.019, 0.031, 0.045, 0.062, 0.087, 0.123, 0.179, 0.264, 0.4, 1.0)


def _place_instances(rng: np.random.Generator, spec: DemoSpec) -> list[tuple[float, float]]:
    """1..6 non-overlapping [start, end] in normalized time, sorted, ActivityNet-like.

    The count and the lengths are drawn from ActivityNet's (inverse-CDF through the
    deciles above), lengths clipped to ``spec.length_fraction``; instances that would
    push the total past ``spec.max_coverage`` are dropped (one always stays). The
    background left over is split into gaps by a flat Dirichlet.
    """
    counts = np.asarray(ANET_INSTANCE_COUNTS)
    k = int(rng.choice(len(counts), p=counts / counts.sum())) + 1
    deciles = ANET_LENGTH_DECILES_SINGLE if k == 1 else ANET_LENGTH_DECILES_MULTI
    lo, hi = spec.length_fraction
    lengths = []
    for _ in range(k):
        length = float(np.clip(np.interp(rng.uniform(), np.linspace(0.0, 1.0, 11), deciles), lo, hi))
        if not lengths or sum(lengths) + length <= spec.max_coverage:
            lengths.append(min(length, spec.max_coverage))
    k = len(lengths)
    lengths = np.asarray(lengths)
    gaps = rng.dirichlet(np.ones(k + 1)) * (1.0 - lengths.sum())  # (k+1,) sums to the free time
    order = rng.permutation(k)
    out, t = [], 0.0
    for i in range(k):
        t += gaps[i]
        out.append((t, t + lengths[order[i]]))
        t += lengths[order[i]]
    return out


def _smooth_noise(rng: np.random.Generator, n: int, dim: int, scale: float) -> np.ndarray:
    """(n, dim) slow drift: a random walk, low-pass filtered and normalized to ``scale``."""
    walk = np.cumsum(rng.normal(size=(n, dim)), axis=0)
    walk -= walk.mean(axis=0, keepdims=True)
    return scale * walk / max(walk.std(), 1e-6)


def _ramp_weight(centres: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """(T,) in [0, 1]: 1 inside [start, end], linear ramps of width ``ramp`` at both ends."""
    up = np.clip((centres - start) / ramp + 0.5, 0.0, 1.0)
    down = np.clip((end - centres) / ramp + 0.5, 0.0, 1.0)
    return up * down


def render_features(
    rng: np.random.Generator,
    spec: DemoSpec,
    num_snippets: int,
    instances: list[tuple[float, float, int]],
    prototypes: np.ndarray,
    action_dir: np.ndarray,
) -> np.ndarray:
    """Synthetic snippet features of one video with the given instances.

    Args:
      num_snippets: T_native.
      instances: [(start, end, class)] in normalized time [0, 1].
      prototypes: (K, D) unit class prototypes; action_dir: (D,) unit vector.

    Returns:
      (T_native, D) float32: background offset + drift + noise, each instance's action
      direction + class prototype + jitter with blurred boundaries, distractor bumps.
    """
    k_classes, dim = prototypes.shape
    n = num_snippets
    centres = (np.arange(n) + 0.5) / n  # (T,) normalized snippet centres

    feats = rng.normal(scale=spec.background_offset, size=dim)[None, :]  # (1, D) video offset
    feats = feats + _smooth_noise(rng, n, dim, spec.drift)
    feats = feats + rng.normal(scale=spec.noise, size=(n, dim))

    for start, end, cls in instances:
        ramp = rng.uniform(*spec.ramp_snippets) / n
        w = _ramp_weight(centres, start, end, ramp)[:, None]  # (T, 1)
        strength = rng.uniform(*spec.amplitude_range)
        pattern = (
            spec.action_amplitude * action_dir
            + spec.class_amplitude * prototypes[cls]
            + spec.instance_jitter * _unit(rng.normal(size=dim))
        )
        feats = feats + strength * w * pattern[None, :]

    for _ in range(int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))):
        centre, width = rng.uniform(0, 1), rng.uniform(0.01, 0.08)
        bump = np.exp(-0.5 * ((centres - centre) / width) ** 2)[:, None]  # (T, 1) Gaussian bump
        pattern = spec.distractor_amplitude * (
            action_dir + 0.8 * prototypes[int(rng.integers(k_classes))] + 0.5 * _unit(rng.normal(size=dim))
        )
        feats = feats + rng.uniform(0.5, 1.0) * bump * pattern[None, :]
    return feats.astype(np.float32)


def generate_video(
    rng: np.random.Generator, spec: DemoSpec, prototypes: np.ndarray, action_dir: np.ndarray
) -> tuple[np.ndarray, float, list[tuple[float, float, int]]]:
    """One synthetic video.

    Args:
      prototypes: (K, D) unit class prototypes; action_dir: (D,) unit vector.

    Returns:
      features (T_native, D) float32, duration (s), instances [(start_s, end_s, class)].
    """
    k_classes = prototypes.shape[0]
    duration = float(rng.uniform(spec.min_duration, spec.max_duration))
    rate = rng.uniform(*spec.snippet_rate)
    n = int(np.clip(round(duration * rate), spec.min_snippets, spec.max_snippets))
    main_class = int(rng.integers(k_classes))
    placed = []
    for start, end in _place_instances(rng, spec):
        cls = main_class if rng.random() < spec.main_class_prob else int(rng.integers(k_classes))
        placed.append((start, end, cls))
    feats = render_features(rng, spec, n, placed, prototypes, action_dir)
    return feats, duration, [(s * duration, e * duration, c) for s, e, c in placed]


def class_directions(rng: np.random.Generator, num_classes: int, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(prototypes (K, D), action direction (D,)): unit vectors, the prototypes mostly
    orthogonal to each other and to the action direction plus a shared component, so
    classes are not trivially separable."""
    basis = np.linalg.qr(rng.normal(size=(feature_dim, num_classes + 1)))[0].T  # (K+1, D) orthonormal
    prototypes = _unit(basis[1:] + 0.35 * _unit(rng.normal(size=feature_dim))[None, :])  # (K, D)
    return prototypes, basis[0]


def generate_demo(spec: DemoSpec, rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """All videos of the demo set, in memory.

    Returns:
      (annotations in the official ActivityNet layout, {video_id: features (T, D)}).
    """
    k = len(CLASS_NAMES)
    prototypes, action_dir = class_directions(rng, k, spec.feature_dim)
    num_val = int(round(spec.num_videos * spec.val_fraction))
    num_test = int(round(spec.num_videos * spec.test_fraction))
    subsets = ["validation"] * num_val + ["test"] * num_test + ["training"] * (spec.num_videos - num_val - num_test)
    subsets = [subsets[i] for i in rng.permutation(spec.num_videos)]
    database, features = {}, {}
    for i in range(spec.num_videos):
        vid = f"demo_{i:04d}"
        feats, duration, instances = generate_video(rng, spec, prototypes, action_dir)
        features[vid] = feats
        database[vid] = {
            "subset": subsets[i],
            "duration": round(duration, 3),
            "url": "",
            "annotations": [
                {"segment": [round(s, 3), round(e, 3)], "label": CLASS_NAMES[c]} for s, e, c in instances
            ],
        }
    return {"version": "tags-tf demo", "taxonomy": taxonomy(CLASS_NAMES), "database": database}, features


def taxonomy(class_names) -> list[dict[str, Any]]:
    """ActivityNet's flat ``taxonomy`` list for ``class_names`` (all children of Root)."""
    return [{"nodeId": i + 1, "nodeName": n, "parentId": 0, "parentName": "Root"} for i, n in enumerate(class_names)]


def write_demo_files(data_dir: str, spec: DemoSpec) -> tuple[str, str]:
    """Generates the demo set and writes annotations.json and features/*.npy.

    Returns:
      (annotation file path, feature directory).
    """
    return write_dataset_files(data_dir, *generate_demo(spec, np.random.default_rng(spec.seed)))


def write_dataset_files(data_dir: str, annotations: dict[str, Any], features: dict[str, np.ndarray]) -> tuple[str, str]:
    """Writes ``annotations.json`` and ``features/<id>.npy`` (replacing old features).

    Returns:
      (annotation file path, feature directory).
    """
    feat_dir = os.path.join(data_dir, "features")
    if os.path.isdir(feat_dir):
        shutil.rmtree(feat_dir)
    os.makedirs(feat_dir)
    for vid, feats in features.items():
        np.save(os.path.join(feat_dir, f"{vid}.npy"), feats)
    ann_path = os.path.join(data_dir, ANNOTATIONS_NAME)
    with open(ann_path, "w") as f:
        json.dump(annotations, f, indent=1)
    return ann_path, feat_dir


def _spec_json(spec: DemoSpec) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(spec)))  # tuples -> lists, as stored


def prepare_demo(
    data_dir: str, seed: int = 0, num_videos: int = 240, force: bool = False, num_shards: int = 2,
    shard_writer: ShardWriter | None = None, **spec_overrides
) -> str:
    """Makes (or reuses) the demo shards under ``data_dir`` and returns the shard directory.

    The shards are reused when ``shards/manifest.json`` exists and ``demo_spec.json``
    matches the requested spec; otherwise (or with ``force``) everything is regenerated
    and sharded by ``shard_writer`` (the train CLI's: ``beam.build_shards`` on the
    DirectRunner).

    Raises:
      ValueError: the shards must be (re)built and no ``shard_writer`` was given;
        nothing under ``data_dir`` is changed then.
    """
    spec = DemoSpec(num_videos=num_videos, seed=seed, **spec_overrides)  # overrides: other DemoSpec fields
    data_dir = os.fspath(data_dir)
    shard_dir = os.path.join(data_dir, "shards")
    spec_path = os.path.join(data_dir, SPEC_NAME)
    if not force and os.path.isfile(os.path.join(shard_dir, MANIFEST_NAME)) and os.path.isfile(spec_path):
        with open(spec_path) as f:
            if json.load(f) == _spec_json(spec):
                logger.info("demo: reusing %s", shard_dir)
                return shard_dir
    if shard_writer is None:
        raise ValueError(
            f"the demo shards in {shard_dir} are missing or were made from another spec, and no "
            "shard_writer was given to build them (e.g. tags_tf.train.build_shards_locally)"
        )
    os.makedirs(data_dir, exist_ok=True)
    if os.path.exists(spec_path):
        os.remove(spec_path)  # invalid until the new shards are complete
    if os.path.isdir(shard_dir):
        shutil.rmtree(shard_dir)
    logger.info("demo: generating %d videos (seed %d) in %s", num_videos, seed, data_dir)
    ann_path, feat_dir = write_demo_files(data_dir, spec)

    # Fixed class ids even when a tiny demo lacks a class.
    shard_writer(ann_path, feat_dir, shard_dir, num_shards, spec.feature_dim, CLASS_NAMES)
    counts = read_manifest(shard_dir).counts or {}
    if counts.get("rejected_total"):
        logger.warning("demo: %s videos rejected, see %s", counts["rejected_total"], shard_dir)
    logger.info("demo: %s videos written to %s", counts.get("written"), shard_dir)
    with open(spec_path, "w") as f:
        json.dump(_spec_json(spec), f, indent=1)
    return shard_dir
