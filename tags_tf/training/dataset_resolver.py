"""``--dataset`` resolution: a preset name (anet, thumos, demo) or a shard directory.

No TensorFlow import: this runs before the distribution strategy is built.
"""

from __future__ import annotations

import functools
import glob
import gzip
import logging
import math
import os
from dataclasses import dataclass

from tags_tf import config as config_lib
from tags_tf.data import tfrecord
from tags_tf.data.demo import prepare_demo
from tags_tf.data.schema import (
    MANIFEST_NAME,
    NUM_SNIPPETS,
    SHARD_SUFFIX,
    Manifest,
    ManifestFormatError,
    read_manifest,
    shard_prefix,
)
from tags_tf.data.statistics import choose_preset
from tags_tf.training import recipe

log = logging.getLogger(__name__)

DEMO_VIDEOS = 1000  # videos of --dataset demo


class MissingDataError(RuntimeError):
    """The shards a dataset needs are not there; the message says how to make them."""


@dataclass(frozen=True)
class ResolvedDataset:
    preset: str
    shard_dir: str
    manifest: Manifest
    reason: str = ""  # why this preset (shard directories: the statistics that chose it)
    own_data: bool = False  # a user's shard directory (not the anet / thumos / demo data)

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.class_names)


# Where each preset looks for its shards by default, and how to make them.
_BUILD_HINTS = {
    "anet": (
        "python -m beam.build_shards --annotations activity_net.v1-3.min.json "
        "--features FEATURE_DIR --output {shard_dir}\n"
        "  (or BSN/BMN files: --annotations anet_anno_action.json --video-info video_info_new.csv)"
    ),
    "thumos": "python -m beam.build_shards --annotations thumos14.json --features FEATURE_DIR --output {shard_dir}",
}


def default_data_dir(dataset: str) -> str:
    return os.path.join("data", dataset)


def closest_preset(num_classes: int, feature_dim: int) -> str:
    """The preset (anet or thumos) nearest in log class count and log feature width."""

    def dist(name: str) -> float:
        m = config_lib.get_config(name).model
        return abs(math.log(num_classes / m.num_classes)) + abs(math.log(feature_dim / m.feature_dim))

    return min(("anet", "thumos"), key=dist)


def _load_manifest(shard_dir: str) -> Manifest:
    try:
        return read_manifest(shard_dir)
    except ManifestFormatError as e:  # one line for the CLI, like the other data errors
        raise MissingDataError(f"{e}; rebuild the shards with python -m beam.build_shards") from None


def _training_statistics(manifest: Manifest) -> dict | None:
    stats = manifest.statistics or {}
    for name in ("training", "train"):
        for key, value in stats.items():
            if key.lower() == name:
                return value
    return None


def preset_for_manifest(manifest: Manifest, wanted: str | None = None) -> tuple[str, str]:
    """(preset, one-line reason) for a shard directory's manifest.

    ``wanted`` (``--preset``) wins. Otherwise the temporal statistics of the training
    subset decide (:func:`tags_tf.data.statistics.choose_preset`); a manifest written
    before they existed falls back to the closest class count and feature width.
    """
    hint = "; override with --preset anet|thumos|demo"
    if wanted is not None:
        if wanted not in config_lib.PRESETS:
            raise MissingDataError(f"--preset {wanted!r}: choose one of {sorted(config_lib.PRESETS)}")
        return wanted, f"preset {wanted} as asked (--preset)"
    stats = _training_statistics(manifest)
    if stats and stats.get("instance_length_fraction"):
        preset, why = choose_preset(stats)
        return preset, f"preset {preset}: {why}{hint}"
    preset = closest_preset(len(manifest.class_names), int(manifest.feature_dim))
    return preset, (f"preset {preset}: closest class count and feature width (the manifest has no "
                    f"temporal statistics; rebuild the shards with beam.build_shards to choose by them){hint}")


def resolve(dataset: str, data_dir: str | None = None, preset: str | None = None,
            shard_writer=None) -> ResolvedDataset:
    """Finds the shards of ``dataset``; builds the demo data on first use.

    Args:
      shard_writer: how ``--dataset demo`` turns its generated files into shards when
        they are missing or stale (a :data:`tags_tf.data.demo.ShardWriter`; the train
        CLI passes ``tags_tf.train.build_shards_locally``). Unused by other datasets.

    Raises:
      MissingDataError with the expected paths and the build command.
    """
    if preset is not None and not os.path.isdir(dataset):
        raise MissingDataError("--preset applies to a shard directory; --dataset anet|thumos|demo is the preset")
    if dataset == "demo":
        # 1000 videos (600 training / 200 validation / 200 test): with fewer training
        # videos the tiny model over-fits (180 gave ~8% average mAP).
        shard_dir = prepare_demo(data_dir or default_data_dir("demo"), num_videos=DEMO_VIDEOS,
                                 shard_writer=shard_writer)
        return ResolvedDataset("demo", str(shard_dir), _load_manifest(str(shard_dir)))
    if dataset in _BUILD_HINTS:
        base = data_dir or default_data_dir(dataset)
        candidates = [base, os.path.join(base, "shards")]
        for c in candidates:
            if os.path.isfile(os.path.join(c, MANIFEST_NAME)):
                return ResolvedDataset(dataset, c, _load_manifest(c))
        shard_dir = os.path.join(base, "shards")
        raise MissingDataError(
            f"no {dataset} shards found: expected {os.path.join(shard_dir, MANIFEST_NAME)} "
            f"(or {os.path.join(base, MANIFEST_NAME)}) next to TFRecord files named "
            f"<subset>-NNNNN-of-NNNNN.tfrecord. Make them with:\n  "
            + _BUILD_HINTS[dataset].format(shard_dir=shard_dir)
            + f"\nthen run again (or pass --data-dir DIR where DIR holds {MANIFEST_NAME})."
        )
    if os.path.isdir(dataset):
        if not os.path.isfile(os.path.join(dataset, MANIFEST_NAME)):
            raise MissingDataError(
                f"{dataset} is a directory but has no {MANIFEST_NAME}: point --dataset at the --output "
                "folder of `python -m beam.build_shards` (or use anet, thumos, demo)"
            )
        manifest = _load_manifest(dataset)
        preset, reason = preset_for_manifest(manifest, preset)
        return ResolvedDataset(preset, dataset, manifest, reason, own_data=True)
    raise MissingDataError(
        f"--dataset {dataset!r} is neither a preset (anet, thumos, demo) nor a shard directory"
    )


def config_for(resolved: ResolvedDataset, overrides: dict) -> config_lib.TagsConfig:
    """The preset's config with the manifest's classes / feature width, then ``overrides``.

    With ``train.recipe = "auto"`` (every preset but the demo's) the recipe is fitted to
    the training set's size in samples (:func:`tags_tf.training.recipe.fit`, :func:`training_samples`);
    keys given in ``overrides`` always win.
    """
    from_manifest = {
        "model.num_classes": len(resolved.manifest.class_names),
        "model.feature_dim": int(resolved.manifest.feature_dim),
    }
    cfg = config_lib.get_config(resolved.preset, {**from_manifest, **overrides})
    if cfg.train.recipe == "auto":
        subset, _ = choose_subsets(resolved.manifest, cfg.data.train_subset, cfg.data.val_subset)
        fitted, why = recipe.fit(cfg.train, training_samples(resolved, subset, cfg.data))
        fitted = {k: v for k, v in fitted.items() if k not in overrides}
        if fitted:
            log.info("%s", why)
            cfg = config_lib.get_config(resolved.preset, {**from_manifest, **fitted, **overrides})
    return cfg


def training_samples(resolved: ResolvedDataset, subset: str, data: config_lib.DataConfig) -> int:
    """Samples of one training epoch: the subset's videos, or with ``data.window_snippets
    > 0`` their windows (tags_tf.data.windows), counted from every record's
    ``num_snippets`` without TensorFlow ops."""
    videos = int(resolved.manifest.subset_videos(subset) or 0)
    if data.window_snippets <= 0:
        return videos
    return sum(window_counts(resolved.shard_dir, subset, data.window_snippets, data.window_overlap))


@functools.lru_cache(maxsize=8)
def window_counts(shard_dir: str, subset: str, window: int, overlap: float) -> tuple[int, ...]:
    """Windows of every video of ``subset`` (one pass over its shards' records)."""
    from tensorflow.core.example.example_pb2 import SequenceExample  # the proto only: no TF op

    from tags_tf.data.windows import num_windows, window_stride

    stride = window_stride(window, overlap)
    counts = []
    for path in sorted(glob.glob(os.path.join(shard_dir, f"{shard_prefix(subset)}-*{SHARD_SUFFIX}*"))):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            for record in tfrecord.read_records(f, path):
                t = SequenceExample.FromString(record).context.feature[NUM_SNIPPETS].int64_list.value[0]
                counts.append(num_windows(int(t), window, stride))
    return tuple(counts)


_SUBSET_FALLBACKS = {
    # THUMOS14's own layout has no training subset: detectors train on its "validation"
    # videos and validate on "test".
    "train": ("training", "train", "validation"),
    "val": ("validation", "val", "test", "testing"),
}


def choose_subsets(manifest: Manifest, train_wanted: str, val_wanted: str) -> tuple[str, str]:
    """(train, validation) subset names present in the shards (case-insensitive).

    The config's names when both exist; otherwise conventional names for each role, so
    a user's shard directory with e.g. train/val subsets works without --set
    data.*_subset, and THUMOS14's own validation/test layout trains on "validation" and
    validates on "test".
    """
    names = manifest.subset_names()
    train, val = manifest.find_subset(train_wanted), manifest.find_subset(val_wanted)
    if train is not None and val is not None:
        return train, val
    picked = []
    for role, wanted in (("train", train_wanted), ("val", val_wanted)):
        for alt in (*_SUBSET_FALLBACKS[role], wanted.lower()):
            name = manifest.find_subset(alt)
            if name is not None and name not in picked:
                picked.append(name)
                break
        else:
            raise MissingDataError(
                f"no {role} subset in the shards (wanted {wanted!r}; they have {names}); "
                "set data.train_subset / data.val_subset"
            )
    log.info("using subsets %r (train) and %r (validation) of %s", picked[0], picked[1], names)
    return picked[0], picked[1]
