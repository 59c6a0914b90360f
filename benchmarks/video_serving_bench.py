"""Serving from video vs the offline path, on this machine's cores.

For one generated video (libx264, ``--size``, ``--fps``, ``--seconds``) and MoViNet-A0 at
172 x 172 (random init saved to a checkpoint: speed does not depend on the weights),
snippets of 16 frames every 16 at the native rate, a random-init TAGS model of the
``anet`` preset over its 480-d features:

* offline: ``beam.extract_features`` (local runner: PyAV decode, encoder, shards), then
  ``detect`` over gRPC on the shard's features -- what a deployment does today;
* served: ``serving.client``'s video path against ``serving.dev_server`` in this
  process (same cores): decode + JPEG here, ``encode_jpeg`` chunks (two in flight),
  ``detect``; and the same with raw frames (``encode``).

Prints seconds of video per wall second for each and the ratio to offline, then where
the served time goes, measured one request at a time (the end-to-end rows keep two in
flight while the next chunk decodes): client decode (+ JPEG), encode compute (the same
chunks run on the loaded SavedModel without gRPC), transport (gRPC wall minus that
compute); and how far the JPEG path's features are from the exact ones.

    python benchmarks/video_serving_bench.py [--seconds 60] [--fps 25] [--size 320x240]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing.

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", default="320x240", help="WxH of the generated video")
    args = p.parse_args(argv)
    width, height = map(int, args.size.split("x"))

    import tensorflow as tf

    from beam.encoders import build_encoder
    from beam.extract_features import run as extract
    from serving import signatures
    from serving.dev_server import DevServer
    from serving.export import export_saved_model
    from serving.grpc_client import DetectionClient
    from serving.testing import InProcessClient
    from serving.video_client import encode_video, fetch_layout
    from serving.video_export import build_video_endpoints, manifest_of_run
    from tags_tf.config import get_config
    from tags_tf.data import features as schema
    from tags_tf.testing import build_model, write_video

    tmp = Path(tempfile.mkdtemp(prefix="video_bench_"))
    (tmp / "videos").mkdir()
    video = write_video(tmp / "videos" / "clip.mp4", num_frames=int(args.seconds * args.fps), fps=args.fps,
                        width=width, height=height, codec="libx264")
    start = time.perf_counter()
    enc = build_encoder("movinet:a0", 16, allow_random_init=True)
    build_s = time.perf_counter() - start
    tf.train.Checkpoint(model=enc.model).write(str(tmp / "ckpt" / "ckpt-1"))
    spec = f"movinet:a0:checkpoint={tmp / 'ckpt' / 'ckpt-1'}"
    print(f"video: {args.seconds:.0f} s, {width}x{height} @ {args.fps} fps (libx264); encoder MoViNet-A0 @172, "
          f"16 frames every 16; {os.cpu_count()} CPUs; MoViNet build {build_s:.1f} s")

    # Offline: extract_features, then detect over gRPC.
    start = time.perf_counter()
    manifest = extract(["--videos", str(tmp / "videos"), "--encoder", spec, "--output", str(tmp / "shards")])
    extract_s = time.perf_counter() - start
    record = next(iter(tf.data.TFRecordDataset(sorted(map(str, (tmp / "shards").glob("*.tfrecord*"))))))
    example = schema.example_to_numpy(record.numpy())
    cfg = get_config("anet", {"model.feature_dim": manifest["feature_dim"]})
    model = build_model(cfg, 0)
    man, man_path = manifest_of_run(None, str(tmp / "shards"))
    endpoints = build_video_endpoints(spec, man, man_path, cfg)
    start = time.perf_counter()
    export_saved_model(model, cfg, tmp / "models" / "tags" / "1", video=endpoints)
    export_s = time.perf_counter() - start

    rows, parts = [], {}
    with DevServer("tags", tmp / "models" / "tags") as srv:
        srv.wait_until_available(timeout=600)
        with DetectionClient(srv.address, timeout=600) as client:
            layout = fetch_layout(client)
            start = time.perf_counter()
            client.detect(example[schema.FEATURES], float(example[schema.DURATION]))
            detect_s = time.perf_counter() - start
            rows.append(("offline: extract_features + detect", extract_s + detect_s))
            feats = {}
            for label, raw in (("served: encode_jpeg + detect", False), ("served: encode (raw) + detect", True)):
                start = time.perf_counter()
                encoded = encode_video(client, video, layout, raw=raw, progress=False)
                client.detect(encoded.features, encoded.duration)
                rows.append((label, time.perf_counter() - start))
                feats[raw] = encoded.features
                # The parts, one request at a time: over gRPC, then the same chunks in-process.
                serial = encode_video(client, video, layout, raw=raw, progress=False, in_flight=1)
                local = encode_video(InProcessClient(srv.model.servable), video, layout, raw=raw, progress=False,
                                     in_flight=1)
                parts[label] = {"decode": serial.seconds["decode"], "encode compute": local.seconds["encode"],
                                "transport": serial.seconds["encode"] - local.seconds["encode"],
                                "chunks": encoded.chunks, "MB sent": encoded.payload_bytes / 2**20}
    want = example[schema.FEATURES]
    print(f"export with the encoder: {export_s:.1f} s; detect alone: {detect_s * 1e3:.0f} ms; "
          f"{want.shape[0]} snippets")
    print(f"\n{'path':<36}{'wall s':>8}{'video s / wall s':>18}{'vs offline':>12}")
    for label, wall in rows:
        print(f"{label:<36}{wall:>8.1f}{args.seconds / wall:>18.2f}{rows[0][1] / wall:>11.2f}x")
    print(f"\n{'served path, one request at a time':<36}{'decode':>8}{'encode':>8}{'transport':>10}{'chunks':>8}"
          f"{'MB sent':>9}  (seconds)")
    for label, d in parts.items():
        print(f"{label:<36}{d['decode']:>8.1f}{d['encode compute']:>8.1f}{d['transport']:>10.2f}"
              f"{d['chunks']:>8d}{d['MB sent']:>9.1f}")
    raw_err = float(np.abs(feats[True] - want).max())
    jpeg_err = float(np.abs(feats[False] - want).max() / np.abs(want).max())
    print(f"\nfeatures vs extract_features: raw max |diff| {raw_err:.1e}; JPEG (q=90) max |diff| / max |x| "
          f"{jpeg_err:.3f}, correlation {np.corrcoef(feats[False].ravel(), want.ravel())[0, 1]:.4f}")
    print(json.dumps({"rows": rows, "parts": parts, "raw_err": raw_err, "jpeg_rel_err": jpeg_err}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
