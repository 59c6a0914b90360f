"""End-to-end build_shards runs on the local runner (one synthetic, one real sample)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from beam import build_shards
from beam.class_map import load_class_map
from tags_tf.data import features as F
from tests.conftest import shared_dir


ANET_BSN = shared_dir() / "datasets" / "activitynet13" / "bsn"
BMN_SAMPLE = shared_dir() / "datasets" / "feature_samples" / "paddlevideo_bmn" / "example_feat.npy"

D = 6
CLASSES = ["jump", "run", "swim"]


def _read_shards(out_dir, manifest):
    """{video_id: parsed example} through tf.data + features.parse_example."""
    files = [os.path.join(out_dir, f) for s in manifest["subsets"].values() for f in s["files"]]
    ds = tf.data.TFRecordDataset(files, compression_type=manifest["compression"])
    ds = ds.map(lambda x: F.parse_example(x, manifest["feature_dim"]))
    return {ex[F.VIDEO_ID].numpy().decode(): ex for ex in ds}


def _write_csv(path, arr):
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(arr.shape[1])) + "\n")  # BSN column names
        for row in arr:
            f.write(",".join(repr(float(x)) for x in row) + "\n")


@pytest.fixture
def tiny(tmp_path):
    """ActivityNet-style annotations + a feature dir with good and bad videos."""
    rng = np.random.default_rng(0)
    feat_dir = tmp_path / "feats"
    feat_dir.mkdir()
    db, feats = {}, {}

    def add(vid, subset, duration, segs, arr=None, name=None, ext=".npy"):
        db[vid] = {
            "subset": subset,
            "duration": duration,
            "annotations": [{"segment": list(s), "label": lab} for *s, lab in segs],
        }
        if arr is not None:
            path = feat_dir / ((name or vid) + ext)
            np.save(path, arr) if ext == ".npy" else _write_csv(path, arr)
            feats[vid] = arr

    good = lambda t: rng.normal(size=(t, D)).astype(np.float32)  # noqa: E731
    # Good videos (5 written).
    add("g1", "training", 20.0, [(1.0, 5.0, "run"), (6.0, 9.5, "jump")], good(16))
    add("g2", "training", 12.0, [(3.0, 15.0, "swim")], good(9))  # past the duration: clipped
    add("g3", "training", 30.0, [(4.0, 4.0, "run"), (5.0, 8.0, "run")], good(7))  # zero length: dropped
    add("g4", "validation", 15.0, [(2.0, 7.0, "jump")], good(12), name="v_g4")  # v_ prefix on the file
    add("g5", "validation", 9.0, [], good(5).astype(np.float64), ext=".csv")  # BSN csv, no instances
    # Bad videos, one per reason.
    add("missing", "training", 10.0, [(1.0, 2.0, "run")])
    add("empty", "training", 10.0, [(1.0, 2.0, "run")])
    (feat_dir / "empty.npy").write_bytes(b"")
    add("wdim", "training", 10.0, [(1.0, 2.0, "run")], rng.normal(size=(8, D + 2)).astype(np.float32))
    nan = good(8)
    nan[3, 2] = np.nan
    add("nan", "training", 10.0, [(1.0, 2.0, "run")], nan)
    add("short", "validation", 10.0, [(1.0, 2.0, "run")], good(1))
    add("dup", "training", 10.0, [(1.0, 2.0, "run")], good(4))
    add("v_dup", "training", 10.0, [(1.0, 2.0, "run")])  # same video as "dup" by the v_ rule
    add("twin", "training", 10.0, [(1.0, 2.0, "run")], good(4))
    np.save(feat_dir / "v_twin.npy", good(4))  # two feature files answer for "twin"
    add("unk", "validation", 10.0, [(1.0, 2.0, "fly")], good(4))  # not in the class map
    add("../g1", "training", 10.0, [(1.0, 2.0, "run")])
    add("a/b", "training", 10.0, [(1.0, 2.0, "run")])
    np.save(feat_dir / "extra.npy", good(4))  # features without annotations: ignored
    ann = tmp_path / "anet.json"
    ann.write_text(json.dumps({"version": "1.3", "taxonomy": [], "database": db}))
    class_map = tmp_path / "classes.json"
    class_map.write_text(json.dumps(CLASSES))
    return ann, feat_dir, class_map, feats


EXPECTED_REJECTED = {
    "missing": "missing_feature_file",
    "empty": "empty_file",
    "wdim": "wrong_feature_dim",
    "nan": "non_finite_values",
    "short": "too_few_snippets",
    "dup": "duplicate_video_id",
    "v_dup": "duplicate_video_id",
    "twin": "duplicate_video_id",
    "unk": "unknown_label",
    "../g1": "unsafe_video_id",
    "a/b": "unsafe_video_id",
}


def test_pipeline_round_trip_and_bad_inputs(tiny, tmp_path):
    ann, feat_dir, class_map, feats = tiny
    out = tmp_path / "shards"
    manifest = build_shards.run_build_shards(
        str(ann), str(feat_dir), str(out), num_shards=2, compression="gzip", class_map=str(class_map)
    )
    # Every input video is accounted for, with the expected reason.
    c = manifest["counts"]
    assert c["input"] == 16 and c["written"] == 5 and c["rejected_total"] == 11
    assert c["clipped_segments"] == 1 and c["dropped_segments"] == 1
    reasons = {}
    for r in EXPECTED_REJECTED.values():
        reasons[r] = reasons.get(r, 0) + 1
    assert c["rejected"] == reasons
    lines = [json.loads(x) for x in (out / F.DEAD_LETTER_NAME).read_text().splitlines()]
    assert {r["video_id"]: r["reason"] for r in lines} == EXPECTED_REJECTED
    assert all(r["detail"] for r in lines)
    counters = manifest.pop("beam_counters")
    assert manifest == json.loads((out / F.MANIFEST_NAME).read_text())
    assert counters["input"] == 16 and counters["written"] == 5
    assert counters["read"] == 9  # 5 written + wdim, nan, short, unk: read, then rejected
    assert {k[len("rejected_"):]: v for k, v in counters.items() if k.startswith("rejected_")} == reasons
    assert counters["clipped_segments"] == 1 and counters["dropped_segments"] == 1
    assert sorted(os.listdir(out)) == sorted(
        [F.MANIFEST_NAME, F.DEAD_LETTER_NAME, F.SEGMENT_LOG_NAME]
        + [f for s in manifest["subsets"].values() for f in s["files"]]
    )  # no temporary files left
    logged = [json.loads(line) for line in (out / F.SEGMENT_LOG_NAME).read_text().splitlines()]
    assert sorted(e["action"] for e in logged) == ["clipped", "dropped"]  # the two counted above, each named
    assert all(e["video_id"] and e["reason"] and e["detail"] for e in logged)
    assert manifest["feature_dim"] == D  # majority vote: the (8, D + 2) file is the odd one
    assert manifest["class_names"] == CLASSES and manifest["unannotated_features"] == 1
    assert manifest["subsets"]["training"]["videos"] == 3 and manifest["subsets"]["validation"]["videos"] == 2
    assert manifest["subsets"]["validation"]["files"] == [
        "validation-00000-of-00002.tfrecord.gz",
        "validation-00001-of-00002.tfrecord.gz",
    ]

    # Temporal statistics of the written videos, segments as written (clipped / dropped).
    # training: g1 T=16, 20 s, (1, 5) (6, 9.5) -> fractions 0.2, 0.175; g2 T=9, 12 s,
    # (3, 15) clipped to (3, 12) -> 0.75; g3 T=7, 30 s, (4, 4) dropped, (5, 8) -> 0.1.
    # Linear quantiles: T [7, 9, 16] -> p10 7.4, p50 9, p90 9 + 0.8 * 7 = 14.6; durations
    # [12, 20, 30] -> 13.6, 20, 28; counts [1, 1, 2] -> mean 4/3, 1, 1, 1.8; fractions
    # [0.1, 0.175, 0.2, 0.75] (positions 0.3, 1.5, 2.7) -> 0.1225, 0.1875, 0.2 + 0.7 * 0.55 = 0.585.
    # validation: g4 T=12, 15 s, (2, 7) -> 1/3; g5 T=5, 9 s, none. T [5, 12] -> 5.7, 8.5,
    # 11.3; durations [9, 15] -> 9.6, 12, 14.4; counts [0, 1] -> mean 0.5, 0.1, 0.5, 0.9.
    want_stats = {
        "training": {
            "videos": 3,
            "snippets_per_video": {"p10": 7.4, "p50": 9.0, "p90": 14.6},
            "duration_s": {"p10": 13.6, "p50": 20.0, "p90": 28.0},
            "instances_per_video": {"mean": 1.333333, "p10": 1.0, "p50": 1.0, "p90": 1.8},
            "instance_length_fraction": {"p10": 0.1225, "p50": 0.1875, "p90": 0.585},
        },
        "validation": {
            "videos": 2,
            "snippets_per_video": {"p10": 5.7, "p50": 8.5, "p90": 11.3},
            "duration_s": {"p10": 9.6, "p50": 12.0, "p90": 14.4},
            "instances_per_video": {"mean": 0.5, "p10": 0.1, "p50": 0.5, "p90": 0.9},
            "instance_length_fraction": {"p10": 0.333333, "p50": 0.333333, "p90": 0.333333},
        },
    }
    assert sorted(manifest["statistics"]) == ["training", "validation"]
    for subset, want_subset in want_stats.items():
        got_subset = manifest["statistics"][subset]
        assert got_subset["videos"] == want_subset["videos"]
        for key in want_subset:
            if key != "videos":
                assert got_subset[key] == pytest.approx(want_subset[key], abs=1e-6), (subset, key)

    # Round trip through tf.data: exactly the input features and (cleaned) segments.
    got = _read_shards(out, manifest)
    assert sorted(got) == ["g1", "g2", "g3", "g4", "g5"]
    for vid, ex in got.items():
        np.testing.assert_array_equal(ex[F.FEATURES].numpy(), feats[vid].astype(np.float32))
    want = {
        "g1": ([[1.0, 5.0], [6.0, 9.5]], [1, 0]),
        "g2": ([[3.0, 12.0]], [2]),
        "g3": ([[5.0, 8.0]], [1]),
        "g4": ([[2.0, 7.0]], [0]),
        "g5": (np.zeros((0, 2)), []),
    }
    for vid, (segs, labels) in want.items():
        np.testing.assert_allclose(got[vid]["segments"].numpy(), segs)
        np.testing.assert_array_equal(got[vid]["labels"].numpy(), labels)
    assert got["g4"][F.SUBSET].numpy() == b"validation"
    np.testing.assert_allclose(got["g2"][F.SNIPPET_TIMES].numpy(), F.uniform_snippet_times(9, 12.0), rtol=1e-6)

    # A second run into the same directory must be asked for explicitly.
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_shards.run_build_shards(str(ann), str(feat_dir), str(out))


@pytest.mark.skipif(
    not (ANET_BSN.exists() and BMN_SAMPLE.exists()), reason=f"shared data not found under {ANET_BSN.parents[2]}"
)
def test_real_bmn_features_and_bsn_annotations(tmp_path, capsys):
    feat_dir = tmp_path / "feats"
    feat_dir.mkdir()
    sample = np.load(BMN_SAMPLE)  # (100, 400) float64, video v_4Lu8ECLHvK4 (see PROVENANCE)
    np.save(feat_dir / "v_4Lu8ECLHvK4.npy", sample)
    out = tmp_path / "shards"
    rc = build_shards.main([
        "--annotations", str(ANET_BSN / "anet_anno_action.json"),
        "--video-info", str(ANET_BSN / "video_info_new.csv"),
        "--features", str(feat_dir), "--output", str(out),
        "--subsets", "validation", "--video_ids", "4Lu8ECLHvK4",
        "--runner", "DirectRunner",
    ])  # fmt: skip
    assert rc == 0
    assert "validation" in capsys.readouterr().out
    manifest = F.read_manifest(str(out))
    assert manifest.counts["input"] == 1 and manifest.counts["written"] == 1
    assert manifest.feature_dim == 400 and manifest.num_classes == 200
    assert manifest.pipeline_options["runner"] == "DirectRunner"
    (ex,) = _read_shards(out, manifest.to_dict()).values()
    assert ex[F.VIDEO_ID].numpy() == b"4Lu8ECLHvK4"
    np.testing.assert_array_equal(ex[F.FEATURES].numpy(), sample.astype(np.float32))
    np.testing.assert_allclose(ex["segments"].numpy(), [[0.01, 124.22675736961452]], rtol=1e-6)
    assert ex[F.DURATION].numpy() == pytest.approx(124.23)
    assert manifest.class_names[ex["labels"].numpy()[0]] == "Playing kickball"


def test_load_class_map_formats(tmp_path):
    names = ["a", "b", "c"]
    (tmp_path / "manifest.json").write_text(json.dumps({"class_names": names, "feature_dim": 4}))
    (tmp_path / "list.json").write_text(json.dumps(names))
    (tmp_path / "ids.json").write_text(json.dumps({"c": 2, "a": 0, "b": 1}))
    (tmp_path / "action_name.csv").write_text("action\na\nb\nc\n")
    (tmp_path / "names.txt").write_text("a\nb\n\nc\n")
    for f in ("manifest.json", "list.json", "ids.json", "action_name.csv", "names.txt"):
        assert load_class_map(str(tmp_path / f)) == names, f
    (tmp_path / "gap.json").write_text(json.dumps({"a": 0, "b": 2}))
    (tmp_path / "dup.txt").write_text("a\na\n")
    for f, msg in (("gap.json", "ids must be"), ("dup.txt", "unique"), ("nope.json", "cannot read")):
        with pytest.raises(ValueError, match=msg):
            load_class_map(str(tmp_path / f))


@pytest.mark.skipif(not ANET_BSN.exists(), reason=f"shared data not found: {ANET_BSN}")
def test_bsn_action_names_cover_the_classes_in_another_order():
    from tags_tf.data.annotation_files import load_annotations

    ann = load_annotations(ANET_BSN / "anet_anno_action.json", ANET_BSN / "video_info_new.csv", subset="validation")
    names = load_class_map(str(ANET_BSN / "action_name.csv"))
    assert len(names) == 200 and sorted(names) == list(ann.class_names)
    assert names != list(ann.class_names)  # BSN's order: its ids differ from the evaluator's


def test_assign_shards_round_robin_per_subset():
    from tags_tf.data.annotations import VideoAnnotation

    videos = [VideoAnnotation(f"v{i}", "training" if i < 5 else "validation", 1.0, None, ()) for i in range(7)]
    shard_of = build_shards.assign_shards(videos[::-1], {"training": 2, "validation": 3})
    assert shard_of == {
        "v0": ("training", 0), "v1": ("training", 1), "v2": ("training", 0), "v3": ("training", 1),
        "v4": ("training", 0), "v5": ("validation", 0), "v6": ("validation", 1),
    }  # fmt: skip


def test_bad_arguments_fail_fast_with_one_line(tmp_path, capsys):
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "a.npy", np.ones((2, 2)))
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"version": "1", "taxonomy": [], "database": {}}))
    common = ["--annotations", str(ann), "--output", str(tmp_path / "o")]
    assert build_shards.main(common + ["--features", str(tmp_path / "missing")]) == 2
    assert "no files found" in capsys.readouterr().err
    assert build_shards.main(common + ["--features", str(tmp_path / "f"), "--subsets", "nope"]) == 2
    assert "wrong subset name" in capsys.readouterr().err


@pytest.mark.parametrize("compression", ["gzip"])  # gzip: also no timestamp in the stream
def test_shards_are_byte_identical_from_run_to_run_and_checksummed(corpus, tmp_path, compression):
    """Two runs on the same input write the same bytes (records serialized with sorted map
    keys; gzip without a timestamp), and manifest.json records each file's size and SHA-256.
    Two processes with other string hash seeds: protobuf's default map order follows it.
    The Dask runner gives the same bytes too (tests/beam/test_dask_runner.py)."""
    ann, feat_dir, _, _ = corpus
    runs = []
    for seed, name in ((1, "one"), (2, "two")):
        out = tmp_path / name
        args = ["--annotations", str(ann), "--features", str(feat_dir), "--num_shards", "2", "--output", str(out)]
        proc = subprocess.run([sys.executable, "-m", "beam.build_shards", *args,
                               *(["--compression", compression] if compression else [])],
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}, capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).resolve().parents[2])
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests = {p.name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
                   for p in sorted(out.glob("*.tfrecord*"))}
        recorded = json.loads((out / F.MANIFEST_NAME).read_text())["shard_checksums"]
        assert {k: (v["bytes"], v["sha256"]) for k, v in recorded.items()} == digests
        runs.append(digests)
    assert len(runs[0]) == 4 and runs[0] == runs[1]  # 2 subsets x 2 shards
