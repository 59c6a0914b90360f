"""Tests for beam.feature_readers (numpy/h5py only)."""

import h5py
import numpy as np
import pytest

from beam import feature_readers as fr
from tests.conftest import shared_dir

BMN_SAMPLE = shared_dir() / "datasets" / "feature_samples" / "paddlevideo_bmn" / "example_feat.npy"
TSP_GVF = shared_dir() / "datasets" / "feature_samples" / "tsp_gvf" / "thumos14_r2plus1d_34-max_gvf.h5"


def _write_csv(path, arr, header=True):
    with open(path, "w") as f:
        if header:
            f.write(",".join(f"f{i}" for i in range(arr.shape[1])) + "\n")
        for row in arr:
            f.write(",".join(repr(float(x)) for x in row) + "\n")


def test_index_directory_npy_csv_and_lookup_with_v_prefix(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "v_abc.npy", a)
    _write_csv(tmp_path / "def.csv", a)
    (tmp_path / "notes.txt").write_text("ignored")
    index = fr.index_features(str(tmp_path))
    assert sorted(index) == ["def", "v_abc"]
    assert [r.kind for r in fr.lookup(index, "abc")] == ["npy"]  # prefix added
    assert [r.kind for r in fr.lookup(index, "v_abc")] == ["npy"]  # exact
    assert [r.kind for r in fr.lookup(index, "v_def")] == ["csv"]  # prefix dropped
    assert fr.lookup(index, "xyz") == []


def test_lookup_reports_ambiguous_files(tmp_path):
    a = np.ones((3, 2), np.float32)
    np.save(tmp_path / "abc.npy", a)
    np.save(tmp_path / "v_abc.npy", a)
    _write_csv(tmp_path / "abc.csv", a)
    index = fr.index_features(str(tmp_path))
    assert len(fr.lookup(index, "abc")) == 3


def test_canonical_id_strips_one_prefix():
    assert fr.canonical_id("v_abc") == "abc"
    assert fr.canonical_id("v_v_abc") == "v_abc"  # real ANet ids may start with "v_"
    assert fr.canonical_id("video_test_0000004") == "video_test_0000004"
    assert fr.candidate_keys("v_x") == ["v_x", "v_v_x", "x"]


def test_read_npy_and_csv_with_and_without_header(tmp_path):
    a = np.array([[0.5, -1.25, 3.0], [2.0, 0.0, 1e-3]], np.float64)
    np.save(tmp_path / "a.npy", a)
    _write_csv(tmp_path / "h.csv", a, header=True)
    _write_csv(tmp_path / "n.csv", a, header=False)
    for name in ("a.npy", "h.csv", "n.csv"):
        np.testing.assert_array_equal(fr.read_array(str(tmp_path / name)), a)


def test_read_h5_one_dataset_per_video(tmp_path):
    path = tmp_path / "feats.h5"
    with h5py.File(path, "w") as f:
        f["vid1"] = np.full((5, 4), 2.0, np.float32)
        f["vid2"] = np.zeros((3, 4), np.float32)
        f.create_group("meta")  # groups are ignored
    index = fr.index_features(str(path))
    assert sorted(index) == ["vid1", "vid2"]
    with fr.FeatureReader() as reader:
        arr = reader.read(index["vid1"][0])
        assert reader.peek_dim(index["vid2"][0]) == 4
    np.testing.assert_array_equal(arr, np.full((5, 4), 2.0))


def test_glob_spec(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    np.save(tmp_path / "b.npy", np.ones((2, 2)))
    _write_csv(tmp_path / "c.csv", np.ones((2, 2)))
    assert sorted(fr.index_features(str(tmp_path / "*.npy"))) == ["a", "b"]


def test_missing_source_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no files found"):
        fr.index_features(str(tmp_path / "nothing*.npy"))


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.npy", b"", fr.EMPTY_FILE),
        ("empty.csv", b"", fr.EMPTY_FILE),
        ("header_only.csv", b"a,b,c\n", fr.EMPTY_FILE),
        ("garbage.npy", b"not a numpy file", fr.UNREADABLE_FILE),
        ("ragged.csv", b"1,2,3\n4,5\n", fr.UNREADABLE_FILE),
        ("text.csv", b"1,2\n3,x\n", fr.UNREADABLE_FILE),
        ("binary.csv", b"\x93NUMPY\x01\x00\xff\xfe", fr.UNREADABLE_FILE),
    ],
)
def test_bad_files_raise_with_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(fr.FeatureReadError) as err:
        fr.read_array(str(path))
    assert err.value.reason == reason
    assert name in err.value.detail


def test_truncated_npy_is_unreadable(tmp_path):
    np.save(tmp_path / "t.npy", np.ones((10, 8), np.float32))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(fr.FeatureReadError) as err:
        fr.read_array(str(tmp_path / "t.npy"))
    assert err.value.reason == fr.UNREADABLE_FILE


def test_wrong_rank_and_zero_rows(tmp_path):
    np.save(tmp_path / "v.npy", np.ones(7))
    np.save(tmp_path / "z.npy", np.ones((0, 4)))
    with pytest.raises(fr.FeatureReadError) as err:
        fr.read_array(str(tmp_path / "v.npy"))
    assert err.value.reason == fr.BAD_SHAPE
    with pytest.raises(fr.FeatureReadError) as err:
        fr.read_array(str(tmp_path / "z.npy"))
    assert err.value.reason == fr.EMPTY_FILE


def test_peek_dim_reads_headers(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((6, 5), np.float32))
    _write_csv(tmp_path / "b.csv", np.ones((2, 3)))
    (tmp_path / "c.npy").write_bytes(b"")
    with fr.FeatureReader() as reader:
        assert reader.peek_dim(fr.FeatureRef("npy", str(tmp_path / "a.npy"))) == 5
        assert reader.peek_dim(fr.FeatureRef("csv", str(tmp_path / "b.csv"))) == 3
        assert reader.peek_dim(fr.FeatureRef("npy", str(tmp_path / "c.npy"))) is None


def test_concat_streams():
    rgb = np.ones((4, 2))
    flow = np.zeros((4, 3))
    both = fr.concat_streams([rgb, flow], "x")
    assert both.shape == (4, 5)
    np.testing.assert_array_equal(both[:, :2], 1.0)
    np.testing.assert_array_equal(both[:, 2:], 0.0)
    with pytest.raises(fr.FeatureReadError) as err:
        fr.concat_streams([rgb, np.zeros((3, 3))], "vid")
    assert err.value.reason == fr.STREAM_LENGTH_MISMATCH


@pytest.mark.skipif(not BMN_SAMPLE.exists(), reason=f"shared data not found: {BMN_SAMPLE}")
def test_real_bmn_sample_as_npy_and_bsn_csv(tmp_path):
    ref = np.load(BMN_SAMPLE)
    assert ref.shape == (100, 400)
    np.testing.assert_array_equal(fr.read_array(str(BMN_SAMPLE)), ref)
    # The same features in the BSN/BMN csv layout (header row, 100 x 400).
    _write_csv(tmp_path / "v_4Lu8ECLHvK4.csv", ref)
    index = fr.index_features(str(tmp_path))
    (r,) = fr.lookup(index, "4Lu8ECLHvK4")
    with fr.FeatureReader() as reader:
        assert reader.peek_dim(r) == 400
        np.testing.assert_array_equal(reader.read(r), ref)


@pytest.mark.skipif(not TSP_GVF.exists(), reason=f"shared data not found: {TSP_GVF}")
def test_real_tsp_h5_global_vectors_are_rejected_as_bad_shape():
    index = fr.index_features(str(TSP_GVF))
    assert len(index) == 413
    with fr.FeatureReader() as reader:
        with pytest.raises(fr.FeatureReadError) as err:
            reader.read(index["video_test_0000004"][0])
    assert err.value.reason == fr.BAD_SHAPE and "(512,)" in err.value.detail
