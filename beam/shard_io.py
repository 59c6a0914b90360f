"""Shard files of the Beam jobs: how many, the streamed writer, the per-shard writing
transform, and the record count that checks them afterwards (local paths or gs://,
through Beam's FileSystems; no TensorFlow). Names and TFRecord framing are
:mod:`tags_tf.data.tfrecord`'s, shared with every other shard writer.

    with TFRecordFileWriter(temp_path(out, name), "GZIP") as w:   # one shard, streamed
        w.write(serialized)
    w.commit(FileSystems.join(out, name))
    examples | WriteShards(out, num_shards, shard_of, compression)  # a GroupByKey per shard
    count_records(path, "GZIP")                                     # what is really on disk
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tags_tf.data.tfrecord import (  # noqa: F401  (compression_type, shard_suffix: for the jobs too)
    RecordWriter,
    compression_type,
    read_records,
    shard_name,
    shard_suffix,
)
from tags_tf.data.tfrecord import count_and_checksum as tfrecord_count_and_checksum

_SUBSET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_subset_name(subset: str) -> str:
    """Subset names become file-name prefixes: letters, digits, ``_.-`` only."""
    if not _SUBSET_RE.match(subset or ""):
        raise ValueError(
            f"subset name {subset!r} cannot be used as a shard prefix; "
            "expected letters, digits, '_', '.', '-'"
        )
    return subset


def auto_num_shards(num_videos: int, videos_per_shard: int = 256, max_shards: int = 1024) -> int:
    """Default shard count: ~``videos_per_shard`` videos a shard, at least 1."""
    return max(1, min(max_shards, math.ceil(num_videos / videos_per_shard)))


def _beam_compression(compression: str) -> str:
    return CompressionTypes.GZIP if compression_type(compression) == "GZIP" else CompressionTypes.UNCOMPRESSED


# -------------------------------------------------------------- streamed TFRecord files

TMP_DIR = ".tmp"  # under the output directory; removed by accounting.finalize_output (publish)


def temp_path(output_dir: str, name: str) -> str:
    """A unique temporary path for ``name`` (one per attempt, so retries never collide)."""
    import uuid

    return FileSystems.join(output_dir, TMP_DIR, f"{name}.{uuid.uuid4().hex}")


class TFRecordFileWriter(RecordWriter):
    """Streams records into one TFRecord file through Beam's FileSystems (local, gs://...).

    Write to a temporary path, then :meth:`commit` renames it to the final name::

        with TFRecordFileWriter(temp_path(out, name), "GZIP") as w:
            w.write(serialized)
        w.commit(FileSystems.join(out, name))

    A writer left by an exception is closed and its file deleted.
    """

    def __init__(self, path: str, compression: str = ""):
        super().__init__(FileSystems.create(path, compression_type=_beam_compression(compression)))
        self.path = path

    def __exit__(self, exc_type, *unused) -> None:
        self.close()
        if exc_type is not None:
            try:
                FileSystems.delete([self.path])
            except Exception:  # best effort; the temp dir goes with accounting.finalize_output
                pass

    def commit(self, final_path: str) -> None:
        """Renames the (closed) file to ``final_path``, replacing any earlier attempt."""
        if FileSystems.exists(final_path):
            FileSystems.delete([final_path])
        FileSystems.rename([self.path], [final_path])


class WriteShardFn(beam.DoFn):
    """((subset, shard index), [(video_id, serialized) or None]) -> the written shard's path.

    Streams the records, sorted by video id, into ``{output}/{subset}-NNNNN-of-NNNNN``
    under a temporary name and renames it when complete; ``None`` values are markers
    that make every shard exist, empty or not (see WriteShards).
    """

    def __init__(self, output_dir: str, num_shards: Mapping[str, int], compression: str = ""):
        self._output_dir = output_dir
        self._num_shards = dict(num_shards)
        self._compression = compression_type(compression)

    def process(self, element):
        (subset, shard), items = element
        name = shard_name(subset, shard, self._num_shards[subset], self._compression)
        with TFRecordFileWriter(temp_path(self._output_dir, name), self._compression) as writer:
            for _, record in sorted((x for x in items if x is not None), key=lambda x: x[0]):
                writer.write(record)
        writer.commit(FileSystems.join(self._output_dir, name))
        yield FileSystems.join(self._output_dir, name)


def _key_by_shard(element, shard_of):
    (subset, video_id), record = element
    if video_id not in shard_of:
        raise ValueError(f"video {video_id!r} of subset {subset!r} has no shard (not planned)")
    return shard_of[video_id], (video_id, record)


class WriteShards(beam.PTransform):
    """PCollection[((subset, video_id), serialized)] -> PCollection[str] of shard paths.

    ``shard_of``: video id -> (subset, shard index) for every video that may be written
    (e.g. round robin over sorted ids); ``num_shards``: subset -> count. Every shard is
    written, empty or not. A GroupByKey per shard and one writer DoFn a shard (no
    Partition, no WriteToTFRecord: both lose data on the DaskRunner, see below).
    """

    def __init__(self, output_dir: str, num_shards: Mapping[str, int], shard_of: Mapping[str, tuple], compression=""):
        super().__init__()
        self._output_dir = output_dir
        self._num_shards = {check_subset_name(s): int(n) for s, n in num_shards.items()}
        self._shard_of = {k: tuple(v) for k, v in shard_of.items()}
        self._compression = compression_type(compression)

    def expand(self, pcoll):
        markers = pcoll.pipeline | "ShardMarkers" >> beam.Create(
            [((s, i), None) for s, n in self._num_shards.items() for i in range(n)]
        )
        keyed = pcoll | "KeyByShard" >> beam.Map(_key_by_shard, self._shard_of)
        return (
            (markers, keyed)
            | "ShardRecords" >> beam.Flatten()
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(WriteShardFn(self._output_dir, self._num_shards, self._compression))
        )


def count_and_checksum(path: str, compression: str = "") -> tuple[int, dict]:
    """(records, ``{"bytes", "sha256"}`` of the file as written) of ``path``, read once
    (tags_tf.data.tfrecord.count_and_checksum; raises its TFRecordError)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return tfrecord_count_and_checksum(f, path, compression)


def count_records(path: str, compression: str = "") -> int:
    """Number of TFRecords in ``path`` (framing only; raises tags_tf.data.tfrecord.TFRecordError
    if truncated or not TFRecords)."""
    with FileSystems.open(path, compression_type=_beam_compression(compression)) as f:
        return sum(1 for _ in read_records(f, path))
