"""End-to-end runs of ``python -m beam.extract_features`` on the local runner.

Videos are written by the tests with PyAV; the cheap encoder is a Keras 3 model
exported as a SavedModel whose features are the clip's mean colour (golden values).
"""

import glob
import json
import os

import numpy as np
import pytest

pytest.importorskip("av")

from beam.extract_features import main, run  # noqa: E402
from beam.video_decode import DecodeOptions, iter_snippets  # noqa: E402
from tags_tf.testing import (  # noqa: E402
    FRAME_SIZE as SIZE,  # decode to 16 x 16
    SNIPPET_FRAMES as N,  # frames per snippet
    export_mean_colour_model,
    frame_image,
    garbage,
    mean_colour_features,
    truncate,
    write_video,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    videos = root / "videos"
    videos.mkdir()
    write_video(videos / "alpha.mp4", num_frames=30, fps=10)  # 3.0 s -> 4 snippets (last padded)
    write_video(videos / "v_beta.mp4", num_frames=40, fps=20, width=48, height=64, codec="libx264")  # 2.0 s -> 5
    fs = write_video(root / "fs.mp4", num_frames=30, fps=10, faststart=True)
    truncate(fs, videos / "cut_tail.mp4", 0.5)  # opens, decodes about half of the 30 frames
    truncate(videos / "alpha.mp4", videos / "cut_head.mp4", 0.6)  # index at the end: does not open
    garbage(videos / "noise.mp4")
    model = export_mean_colour_model(root / "mean_colour", frames=N, height=SIZE, width=SIZE)
    return {"root": root, "videos": str(videos), "encoder": f"savedmodel:{model}"}


def read_shards(out_dir, feature_dim, compression=""):
    """{video_id: parsed dict} through tf.data and tags_tf.data.features.parse_example."""
    import tensorflow as tf

    from tags_tf.data.features import parse_example

    files = sorted(glob.glob(os.path.join(out_dir, "*.tfrecord*")))
    ds = tf.data.TFRecordDataset(files, compression_type=compression).map(lambda s: parse_example(s, feature_dim))
    return {ex["video_id"].numpy().decode(): {k: v.numpy() for k, v in ex.items()} for ex in ds}


def expected_features(path):
    """What the pipeline must store: the mean-colour features of each decoded snippet."""
    opts = DecodeOptions(snippet_frames=N, snippet_stride=N, height=SIZE, width=SIZE)
    snippets = list(iter_snippets(path, opts))
    clips = np.stack([s.frames for s in snippets])  # (T, N, H, W, 3)
    return mean_colour_features(clips), np.array([s.center_time for s in snippets])


def rejected(out_dir):
    with open(os.path.join(out_dir, "rejected.jsonl")) as f:
        return {r["video_id"]: r for r in map(json.loads, f)}


def test_inference_shards_without_annotations(data, tmp_path):
    out = str(tmp_path / "out")
    manifest = run([
        "--videos", data["videos"], "--encoder", data["encoder"], "--output", out,
        "--snippet_frames", str(N), "--snippet_stride", str(N), "--batch_size", "3",
    ])
    c = manifest["counts"]
    assert (c["input"], c["written"], c["rejected_total"]) == (5, 2, 3)
    assert c["rejected"] == {"truncated": 1, "unreadable_container": 2}
    assert manifest["feature_dim"] == 4 and manifest["class_names"] == []
    assert manifest["subsets"]["inference"]["videos"] == 2
    assert manifest["num_snippets"] == {"min": 4, "max": 5}
    rej = rejected(out)
    assert set(rej) == {"cut_tail", "cut_head", "noise"}
    assert "of 30 announced frames" in rej["cut_tail"]["detail"]

    shards = read_shards(out, 4)
    assert set(shards) == {"alpha", "v_beta"}
    for vid, duration, t in [("alpha", 3.0, 4), ("v_beta", 2.0, 5)]:
        ex = shards[vid]
        feats, times = expected_features(os.path.join(data["videos"], vid + ".mp4"))
        assert ex["features"].shape == (t, 4) and ex["subset"] == b"inference"
        np.testing.assert_allclose(ex["features"], feats, rtol=1e-4, atol=1e-6)  # float32 means
        np.testing.assert_allclose(ex["snippet_times"], times, atol=1e-6)
        assert ex["duration"] == pytest.approx(duration)
        assert ex["segments"].shape == (0, 2)
    # Golden from the synthetic source frames (before the codec): crop mode keeps the
    # centre ~52 of 64 columns (64x48 -> 21x16 -> 16x16); mean colour of frames 0-7.
    src = np.stack([frame_image(i, 64, 48)[:, 6:58] for i in range(N)]) / 255.0  # (N, H, W', 3)
    np.testing.assert_allclose(shards["alpha"]["features"][0, :3], src.mean(axis=(0, 1, 2)), atol=0.02)
    assert shards["alpha"]["features"][1, 0] > shards["alpha"]["features"][0, 0]  # red ramps up


def test_annotated_shards_with_gzip(data, tmp_path):
    ann = {
        "version": "1.3",
        "taxonomy": [],
        "database": {
            "alpha": {"subset": "training", "duration": 3.0, "annotations": [
                {"segment": [0.5, 1.5], "label": "run"}, {"segment": [2.5, 4.0], "label": "jump"}]},
            "beta": {"subset": "validation", "duration": 2.0, "annotations": [{"segment": [0.2, 1.0], "label": "run"}]},
            "cut_tail": {"subset": "training", "duration": 3.0, "annotations": []},
            "gone": {"subset": "validation", "duration": 5.0, "annotations": []},
        },
    }
    ann_path = tmp_path / "gt.json"
    ann_path.write_text(json.dumps(ann))
    out = str(tmp_path / "out")
    manifest = run([
        "--videos", os.path.join(data["videos"], "*.mp4"), "--annotations", str(ann_path),
        "--encoder", data["encoder"], "--output", out, "--snippet_frames", str(N),
        "--snippet_stride", str(N), "--compression", "gzip", "--num_shards", "2",
    ])
    c = manifest["counts"]
    # inputs: 4 annotated videos + 2 files no annotation names (cut_head, noise)
    assert (c["input"], c["written"]) == (6, 2)
    assert c["rejected"] == {"missing_video": 1, "not_in_annotations": 2, "truncated": 1}
    assert c["clipped_segments"] == 1 and c["dropped_segments"] == 0
    assert manifest["class_names"] == ["jump", "run"]
    assert sorted(manifest["subsets"]) == ["training", "validation"]
    assert len(manifest["subsets"]["training"]["files"]) == 2
    assert all(f.endswith(".tfrecord.gz") for f in manifest["subsets"]["training"]["files"])

    shards = read_shards(out, 4, compression="GZIP")
    alpha, beta = shards["alpha"], shards["beta"]  # "beta" was found as v_beta.mp4
    assert alpha["subset"] == b"training" and beta["subset"] == b"validation"
    np.testing.assert_allclose(alpha["segments"], [[0.5, 1.5], [2.5, 3.0]])  # clipped to the 3 s video
    assert alpha["labels"].tolist() == [1, 0]
    np.testing.assert_allclose(beta["segments"], [[0.2, 1.0]])
    feats, _ = expected_features(os.path.join(data["videos"], "v_beta.mp4"))
    np.testing.assert_allclose(beta["features"], feats, rtol=1e-4, atol=1e-6)


def test_keras_app_encoder_end_to_end(data, tmp_path):
    out = str(tmp_path / "out")
    manifest = run([
        "--videos", os.path.join(data["videos"], "alpha.mp4"), "--output", out,
        "--encoder", "keras_app:mobilenet_v3_small:size=32", "--allow_random_init",
        "--snippet_frames", "4", "--snippet_stride", "8", "--fps", "5",
    ])
    assert manifest["counts"]["written"] == 1 and manifest["feature_dim"] == 576
    assert manifest["encoder"]["random_init"] is True
    ex = read_shards(out, 576)["alpha"]
    # 3 s at 5 fps = 15 frames; windows of 4 every 8 frames start at 0 and 8.
    assert ex["features"].shape == (2, 576) and np.all(np.isfinite(ex["features"]))
    np.testing.assert_allclose(ex["snippet_times"], [0.4, 2.0], atol=1e-6)


def test_movinet_encoder_end_to_end(data, tmp_path):
    out = str(tmp_path / "out")
    manifest = run([
        "--videos", os.path.join(data["videos"], "v_beta.mp4"), "--output", out,
        "--encoder", "movinet:a0:size=32", "--allow_random_init", "--snippet_frames", "8", "--snippet_stride", "8",
    ])
    assert manifest["counts"]["written"] == 1 and manifest["feature_dim"] == 480
    ex = read_shards(out, 480)["v_beta"]
    assert ex["features"].shape == (5, 480) and np.all(np.isfinite(ex["features"]))


def test_cli_errors_are_one_line(data, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["--videos", data["videos"], "--encoder", "movinet:a0", "--output", out]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint=PATH given" in err and "--allow_random_init" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--videos", str(empty), "--encoder", data["encoder"], "--output", out, "--snippet_frames", str(N)]
    assert main(args) == 2
    assert "no video files found" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text("{}")
    args = ["--videos", data["videos"], "--encoder", data["encoder"], "--output", str(tmp_path / "old"),
            "--snippet_frames", str(N)]
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["--videos", data["videos"], "--encoder", data["encoder"], "--output", out]) == 2
    assert "clips of 8 frames but --snippet_frames is 16" in capsys.readouterr().err
