"""beam/shard_io.py: shard counts and names, the streamed writer and the on-disk count."""

import gzip
import hashlib

import pytest

from beam import shard_io
from tags_tf.data.tfrecord import TFRecordError


def test_option_helpers():
    assert shard_io.compression_type("gzip") == "GZIP" and shard_io.compression_type(None) == ""
    with pytest.raises(ValueError, match="--compression"):
        shard_io.compression_type("zstd")
    assert shard_io.shard_suffix("gzip") == ".tfrecord.gz"
    assert shard_io.shard_name("training", 3, 12, "gzip") == "training-00003-of-00012.tfrecord.gz"
    assert [shard_io.auto_num_shards(n) for n in (0, 256, 257, 10_000)] == [1, 1, 2, 40]
    with pytest.raises(ValueError, match="shard prefix"):
        shard_io.check_subset_name("../training")


def test_tfrecord_writer_frames_read_back_by_tf_and_counted(tmp_path):
    import tensorflow as tf

    records = [b"", b"x", bytes(range(256)) * 40]
    for comp in ("", "GZIP"):
        final = str(tmp_path / f"f{comp}.tfrecord")
        with shard_io.TFRecordFileWriter(shard_io.temp_path(str(tmp_path), "f"), comp) as w:
            for r in records:
                w.write(r)
        w.commit(final)
        assert w.count == 3
        assert list(tf.data.TFRecordDataset([final], compression_type=comp).as_numpy_iterator()) == records
        assert shard_io.count_records(final, comp) == 3


def test_count_records_refuses_a_truncated_or_mis_compressed_shard(tmp_path):
    path = str(tmp_path / "f.tfrecord.gz")
    with shard_io.TFRecordFileWriter(path, "GZIP") as w:
        w.write(b"abc" * 10)
    with pytest.raises(TFRecordError, match="bad length checksum"):
        shard_io.count_records(path, "")  # gzip bytes read as plain TFRecords
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(gzip.decompress(open(path, "rb").read())[:-3])
    with pytest.raises(TFRecordError, match="cut.tfrecord: truncated TFRecord after 0 records"):
        shard_io.count_records(str(cut), "")


def test_count_and_checksum_reads_each_shard_once_for_both(tmp_path):
    records = [b"x" * n for n in (0, 5, 3000)]
    for comp in ("", "GZIP"):
        path = str(tmp_path / f"g{comp}.tfrecord")
        with shard_io.TFRecordFileWriter(path, comp) as w:
            for r in records:
                w.write(r)
        raw = open(path, "rb").read()
        assert shard_io.count_and_checksum(path, comp) == (
            3, {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})  # of the bytes as written
    cut = tmp_path / "cut.tfrecord.gz"
    cut.write_bytes(raw[: len(raw) // 2])  # a gzip stream cut short
    with pytest.raises(TFRecordError, match="cut.tfrecord.gz"):
        shard_io.count_and_checksum(str(cut), "GZIP")
