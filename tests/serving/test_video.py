"""Serving from video: ``serving.export --video-encoder`` + ``serving.client --video``.

One generated mp4 (63 frames at 10 fps, resampled to 5 fps: 32 frames), snippets of 4
frames every 3 (overlapping windows and a padded last snippet), a random-init
MobileNetV3-Small at 32 x 32 saved to a weights file so that ``beam.extract_features``
and the export load the same weights. The served ``encode`` over several chunks must
give the shards' features, and ``serving.client --video`` the detections of ``detect``
on them.
"""

import json
import struct

import grpc
import numpy as np
import pytest

pytest.importorskip("av")

from beam.extract_features import run as extract  # noqa: E402
from beam.video_decode import DecodeOptions, open_frames, window_frames  # noqa: E402
from serving import batch_client, signatures, video_client  # noqa: E402
from serving import export as export_cli  # noqa: E402
from serving import testing  # noqa: E402
from serving.dev_server import DevServer  # noqa: E402
from serving.grpc_client import ClientInputError, DetectionClient, ServingError  # noqa: E402
from serving.video_layout import VideoLayout  # noqa: E402
from tags_tf import testing as tags_testing  # noqa: E402
from tags_tf.data import features as schema  # noqa: E402
from tags_tf.testing import garbage, truncate, write_video  # noqa: E402

N, S, FPS = 4, 3, 5.0


def _layout(n, s, pad_last=True, **kw):
    return VideoLayout("keras_app:x", 8, n, s, None, 2, 2, pad_last=pad_last, **kw)


# ------------------------------------------------------------------ chunking (pure)


@pytest.mark.parametrize("n,s", [(4, 4), (4, 3), (4, 1), (3, 5), (16, 16)])
@pytest.mark.parametrize("pad_last", [True, False])
def test_chunks_hold_exactly_the_snippets_of_extract_features(n, s, pad_last):
    """Every frame count and chunk limit: the windows of the chunks (N every S inside each
    chunk) are beam.video_decode's snippets, padded last snippet included."""
    layout = _layout(n, s, pad_last)
    for frames in range(0, 40):
        want = [w + [w[-1]] * (n - len(w)) for w in window_frames(range(frames), n, s, pad_last)]
        for limit, most in ((n, None), (n + s, None), (2 * n + 3 * s, None), (1000, None), (1000, 2)):
            got = []  # limit: bytes, one per frame; most: snippets per chunk
            for chunk, k in video_client.iter_chunks(range(frames), layout, limit, lambda f: 1, most):
                assert len(chunk) == layout.chunk_frames(k) <= limit and k <= (most or k)
                got += [chunk[i * s: i * s + n] for i in range(k)]
            assert got == want, (frames, limit)
            assert len(got) == layout.num_snippets(frames)


def test_a_snippet_above_the_chunk_limit_is_refused():
    with pytest.raises(ClientInputError, match="one snippet .4 frames. is 8 bytes, above the 7-byte chunk limit"):
        list(video_client.iter_chunks(range(10), _layout(4, 4), 7, lambda f: 2))


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("video")
    videos = root / "videos"
    videos.mkdir()
    clip = write_video(videos / "clip.mp4", num_frames=63, fps=10, width=64, height=48)
    model = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                pooling="avg")
    weights = root / "encoder.weights.h5"
    model.save_weights(str(weights))
    spec = f"keras_app:mobilenet_v3_small:size=32:weights={weights}"
    shards = root / "shards"
    manifest = extract(["--videos", str(videos), "--encoder", spec, "--output", str(shards), "--snippet_frames",
                        str(N), "--snippet_stride", str(S), "--fps", str(FPS)])
    import tensorflow as tf

    record = next(iter(tf.data.TFRecordDataset(sorted(map(str, shards.glob("*.tfrecord*"))))))
    example = schema.example_to_numpy(record.numpy())
    cfg = testing.tiny_config(**{"model.feature_dim": manifest["feature_dim"]})
    tags = tags_testing.build_model(cfg, 0)
    run_dir = root / "run"
    run_dir.mkdir()
    tags.save(str(run_dir / "best.keras"))
    (run_dir / "config.json").write_text(cfg.to_json())
    (run_dir / "class_names.json").write_text(json.dumps(tags_testing.class_names(cfg)))
    base = root / "models" / "tags"
    args = ["--workdir", str(run_dir), "--manifest", str(shards), "--video-encoder", spec]
    assert export_cli.main(args + ["--output", str(base / "1")]) == 0
    with DevServer("tags", base) as srv:
        srv.wait_until_available(timeout=120)
        yield {"root": root, "clip": clip, "spec": spec, "shards": shards, "example": example, "model": tags,
               "cfg": cfg, "server": srv, "version": base / "1", "export_args": args}


def _client(served, **kw):
    return DetectionClient(served["server"].address, timeout=60, **kw)


def _scale(x):
    return float(np.abs(x).max())


def test_the_layout_is_the_manifests(served):
    with _client(served) as client:
        layout = video_client.fetch_layout(client)
    assert (layout.snippet_frames, layout.snippet_stride, layout.fps) == (N, S, FPS)
    assert (layout.height, layout.width, layout.encoder) == (32, 32, "keras_app:mobilenet_v3_small")
    saved = json.loads((served["version"] / signatures.EXTRA_DIR / signatures.VIDEO_LAYOUT_FILE).read_text())
    assert saved["encoder_spec"] == served["spec"] and saved["feature_dim"] == layout.feature_dim == 576


def test_served_encode_over_chunks_equals_extract_features(served):
    want = served["example"][schema.FEATURES]  # (T, D) from beam.extract_features
    assert want.shape[0] == 11  # 32 frames: 10 full windows (the last ends at 31) + the padded last
    with _client(served) as client:
        layout = video_client.fetch_layout(client)
        enc = video_client.encode_video(client, served["clip"], layout, raw=True, chunk_bytes=31_000,
                                        progress=False)
    assert enc.chunks >= 3  # a chunk holds 3 snippets (10 frames of 3,072 bytes)
    assert enc.features.shape == want.shape
    np.testing.assert_allclose(enc.features, want, rtol=0, atol=1e-5 * _scale(want))
    assert enc.duration == pytest.approx(float(served["example"][schema.DURATION]))


def test_jpeg_chunks_are_close_to_raw(served):
    want = served["example"][schema.FEATURES]
    with _client(served) as client:
        layout = video_client.fetch_layout(client)
        enc = video_client.encode_video(client, served["clip"], layout, chunk_bytes=20_000, progress=False)
    assert enc.chunks >= 2 and enc.features.shape == want.shape
    assert np.corrcoef(enc.features.ravel(), want.ravel())[0, 1] > 0.99


def test_client_video_detections_equal_offline_detect(served, tmp_path, capsys):
    out = tmp_path / "out.json"
    code = batch_client.main(["--server", served["server"].address, "--video", served["clip"], "--raw-frames",
                              "--chunk-bytes", "31000", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    ex = served["example"]
    ref = tags_testing.in_process_detect(served["model"], ex[schema.FEATURES][None],
                                         np.array([ex[schema.DURATION]], np.float32))
    n = int(ref[signatures.NUM_DETECTIONS][0])
    got = json.loads(out.read_text())["results"]["clip"]
    assert len(got) == n > 0
    names = tags_testing.class_names(served["cfg"])
    for g, seg, score, cls in zip(got, ref[signatures.DETECTION_SEGMENTS][0], ref[signatures.DETECTION_SCORES][0],
                                  ref[signatures.DETECTION_CLASSES][0]):
        assert g["label"] == names[cls]
        np.testing.assert_allclose(g["segment"], seg, atol=1e-4)
        assert g["score"] == pytest.approx(float(score), abs=1e-5)
    assert "clip" in capsys.readouterr().out


def test_detect_video_equals_detect_on_encoded_jpegs(served):
    with _client(served) as client:
        layout = video_client.fetch_layout(client)
        with open_frames(served["clip"], layout.decode_options()) as (_, frames):
            jpegs = [video_client.jpeg(img) for _, img in frames]
        duration = np.array([6.3], np.float32)
        one = client.predict({signatures.JPEG_FRAMES: np.array([jpegs], object), signatures.DURATION: duration},
                             signatures.DETECT_VIDEO)
        padded = jpegs + [jpegs[-1]] * layout.padding_frames(len(jpegs))
        feats = client.predict({signatures.JPEG_FRAMES: np.array([padded], object)},
                               signatures.ENCODE_JPEG)[signatures.SNIPPET_FEATURES]
        two = client.predict({signatures.FEATURES: feats, signatures.DURATION: duration}, signatures.DETECT)
    for key in signatures.DETECT_OUTPUTS:
        if one[key].dtype.kind == "f":
            np.testing.assert_allclose(one[key], two[key], atol=1e-5)
        else:
            np.testing.assert_array_equal(one[key], two[key])


def test_frames_of_another_size_are_resized_in_the_graph(served):
    """Frames at twice the layout's size (each pixel a 2 x 2 block) downscale exactly."""
    with _client(served) as client:
        layout = video_client.fetch_layout(client)
        with open_frames(served["clip"], layout.decode_options()) as (_, frames):
            imgs = np.stack([img for _, (_, img) in zip(range(8), frames)])  # (8, 32, 32, 3)
        exact = client.predict({signatures.FRAMES: imgs[None]}, signatures.ENCODE)[signatures.SNIPPET_FEATURES]
        big = imgs.repeat(2, axis=1).repeat(2, axis=2)  # (8, 64, 64, 3)
        resized = client.predict({signatures.FRAMES: big[None]}, signatures.ENCODE)[signatures.SNIPPET_FEATURES]
        wide = np.zeros((1, 8, 40, 90, 3), np.uint8)  # crop mode: any aspect ratio
        other = client.predict({signatures.FRAMES: wide}, signatures.ENCODE)[signatures.SNIPPET_FEATURES]
    assert exact.shape == resized.shape == other.shape == (1, 2, 576)  # windows at 0 and 3 of 8 frames
    np.testing.assert_allclose(resized, exact, rtol=0, atol=1e-5 * _scale(exact))


# ------------------------------------------------------------------ bad videos, bad requests


def _bad_videos(root):
    import av

    bad = root / "bad"
    bad.mkdir(exist_ok=True)
    fs = write_video(root / "fs.mp4", num_frames=40, fps=10, faststart=True)
    truncate(fs, bad / "truncated.mp4", 0.5)
    with av.open(str(bad / "zero_frames.mp4"), "w") as container:  # a video track without a frame
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(bad / "audio_only.mp4"), "w") as container:  # no video codec at all
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    garbage(bad / "noise.mp4")
    return {p.stem: str(p) for p in bad.iterdir()}


def test_broken_videos_get_one_line_errors_and_the_server_keeps_serving(served, capsys):
    bad = _bad_videos(served["root"])
    code = batch_client.main(["--server", served["server"].address, "--video", *bad.values(), served["clip"]])
    out, err = capsys.readouterr()
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == len(bad) and "Traceback" not in err
    reasons = {name: next(ln for ln in lines if ln.startswith(f"error: {name}: ")) for name in bad}
    assert "truncated" in reasons["truncated"] or "decode_error" in reasons["truncated"]
    # FFmpeg drops a track without samples: the file reads as having no video stream.
    assert any(r in reasons["zero_frames"] for r in ("no_frames", "no_video_stream"))
    assert "no_video_stream" in reasons["audio_only"]
    assert "unreadable_container" in reasons["noise"]
    assert "clip" in out  # the good video after them was detected


def test_oversized_and_undecodable_chunks_are_refused_before_decoding(served):
    limit = 2 * 1024 * 1024
    with _client(served, retries=0) as client:
        with pytest.raises(ServingError) as e:  # garbage bytes over the limit: the size check answers
            client.predict({signatures.JPEG_FRAMES: np.array([[b"x" * (limit // 2 + 1)] * 2], object)},
                           signatures.ENCODE_JPEG)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and f"limit of {limit}" in e.value.details
        with pytest.raises(ServingError) as e:
            client.predict({signatures.FRAMES: np.zeros([1, 700, 32, 32, 3], np.uint8)}, signatures.ENCODE)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and f"limit of {limit}" in e.value.details
        with pytest.raises(ServingError) as e:  # a 1 x 1 JPEG whose header declares 30000 x 30000
            client.predict({signatures.JPEG_FRAMES: np.array([[_huge_header_jpeg()]], object)},
                           signatures.ENCODE_JPEG)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "pixels" in e.value.details
        with pytest.raises(ServingError) as e:
            client.predict({signatures.JPEG_FRAMES: np.array([[b"not a jpeg"]], object)}, signatures.ENCODE_JPEG)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        ok = client.predict({signatures.FRAMES: np.zeros([1, 4, 32, 32, 3], np.uint8)}, signatures.ENCODE)
    assert ok[signatures.SNIPPET_FEATURES].shape == (1, 1, 576)


def _huge_header_jpeg() -> bytes:
    data = bytearray(video_client.jpeg(np.zeros((1, 1, 3), np.uint8)))
    i = data.index(b"\xff\xc0")  # baseline SOF0: length (2), precision (1), height (2), width (2)
    data[i + 5: i + 9] = struct.pack(">HH", 30000, 30000)
    return bytes(data)


# ------------------------------------------------------------------ the export's checks


def test_export_refuses_an_encoder_that_differs_from_the_manifest(served, tmp_path, capsys):
    args, spec = served["export_args"], served["spec"]
    cases = [
        (["--snippet-frames", "8"], "snippet frames 8 differs from the 4"),
        (["--fps", "10"], "frame rate 10.0 differs from the 5.0"),
        ([], "frame height 48 differs from the 32", spec.replace("size=32", "size=48")),
        ([], "encoder keras_app:mobilenet_v3_large differs", spec.replace("small", "large")),
        (["--allow-random-init"], "feature width 432 differs from the 576",
         "keras_app:mobilenet_v3_small:size=32:alpha=0.75"),
    ]
    for i, (extra, message, *other) in enumerate(cases):
        argv = list(args) + extra + ["--output", str(tmp_path / str(i + 1))]
        if other:
            argv[argv.index("--video-encoder") + 1] = other[0]
        assert export_cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / str(i + 1)).exists()


def test_export_refuses_shards_of_precomputed_features(served, tmp_path, capsys):
    shards = tmp_path / "features"
    tags_testing.write_tiny_shards(shards)
    argv = list(served["export_args"])
    argv[argv.index("--manifest") + 1] = str(shards)
    assert export_cli.main(argv + ["--output", str(tmp_path / "1")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "records no video encoder" in err


def test_every_op_of_the_video_graph_is_stock(served):
    assert export_cli.unsupported_ops(export_cli.graph_op_types(served["version"])) == []


def test_decode_options_follow_the_layout():
    layout = VideoLayout("movinet:a0", 480, 16, 8, 12.5, 172, 172, "stretch", False)
    assert layout.decode_options() == DecodeOptions(16, 8, 12.5, 172, 172, "stretch", False)
    assert VideoLayout.from_json(layout.to_json()) == layout


@pytest.mark.slow
def test_movinet_the_default_encoder_serves_the_features_of_extract_features(tmp_path):
    """MoViNet-A0 (random init, saved as a checkpoint) at 32 x 32: stock ops only (its
    plain-TF convolutions are exported), and raw chunks give the shard's features to 1e-5.
    (The MobileNet tests above bound the difference by 1e-5 of the features' scale: a
    random-init MobileNetV3's features are ~1e-10, where an absolute 1e-5 would test nothing.)"""
    import tensorflow as tf

    from beam.encoders import build_encoder
    from serving.export import export_saved_model
    from serving.servable import Servable
    from serving.video_export import build_video_endpoints, manifest_of_run

    (tmp_path / "videos").mkdir()
    clip = write_video(tmp_path / "videos" / "clip.mp4", num_frames=50, fps=10, width=64, height=48)
    encoder = build_encoder("movinet:a0:size=32", 8, allow_random_init=True)
    tf.train.Checkpoint(model=encoder.model).write(str(tmp_path / "ckpt" / "ckpt-1"))
    spec = f"movinet:a0:size=32:checkpoint={tmp_path / 'ckpt' / 'ckpt-1'}"
    manifest = extract(["--videos", str(tmp_path / "videos"), "--encoder", spec, "--output", str(tmp_path / "shards"),
                        "--snippet_frames", "8", "--snippet_stride", "8"])
    record = next(iter(tf.data.TFRecordDataset(sorted(map(str, (tmp_path / "shards").glob("*.tfrecord*"))))))
    want = schema.example_to_numpy(record.numpy())[schema.FEATURES]  # (7, 480): 50 frames, the last padded
    cfg = testing.tiny_config(**{"model.feature_dim": manifest["feature_dim"]})
    man, path = manifest_of_run(None, str(tmp_path / "shards"))
    video = build_video_endpoints(spec, man, path, cfg)
    assert "fast_conv=true" in video.spec
    out = export_saved_model(tags_testing.build_model(cfg, 0), cfg, tmp_path / "models" / "1", video=video)
    assert export_cli.unsupported_ops(export_cli.graph_op_types(out)) == []
    local = testing.InProcessClient(Servable(out, 1))
    layout = video_client.fetch_layout(local)
    enc = video_client.encode_video(local, clip, layout, raw=True, chunk_bytes=3 * 8 * 32 * 32 * 3,
                                    progress=False)
    assert enc.chunks == 3 and enc.features.shape == want.shape == (7, 480)
    assert _scale(want) > 1.0  # MoViNet's features are O(1): 1e-5 is an absolute bound that means something
    np.testing.assert_allclose(enc.features, want, rtol=0, atol=1e-5)


def test_the_manifest_is_found_through_the_run_and_must_be_the_trained_one(served, tmp_path):
    from serving.video_export import manifest_of_run
    from serving.video_layout import LayoutError
    from tags_tf.data.schema import read_manifest
    from tags_tf.training.fingerprint import dataset_fingerprint

    shards = tmp_path / "shards"
    shards.mkdir()
    text = (served["shards"] / "manifest.json").read_text()
    (shards / "manifest.json").write_text(text)
    run = tmp_path / "run"
    run.mkdir()
    (run / "dataset.json").write_text(json.dumps(dataset_fingerprint(read_manifest(str(shards)), str(shards))))
    manifest, path = manifest_of_run(run, None)
    assert path == shards / "manifest.json" and manifest.feature_dim == 576
    (shards / "manifest.json").write_text(text.replace('"fps": 5.0', '"fps": 6.0'))
    with pytest.raises(LayoutError, match="is not the manifest this model was trained on"):
        manifest_of_run(run, None)
    with pytest.raises(LayoutError, match="give --manifest"):
        manifest_of_run(tmp_path, None)
