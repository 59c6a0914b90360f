"""The one shard schema: a ``tf.train.SequenceExample`` per video.

Written by ``beam.build_shards`` / ``beam.extract_features``, read by ``tags_tf.data``
(tf.data) and ``serving`` (batch mode of the client). Key and file names are defined in
:mod:`tags_tf.data.schema` (TensorFlow-free) and re-exported here.

Context features
    video_id            bytes     the video's id (no path separators)
    subset              bytes     e.g. "training", "validation", "test"
    duration            float     video duration in seconds
    feature_dim         int64     D
    num_snippets        int64     T, the number of snippet vectors stored
    snippet_times       float[T]  centre time in seconds of every snippet
    segments/start      float[N]  ground-truth starts in seconds (clipped to [0, duration])
    segments/end        float[N]  ground-truth ends in seconds
    segments/label      int64[N]  class ids (index into the manifest's class_names)
    segments/label_name bytes[N]  class names
Feature list
    features            float[D] per snippet, T entries
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from tags_tf.data import schema
from tags_tf.data.schema import (  # noqa: F401  (re-exported: F.VIDEO_ID, F.MANIFEST_NAME, ...)
    DEAD_LETTER_NAME,
    DURATION,
    FEATURE_DIM,
    FEATURES,
    MANIFEST_NAME,
    Manifest,
    NUM_SNIPPETS,
    SEG_END,
    SEG_LABEL,
    SEG_LABEL_NAME,
    SEGMENT_LOG_NAME,
    SEG_START,
    SHARD_SUFFIX,
    SNIPPET_TIMES,
    SUBSET,
    VIDEO_ID,
    shard_prefix,
)


def uniform_snippet_times(num_snippets: int, duration: float) -> np.ndarray:
    """Centres of ``num_snippets`` equal snippets covering ``[0, duration]``."""
    return (np.arange(num_snippets, dtype=np.float64) + 0.5) * (duration / max(num_snippets, 1))


def serialize(example: tf.train.SequenceExample) -> bytes:
    """The record bytes of ``example``, the same on every run and every machine: protobuf
    map fields (the context and feature lists) serialized in sorted key order, so shard
    files can be compared, cached and verified by checksum (the default order varies
    between processes)."""
    return example.SerializeToString(deterministic=True)


def make_example(
    video_id: str,
    subset: str,
    duration: float,
    features: np.ndarray,
    segments: np.ndarray | Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    label_names: Sequence[str] = (),
    snippet_times: np.ndarray | None = None,
) -> tf.train.SequenceExample:
    """Builds the SequenceExample of one video. ``features`` is (T, D)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"{video_id}: features must be (T, D), got shape {features.shape}")
    t, d = features.shape
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    if snippet_times is None:
        snippet_times = uniform_snippet_times(t, duration)
    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    ctx[VIDEO_ID].bytes_list.value.append(video_id.encode())
    ctx[SUBSET].bytes_list.value.append(subset.encode())
    ctx[DURATION].float_list.value.append(float(duration))
    ctx[FEATURE_DIM].int64_list.value.append(d)
    ctx[NUM_SNIPPETS].int64_list.value.append(t)
    ctx[SNIPPET_TIMES].float_list.value.extend(np.asarray(snippet_times, np.float32).tolist())
    ctx[SEG_START].float_list.value.extend(segments[:, 0].tolist())
    ctx[SEG_END].float_list.value.extend(segments[:, 1].tolist())
    ctx[SEG_LABEL].int64_list.value.extend(int(x) for x in labels)
    ctx[SEG_LABEL_NAME].bytes_list.value.extend(n.encode() for n in label_names)
    # Parsing the wire bytes is ~10x faster than adding T FloatLists value by value,
    # and gives the identical message.
    ex.feature_lists.feature_list[FEATURES].MergeFromString(_float_feature_list_bytes(features))
    return ex


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _float_feature_list_bytes(features: np.ndarray) -> bytes:
    """Wire format of FeatureList{feature: [Feature{float_list{value (packed)}}] per row}."""
    parts = []
    for row in np.ascontiguousarray(features, "<f4"):  # (T, D): one Feature per snippet
        raw = row.tobytes()
        float_list = b"\x0a" + _varint(len(raw)) + raw  # FloatList.value = 1, packed
        feature = b"\x12" + _varint(len(float_list)) + float_list  # Feature.float_list = 2
        parts.append(b"\x0a" + _varint(len(feature)) + feature)  # FeatureList.feature = 1
    return b"".join(parts)


CONTEXT_SPEC = {
    VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
    SUBSET: tf.io.FixedLenFeature([], tf.string),
    DURATION: tf.io.FixedLenFeature([], tf.float32),
    FEATURE_DIM: tf.io.FixedLenFeature([], tf.int64),
    NUM_SNIPPETS: tf.io.FixedLenFeature([], tf.int64),
    SNIPPET_TIMES: tf.io.VarLenFeature(tf.float32),
    SEG_START: tf.io.VarLenFeature(tf.float32),
    SEG_END: tf.io.VarLenFeature(tf.float32),
    SEG_LABEL: tf.io.VarLenFeature(tf.int64),
    SEG_LABEL_NAME: tf.io.VarLenFeature(tf.string),
}


def sequence_spec(feature_dim: int) -> dict:
    return {FEATURES: tf.io.FixedLenSequenceFeature([feature_dim], tf.float32)}


def parse_batch(serialized: tf.Tensor, feature_dim: int) -> dict[str, tf.Tensor]:
    """The one tf.data decoder: a batch of serialized SequenceExamples -> dense tensors
    (graph op, works inside tf.data).

    Args:
      serialized: (B,) string.

    Returns:
      video_id (B,), subset (B,), duration (B,) float32, features (B, T, D) float32
      zero-padded after each video's own length, num_snippets (B,) int32 (that length),
      snippet_times (B, T) zero-padded, segments (B, N, 2) float32 seconds zero-padded
      and labels (B, N) int32 padded with -1 (T, N: the most in the batch).
    """
    ctx, seq, lengths = tf.io.parse_sequence_example(
        serialized, context_features=CONTEXT_SPEC, sequence_features=sequence_spec(feature_dim)
    )
    start = tf.sparse.to_dense(ctx[SEG_START])  # (B, N)
    end = tf.sparse.to_dense(ctx[SEG_END])
    return {
        VIDEO_ID: ctx[VIDEO_ID],
        SUBSET: ctx[SUBSET],
        DURATION: ctx[DURATION],
        FEATURES: seq[FEATURES],
        NUM_SNIPPETS: tf.cast(lengths[FEATURES], tf.int32),
        SNIPPET_TIMES: tf.sparse.to_dense(ctx[SNIPPET_TIMES]),
        "segments": tf.stack([start, end], axis=-1),  # (B, N) x 2 -> (B, N, 2)
        "labels": tf.cast(tf.sparse.to_dense(ctx[SEG_LABEL], default_value=-1), tf.int32),
    }


def parse_example(serialized: tf.Tensor, feature_dim: int) -> dict[str, tf.Tensor]:
    """One serialized SequenceExample: :func:`parse_batch` of a batch of one, unbatched.

    Returns video_id (), subset (), duration (), features (T, D), num_snippets (),
    snippet_times (T,), segments (N, 2) float32 seconds, labels (N,) int32.
    """
    batch = parse_batch(tf.expand_dims(serialized, 0), feature_dim)  # () -> (1,)
    return {k: v[0] for k, v in batch.items()}  # (1, ...) -> (...)


class RecordError(ValueError):
    """A record that is not a shard record of this schema (the message says why)."""


_REQUIRED_CONTEXT = (FEATURE_DIM, VIDEO_ID, SUBSET, DURATION)  # single values every record has


def example_to_numpy(serialized: bytes) -> dict[str, object]:
    """The one numpy reader: one serialized SequenceExample decoded with protobuf only
    (tests, tools, serving's batch client, input checks).

    Raises RecordError when the bytes are not a SequenceExample, lack a required context
    feature, or hold snippet vectors of another width than their ``feature_dim``.
    """
    try:
        ex = tf.train.SequenceExample.FromString(serialized)
    except DecodeError:
        raise RecordError("is not a tf.train.SequenceExample") from None
    ctx = ex.context.feature
    values = {k: getattr(ctx[k], ctx[k].WhichOneof("kind")).value for k in _REQUIRED_CONTEXT
              if k in ctx and ctx[k].WhichOneof("kind")}
    missing = [k for k in _REQUIRED_CONTEXT if not values.get(k)]
    if missing:
        raise RecordError(f"has no {', '.join(repr(k) for k in missing)} context feature")
    d = values[FEATURE_DIM][0]
    rows = [f.float_list.value for f in ex.feature_lists.feature_list[FEATURES].feature]
    if any(len(r) != d for r in rows):
        raise RecordError(f"has snippet vectors of {sorted({len(r) for r in rows})} values, not its feature_dim {d}")
    return {
        VIDEO_ID: values[VIDEO_ID][0].decode(),
        SUBSET: values[SUBSET][0].decode(),
        DURATION: values[DURATION][0],
        FEATURE_DIM: d,
        FEATURES: np.array(rows, np.float32).reshape(len(rows), d),
        SNIPPET_TIMES: np.array(ctx[SNIPPET_TIMES].float_list.value, np.float32),
        "segments": np.stack(
            [np.array(ctx[SEG_START].float_list.value), np.array(ctx[SEG_END].float_list.value)], -1
        ).reshape(-1, 2),
        "labels": np.array(ctx[SEG_LABEL].int64_list.value, np.int64),
        "label_names": [b.decode() for b in ctx[SEG_LABEL_NAME].bytes_list.value],
    }


def read_manifest(shard_dir: str) -> Manifest:
    """``manifest.json`` of a shard directory, local or remote (``tf.io.gfile``); see
    :func:`tags_tf.data.schema.read_manifest`."""
    return schema.read_manifest(shard_dir, open_file=tf.io.gfile.GFile)
