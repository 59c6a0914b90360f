"""Both Beam jobs on Beam's DaskRunner against a local dask.distributed cluster.

The cluster (2 worker processes, loopback only) starts once for the module. Each job
runs on it and on the local runner with the same input; the shards must hold the same
records and the manifests / dead letters must agree.
"""

import hashlib
import json

import numpy as np
import pytest

ddist = pytest.importorskip("dask.distributed")

from beam import build_shards, sinks  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with ddist.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as c:
        yield c.scheduler_address


def read_records(out, manifest):
    """{video_id: (features, segments, labels, subset)} of every record in the shards."""
    from tags_tf.data import features as F
    import tensorflow as tf

    got = {}
    for sub in manifest["subsets"].values():
        for name in sub["files"]:
            for data in tf.data.TFRecordDataset(str(out / name), manifest["compression"]).as_numpy_iterator():
                ex = F.example_to_numpy(data)
                vid = ex[F.VIDEO_ID]
                assert vid not in got, f"{vid} written twice"
                got[vid] = (ex[F.FEATURES], ex["segments"], list(ex["labels"]), ex[F.SUBSET])
    return got


def sha256s(out) -> dict:
    """{shard file: SHA-256} of the shard files actually in ``out``."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tfrecord*"))}


def assert_same_output(local, dask):
    """Byte-identical shards; the same records, dead letter and manifest (but the runner options)."""
    assert sha256s(local) and sha256s(local) == sha256s(dask)
    ml, md = (json.loads((d / "manifest.json").read_text()) for d in (local, dask))
    ml.pop("pipeline_options"), md.pop("pipeline_options")
    assert ml == md
    assert (local / "rejected.jsonl").read_text() == (dask / "rejected.jsonl").read_text()
    rl, rd = read_records(local, ml), read_records(dask, md)
    assert sorted(rl) == sorted(rd) and len(rl) == ml["counts"]["written"]
    for vid in rl:
        np.testing.assert_array_equal(rl[vid][0], rd[vid][0])
        np.testing.assert_array_equal(rl[vid][1], rd[vid][1])
        assert rl[vid][2:] == rd[vid][2:]


@pytest.mark.slow
def test_build_shards_on_dask_equals_the_local_runner(corpus, cluster, tmp_path, capsys):
    ann, feat_dir, good, expected = corpus
    args = ["--annotations", str(ann), "--features", str(feat_dir), "--num_shards", "3", "--compression", "gzip",
            "--log_level", "WARNING"]
    assert build_shards.main(args + ["--output", str(tmp_path / "local")]) == 0
    rc = build_shards.main(args + ["--output", str(tmp_path / "dask"), "--runner", "dask",
                                   f"--dask_client_address={cluster}"])
    assert rc == 0, capsys.readouterr().err
    assert_same_output(tmp_path / "local", tmp_path / "dask")
    rejected = [json.loads(x) for x in (tmp_path / "dask" / "rejected.jsonl").read_text().splitlines()]
    # The default policy keeps b_reversed (its bad segment dropped): 10 rejections.
    assert {r["video_id"]: r["reason"] for r in rejected} == {v: r for v, r in expected.items() if v != "b_reversed"}


@pytest.mark.slow
def test_extract_features_on_dask_equals_the_local_runner(cluster, tmp_path):
    pytest.importorskip("av")
    from beam import extract_features
    from tags_tf.testing import FRAME_SIZE, SNIPPET_FRAMES, export_mean_colour_model, garbage, write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(4):  # 3.0-4.5 s at 10 fps: 4-6 snippets of 8 frames
        write_video(videos / f"clip{i}.mp4", num_frames=30 + 5 * i, fps=10)
    garbage(videos / "noise.mp4")  # rejected: unreadable_container
    model = export_mean_colour_model(tmp_path / "mean_colour", frames=SNIPPET_FRAMES, height=FRAME_SIZE,
                                     width=FRAME_SIZE)
    args = ["--videos", str(videos), "--encoder", f"savedmodel:{model}", "--snippet_frames", str(SNIPPET_FRAMES),
            "--snippet_stride", str(SNIPPET_FRAMES), "--batch_size", "3", "--num_shards", "2"]
    extract_features.run(args + ["--output", str(tmp_path / "local")])
    extract_features.run(args + ["--output", str(tmp_path / "dask"), "--runner", "dask",
                                 f"--dask_client_address={cluster}"])
    assert_same_output(tmp_path / "local", tmp_path / "dask")
    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert (manifest["counts"]["written"], manifest["counts"]["rejected"]) == (4, {"unreadable_container": 1})


@pytest.mark.slow
def test_build_shards_on_dask_equals_the_local_runner_on_800_activitynet_videos(cluster, shared, tmp_path, capsys):
    """The issue's scale check: 800 videos with ActivityNet's real durations and segments."""
    import importlib.util
    import sys

    from tests.conftest import REPO

    bsn = shared / "datasets" / "activitynet13" / "bsn"
    ann, info = bsn / "anet_anno_action.json", bsn / "video_info_new.csv"
    if not (ann.is_file() and info.is_file()):
        pytest.skip(f"ActivityNet BSN annotation files not found in {bsn}")
    spec = importlib.util.spec_from_file_location("anet_geometry", REPO / "benchmarks" / "anet_geometry.py")
    ag = sys.modules.setdefault("anet_geometry", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(ag)
    selection = ag.select_videos(str(ann), str(info), num_videos=800, num_classes=20, seed=0)
    features = ag.render_selection(selection, feature_dim=32, seed=0)  # D > 20 classes + 1
    db = {"version": "test", "taxonomy": ag.taxonomy(selection.classes), "database": selection.videos}
    ann_path, feat_dir = ag.write_dataset_files(str(tmp_path / "src"), db, features)

    args = ["--annotations", ann_path, "--features", feat_dir, "--num_shards", "4", "--log_level", "WARNING"]
    assert build_shards.main(args + ["--output", str(tmp_path / "local")]) == 0
    rc = build_shards.main(args + ["--output", str(tmp_path / "dask"), "--runner", "dask",
                                   f"--dask_client_address={cluster}"])
    assert rc == 0, capsys.readouterr().err
    assert_same_output(tmp_path / "local", tmp_path / "dask")
    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert manifest["counts"]["written"] == 800
    assert {name: sub["videos"] for name, sub in manifest["subsets"].items()} == {
        "training": 560, "validation": 120, "test": 120}
