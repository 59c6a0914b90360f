"""Shard files without TensorFlow: their names, and the one TFRecord framing every shard
writer in this repository uses (``beam.shard_io`` streams it through Beam's
FileSystems; tests, benchmarks and tools write local files with :func:`write_shards`).

A record on disk (TensorFlow's TFRecord format, little-endian)::

    uint64 length | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)

A GZIP shard is one gzip stream of those frames. tf.data reads both
(``tf.data.TFRecordDataset(path, compression_type="GZIP" or "")``).

    write_shards(directory, "training", records, num_shards=2, compression="GZIP")
    with open_records(path, "GZIP") as w:      # one local file
        w.write(serialized)
    RecordWriter(binary_stream)                # any stream opened elsewhere
    read_records(binary_stream, name)          # the records back, checked framing

Standard library and google_crc32c only: Beam workers and the launcher's on-disk check
import it without TensorFlow.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from typing import BinaryIO, Iterable, Iterator

import google_crc32c

from tags_tf.data.schema import SHARD_SUFFIX, shard_prefix


class TFRecordError(ValueError):
    """A file that is not whole TFRecords: truncated, or not TFRecords at all (e.g. read
    with the wrong compression). The message names the file."""


def compression_type(compression: str | None) -> str:
    """Normalizes ``--compression`` to the tf.data spelling: "" or "GZIP"."""
    c = (compression or "").strip().upper()
    if c in ("", "NONE", "UNCOMPRESSED"):
        return ""
    if c in ("GZIP", "GZ"):
        return "GZIP"
    raise ValueError(f"--compression {compression!r}: expected 'gzip' or none")


def shard_suffix(compression: str | None) -> str:
    return SHARD_SUFFIX + (".gz" if compression_type(compression) == "GZIP" else "")


def shard_name(subset: str, index: int, num_shards: int, compression: str | None = "") -> str:
    """``{subset}-{index:05d}-of-{num_shards:05d}.tfrecord[.gz]`` (WriteToTFRecord's names)."""
    return f"{shard_prefix(subset)}-{index:05d}-of-{num_shards:05d}{shard_suffix(compression)}"


# ------------------------------------------------------------------------------ framing


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked crc32c(length), data, masked crc32c(data)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class RecordWriter:
    """Writes TFRecords to a binary stream; ``count`` records written so far.

    As a context manager it closes the stream on exit.
    """

    def __init__(self, file: BinaryIO):
        self.file = file
        self.count = 0

    def write(self, record: bytes) -> None:
        self.file.write(frame(record))
        self.count += 1

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_records(file: BinaryIO, name: str) -> Iterator[bytes]:
    """The records of a TFRecord stream (``name`` for errors). Checks the framing (each
    length's checksum), not the data's; raises TFRecordError when the stream is
    truncated or not TFRecords."""
    n = 0
    while True:
        header = file.read(12)  # uint64 length + uint32 masked crc of it
        if not header:
            return
        if len(header) != 12:
            raise TFRecordError(f"{name}: truncated TFRecord after {n} records")
        if struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
            raise TFRecordError(f"{name}: record {n} is not a TFRecord (bad length checksum; wrong compression?)")
        length = int.from_bytes(header[:8], "little")
        data = file.read(length + 4)
        if len(data) != length + 4:
            raise TFRecordError(f"{name}: truncated TFRecord after {n} records")
        yield data[:length]
        n += 1


# ---------------------------------------------------------------------------- local files


def open_records(path: str, compression: str | None = "") -> RecordWriter:
    """A RecordWriter into the local file ``path`` ("GZIP": a gzip stream, level 6, time
    stamp 0, so the same records give the same bytes)."""
    if compression_type(compression) == "GZIP":
        return RecordWriter(gzip.GzipFile(path, "wb", compresslevel=6, mtime=0))
    return RecordWriter(open(path, "wb"))


def write_shards(
    directory: str, subset: str, records: Iterable[bytes], num_shards: int, compression: str | None = ""
) -> list[str]:
    """Writes ``records`` round robin into ``num_shards`` shard files of ``subset`` in the
    local ``directory`` (created); returns their paths, every shard written, empty or not."""
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, shard_name(subset, i, num_shards, compression)) for i in range(num_shards)]
    writers = []
    try:
        for p in paths:
            writers.append(open_records(p, compression))
        for j, record in enumerate(records):
            writers[j % num_shards].write(record)
    finally:
        for w in writers:
            w.close()
    return paths


# ---------------------------------------------------------------------------- checksums


class ShardChecksumError(ValueError):
    """A shard file whose size or SHA-256 differs from what its manifest.json recorded.
    The message is one line naming the file."""


class _Hashing:
    """A binary stream that hashes the raw bytes read through it."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.sha256, self.bytes = raw, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def checksum(self, chunk: int = 1 << 20) -> dict:
        while self.read(chunk):  # the rest of the file
            pass
        return {"bytes": self.bytes, "sha256": self.sha256.hexdigest()}


def file_checksum(file: BinaryIO) -> dict:
    """``{"bytes": n, "sha256": hex}`` of the raw bytes of an open binary file (as written:
    a GZIP shard is hashed compressed). What the jobs record in ``manifest.json``'s
    ``shard_checksums`` and what :func:`verify_shards` compares with."""
    return _Hashing(file).checksum()


def count_and_checksum(raw: BinaryIO, name: str, compression: str | None = "") -> tuple[int, dict]:
    """(records, :func:`file_checksum`) of a shard read once from its raw (still
    compressed) bytes ``raw``; raises TFRecordError like :func:`read_records`."""
    hashing = _Hashing(raw)
    stream = gzip.GzipFile(fileobj=hashing, mode="rb") if compression_type(compression) == "GZIP" else hashing
    try:
        count = sum(1 for _ in read_records(stream, name))
    except (OSError, EOFError) as e:  # not gzip, or a gzip stream cut short
        raise TFRecordError(f"{name}: not a whole {compression_type(compression)} stream ({e})") from None
    return count, hashing.checksum()


def verify_shards(shard_dir: str, checksums: dict, names: Iterable[str], open_file=open,
                  size_of=os.path.getsize) -> int:
    """Checks the shard files ``names`` of ``shard_dir`` against ``checksums`` (the
    manifest's ``shard_checksums``): first every size (cheap), then every SHA-256.
    ``open_file(path, "rb")`` and ``size_of(path)`` reach remote file systems too.
    Returns the number of files checked; raises ShardChecksumError naming the first
    file that differs or that the manifest does not list."""
    names = sorted(names)
    for name in names:
        want = checksums.get(name)
        path = os.path.join(shard_dir, name)
        if want is None:
            raise ShardChecksumError(f"{path}: not listed in manifest.json's shard_checksums; the shard directory "
                                     "was changed after it was written (rebuild it with the Beam job)")
        size = size_of(path)
        if size != want["bytes"]:
            raise ShardChecksumError(f"{path}: {size} bytes, manifest.json says {want['bytes']}; the shard changed "
                                     "after it was written (rebuild it with the Beam job)")
    for name in names:
        path = os.path.join(shard_dir, name)
        with open_file(path, "rb") as f:
            got = file_checksum(f)["sha256"]
        if got != checksums[name]["sha256"]:
            raise ShardChecksumError(f"{path}: SHA-256 {got[:12]}... differs from manifest.json's "
                                     f"{checksums[name]['sha256'][:12]}...; the shard is corrupt or changed after "
                                     "it was written (rebuild it with the Beam job)")
    return len(names)
