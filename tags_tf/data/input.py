"""tf.data input: TFRecord shards -> batches of (inputs, targets) for ``model.fit``.

Pipeline (docs/design.md)::

    files (sorted; shuffled per epoch when training; sharded per input pipeline)
      -> interleave(TFRecordDataset, parallel; non-deterministic only when training)
      -> shuffle serialized records (training)  # before decoding: records are smaller
      -> batch serialized records (drop_remainder only when training)
      -> decode the batch in one vectorized map: tf.io.parse_sequence_example with the
         tags_tf.data.features schema, resample every video to cfg.model.input_snippets
         (linear, align_corners=False, per-video lengths), targets for every scale
         (tags_tf.model.labels.build_targets, batched)
      -> prefetch(AUTOTUNE)

Decoding after batching costs about half the CPU per video of a per-video map at the
demo size (fixed per-op costs are shared by the batch) and ~25 % less at ANet size
(benchmarks/input_bench.py).

Each element is ``(x, y)``:
  x["features"]  (B, T_in, D) float32, T_in = cfg.model.input_snippets
  y              build_targets(...) dict: cls_target_s{s} (B, T^s) int32,
                 mask_target_s{s} (B, T^s, T^s), fg_s{s} (B, T^s), valid_s{s} (B, T^s);
                 or, with targets="raw", the ground truth segments / labels / duration
                 for TagsModel to turn into targets on the accelerator.
With ``with_metadata=True`` (what evaluation uses), x also carries
  x["video_id"] (B,) string, x["duration"] (B,) float32 seconds,
  x["num_snippets"] (B,) int32 (stored snippets before resampling),
  x["segments"] (B, N, 2) float32 seconds and x["labels"] (B, N) int32, padded with -1.
The model reads only ``x["features"]`` and ignores the other keys.

Evaluation keeps every video exactly once, in a deterministic order, with a smaller
last batch (no padding videos). Training drops the last partial batch so every step
has the same static shapes.

Under ``tf.distribute`` pass the ``tf.distribute.InputContext`` given by
``strategy.distribute_datasets_from_function``: batches are then per replica
(``input_context.get_per_replica_batch_size(batch_size)``) and each input pipeline reads
its own subset of files (or, with fewer files than pipelines, every n-th record).
"""

from __future__ import annotations

import logging
from typing import Sequence

import tensorflow as tf

from tags_tf.data import features as F
from tags_tf.config import TagsConfig
from tags_tf.data import windows as win
from tags_tf.data.resample import resample_features
from tags_tf.model.labels import build_targets

logger = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE

# Keys of x beyond "features" when with_metadata=True.
METADATA_KEYS = ("video_id", "duration", "num_snippets", "segments", "labels")


class InputError(ValueError):
    """Bad input files: nothing matches, unreadable records or a feature-dim mismatch."""


def list_files(file_pattern_or_list: str | Sequence[str]) -> list[str]:
    """Expands one glob pattern / file name, or a list of them, into sorted file names.

    Raises:
      InputError naming the pattern when a pattern matches no file.
    """
    patterns = [file_pattern_or_list] if isinstance(file_pattern_or_list, (str, bytes)) else list(file_pattern_or_list)
    if not patterns:
        raise InputError("no input files given (empty list of shard patterns)")
    files: set[str] = set()
    for p in patterns:
        p = p.decode() if isinstance(p, bytes) else str(p)
        matched = tf.io.gfile.glob(p)
        if not matched:
            raise InputError(f"no TFRecord files match {p!r}")
        files.update(matched)
    return sorted(files)


def subset_pattern(shard_dir: str, subset: str) -> str:
    """Glob of the shards of ``subset`` written by ``beam.build_shards`` into ``shard_dir``."""
    return f"{str(shard_dir).rstrip('/')}/{F.shard_prefix(subset)}-*{F.SHARD_SUFFIX}*"


def infer_compression(files: Sequence[str], compression: str | None) -> str:
    """``compression`` if given, else "GZIP" when every file ends in ``.gz``, else ""."""
    if compression is not None:
        return compression.upper()
    return "GZIP" if files and all(f.endswith(".gz") for f in files) else ""


def check_files(files: Sequence[str], feature_dim: int, compression: str) -> None:
    """Reads the first record of every file (features.example_to_numpy) and checks it is
    a shard with ``feature_dim``.

    Catches the common mistakes (wrong compression, wrong preset / feature set, not a
    shard at all) with a one-line error before the pipeline starts. Empty files pass.
    """
    for f in files:
        try:
            first = next(iter(tf.data.TFRecordDataset(f, compression_type=compression).take(1)), None)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise InputError(
                f"{f}: cannot read TFRecords with compression {compression!r} ({type(e).__name__}); "
                "pass compression='GZIP' for .gz shards or '' for plain ones"
            ) from None
        if first is None:
            continue
        try:
            record = F.example_to_numpy(first.numpy())
        except F.RecordError as e:
            raise InputError(f"{f}: the first record {e} (not a tags_tf shard?)") from None
        if record[F.FEATURE_DIM] != feature_dim:
            raise InputError(
                f"{f}: video {record[F.VIDEO_ID]!r} has feature_dim {record[F.FEATURE_DIM]}, expected "
                f"model.feature_dim={feature_dim} (wrong preset, or shards built from other features?)"
            )


def decode_batch(serialized: tf.Tensor, cfg: TagsConfig) -> dict[str, tf.Tensor]:
    """A batch of serialized shard records -> resampled features and metadata (graph op).

    Args:
      serialized: (B,) string, records of the tags_tf.data.features schema.

    Returns:
      features.parse_batch's dict with features resampled to (B, T_in, D) float32:
      video_id (B,) string, duration (B,) float32, num_snippets (B,) int32 (stored
      snippets), segments (B, N, 2) float32 seconds and labels (B, N) int32 padded with
      -1 (N = most instances in the batch); also subset and snippet_times (unused here).
    """
    v = F.parse_batch(serialized, cfg.model.feature_dim)
    # v[FEATURES] is (B, T_max, D), zero-padded after each video's own length.
    feats = resample_features(v[F.FEATURES], cfg.model.input_snippets, lengths=v[F.NUM_SNIPPETS])  # -> (B, T_in, D)
    return {**v, F.FEATURES: feats}


def _targets(v, cfg, targets: str) -> dict:
    """A batch's training targets (``targets="built"``, :func:`build_targets` on the input
    CPUs) or its raw ground truth (``"raw"``: ``TagsModel.targets_from`` builds them)."""
    raw = {k: v[k] for k in ("segments", "labels", "duration")}
    return raw if targets == "raw" else build_targets(raw["segments"], raw["labels"], raw["duration"], cfg.model)


def make_dataset(
    file_pattern_or_list: str | Sequence[str],
    cfg: TagsConfig,
    training: bool,
    batch_size: int | None = None,
    compression: str | None = None,
    input_context: tf.distribute.InputContext | None = None,
    with_metadata: bool = False,
    seed: int | None = None,
    check: bool = True,
    targets: str = "built",
) -> tf.data.Dataset:
    """Builds the input pipeline of the module docstring.

    Args:
      file_pattern_or_list: a glob / file name or a list of them (see ``subset_pattern``).
      cfg: the resolved config (model.feature_dim, model.input_snippets, model.scales,
        model.num_classes, data.shuffle_buffer, data.compression, train.batch_size).
      training: shuffle files and records, non-deterministic interleave, drop the last
        partial batch. Otherwise one deterministic pass over every video.
      batch_size: the GLOBAL batch size (default cfg.train.batch_size).
      compression: "" or "GZIP"; default cfg.data.compression, or inferred from ``.gz``.
      input_context: from ``strategy.distribute_datasets_from_function``; makes the
        batches per replica and shards the input between pipelines.
      with_metadata: add video_id, duration, num_snippets, segments, labels to x.
      seed: shuffle seed (None: a different order every run).
      check: read the first record of every file first (clear errors, see check_files).
      targets: "built" (y = build_targets(...), made on the input CPUs) or "raw"
        (y = {"segments" (B, N, 2), "labels" (B, N) padded with -1, "duration" (B,)};
        TagsModel.compute_loss then builds the targets on the accelerator, which
        removes most of the input's CPU work at ANet size and the (B, T, T) transfers).

    Returns:
      A dataset of ``(x, y)``; one pass = one epoch (call ``.repeat()`` for more).
    """
    if targets not in ("built", "raw"):
        raise ValueError(f"targets must be 'built' or 'raw', got {targets!r}")
    files = list_files(file_pattern_or_list)
    if compression is None and cfg.data.compression:
        compression = cfg.data.compression
    compression = infer_compression(files, compression)
    if check:
        check_files(files, cfg.model.feature_dim, compression)

    global_batch = batch_size or cfg.train.batch_size
    batch = global_batch
    deterministic = not training
    record_shard = None
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(global_batch)
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        if n > 1 and len(files) >= n:
            files = files[i::n]
        elif n > 1:
            # Fewer files than pipelines: every pipeline reads everything and keeps every
            # n-th record, which needs the same record order everywhere.
            record_shard = (n, i)
            deterministic = True
            logger.warning("%d shard files for %d input pipelines: sharding by record", len(files), n)
    logger.info("input: %d files (%s), batch %d, training=%s", len(files), compression or "uncompressed", batch, training)

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training and record_shard is None:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=min(len(files), 16),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if record_shard is not None:
        ds = ds.shard(*record_shard)
    if training:
        ds = ds.shuffle(cfg.data.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if cfg.data.window_snippets > 0:
        return _windowed(ds, cfg, training, batch, deterministic, with_metadata, targets, seed)
    ds = ds.batch(batch, drop_remainder=training)

    def to_inputs_targets(serialized):
        v = decode_batch(serialized, cfg)
        y = _targets(v, cfg, targets)
        x = {"features": v["features"]}
        if with_metadata:
            x.update({k: v[k] for k in METADATA_KEYS})
        return x, y

    ds = ds.map(to_inputs_targets, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(AUTOTUNE)


def _windowed(ds: tf.data.Dataset, cfg: TagsConfig, training: bool, batch: int, deterministic: bool,
              with_metadata: bool, targets: str, seed: int | None) -> tf.data.Dataset:
    """``data.window_snippets > 0`` (tags_tf.data.windows).

    Training: every video -> its windows (starts jittered) with the ground truth clipped
    to each -> shuffled windows -> batches of windows resampled to ``input_snippets``,
    targets as without windows. Evaluation: one video per element, its native snippets
    unresampled (``TagsModel.detect`` cuts the windows), y = the raw ground truth.
    """
    w = cfg.data.window_snippets
    stride = win.window_stride(w, cfg.data.window_overlap)
    dim = cfg.model.feature_dim
    if not training:
        def one_video(serialized):
            v = F.parse_batch(serialized[None], dim)  # (1, ...): a batch of one video, native length
            x = {"features": v[F.FEATURES]}
            if with_metadata:
                x.update({k: v[k] for k in METADATA_KEYS})
            return x, {k: v[k] for k in ("segments", "labels", "duration")}

        return ds.map(one_video, num_parallel_calls=AUTOTUNE, deterministic=deterministic).prefetch(AUTOTUNE)

    def video_windows(serialized):
        v = F.parse_example(serialized, dim)
        t = v[F.NUM_SNIPPETS]
        starts = win.jitter_starts(win.window_starts(t, w, stride), t, w, stride, seed=seed)
        feats = win.cut_windows(v[F.FEATURES][None], starts, w)[0]  # (n, W, D)
        segments, labels, length = win.window_ground_truth(v["segments"], v["labels"], v[F.DURATION], t, starts, w)
        return tf.data.Dataset.from_tensor_slices(
            ({"features": feats}, {"segments": segments, "labels": labels, "duration": length}))

    ds = ds.flat_map(video_windows)
    ds = ds.shuffle(cfg.data.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.padded_batch(batch, drop_remainder=True,
                         padding_values=({"features": 0.0}, {"segments": 0.0, "labels": -1, "duration": 0.0}))

    def to_inputs_targets(x, y):
        feats = x["features"]
        if w != cfg.model.input_snippets:
            feats = resample_features(feats, cfg.model.input_snippets)
        return {"features": tf.ensure_shape(feats, [None, cfg.model.input_snippets, dim])}, _targets(y, cfg, targets)

    ds = ds.map(to_inputs_targets, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(AUTOTUNE)
