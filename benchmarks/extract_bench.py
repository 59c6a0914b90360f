"""Raw-video feature extraction throughput (CPU or whatever TF sees).

Prints, for synthetic videos written with PyAV:
  1. decode: frames/s of ``beam.video_decode.iter_snippets`` at the native size and
     resized to the encoders' input (crop mode), snippet-level realtime factor;
  2. encoders: clips/s (16 frames each) of MoViNet-A0 @172 and MobileNetV3-Small @224
     (random init: speed only) at batch sizes 1 and 8;
  3. pipeline: videos/s of ``beam.extract_features`` (DirectRunner/FnApiRunner, tiny
     mean-colour SavedModel encoder) vs a plain single-process loop doing the same
     decode -> encode -> make_example -> TFRecord, and their ratio (Beam overhead);
     then the same job on Beam's DaskRunner against a dask.distributed LocalCluster of
     N worker processes (1 thread each, loopback only, no dashboard; cluster start-up
     not timed) for each N of ``--dask_workers``: "cold" is the first job on the
     cluster (the workers' first TensorFlow import inside), "warm" the same job again
     on the same workers; with the ratios to the local runner.

    python benchmarks/extract_bench.py [--quick] [--sections decode,encoders,pipeline]
        [--num_videos N] [--seconds S] [--dask_workers 1,2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing.


def _write(path, seconds, fps, width, height):
    from tags_tf.testing import write_video

    return write_video(path, num_frames=int(seconds * fps), fps=fps, width=width, height=height, codec="libx264")


def bench_decode(tmp, seconds):
    from beam.video_decode import DecodeOptions, iter_snippets

    path = _write(os.path.join(tmp, "dec.mp4"), seconds, 30, 320, 240)
    print(f"\n== decode: {seconds:.0f} s of 320x240 @30 fps (libx264) ==")
    print(f"{'output':<22}{'frames/s':>10}{'x realtime':>12}")
    for label, opts in [
        ("native 320x240", DecodeOptions(16, 16)),
        ("crop 172x172", DecodeOptions(16, 16, height=172, width=172)),
        ("crop 224x224", DecodeOptions(16, 16, height=224, width=224)),
        ("crop 224 @ 15 fps", DecodeOptions(16, 16, fps=15, height=224, width=224)),
    ]:
        t = time.perf_counter()
        frames = sum(s.num_real_frames for s in iter_snippets(path, opts))
        dt = time.perf_counter() - t
        print(f"{label:<22}{frames / dt:>10.0f}{seconds / dt:>12.1f}")


def bench_encoders(repeats):
    from beam.encoders import build_encoder

    print("\n== encoders: 16-frame clips (random init, speed only) ==")
    print(f"{'encoder':<40}{'D':>6}{'B':>4}{'clips/s':>10}{'frames/s':>10}")
    for spec, sizes in [("movinet:a0:fast_conv=false", (1,)), ("movinet:a0", (1, 8)),
                        ("keras_app:mobilenet_v3_small", (1, 8))]:
        enc = build_encoder(spec, 16, allow_random_init=True)
        for b in sizes:
            x = np.random.default_rng(0).integers(0, 256, (b, 16, enc.clip.height, enc.clip.width, 3), np.uint8)
            enc(x)  # warm-up (tracing)
            t = time.perf_counter()
            reps = 1 if "fast_conv=false" in spec else repeats  # the XLA path takes seconds a clip
            for _ in range(reps):
                enc(x)
            rate = reps * b / (time.perf_counter() - t)
            print(f"{spec:<40}{enc.feature_dim:>6}{b:>4}{rate:>10.1f}{rate * 16:>10.0f}")


def _plain_loop(files, encoder_spec, out_path):
    """The same work without Beam: decode -> encode (batches of 8) -> example -> TFRecord."""
    import tensorflow as tf

    from beam.encoders import build_encoder
    from beam.video_decode import DecodeOptions, iter_snippets, probe
    from tags_tf.data.features import make_example, serialize

    enc = build_encoder(encoder_spec, 16)
    opts = DecodeOptions(16, 16, height=enc.clip.height, width=enc.clip.width)
    with tf.io.TFRecordWriter(out_path) as w:
        for path in files:
            info = probe(path)
            snippets = list(iter_snippets(path, opts, info=info))
            clips = np.stack([s.frames for s in snippets])
            feats = np.concatenate([enc(clips[i : i + 8]) for i in range(0, len(clips), 8)])
            ex = make_example(os.path.basename(path)[:-4], "inference", info.duration, feats,
                              snippet_times=np.array([s.center_time for s in snippets]))
            w.write(serialize(ex))


def _run_on_dask(run, args, output, workers) -> tuple[float, float]:
    """Seconds of ``run`` on the DaskRunner, (cold, warm): the first job on a fresh
    LocalCluster of ``workers`` processes, then the same job again on it."""
    import logging

    from dask.distributed import LocalCluster

    times = []
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        logging.getLogger("distributed").setLevel(logging.ERROR)
        dask = ["--runner", "dask", f"--dask_client_address={cluster.scheduler_address}"]
        for suffix in ("", "_warm"):
            t = time.perf_counter()
            run(args + ["--output", output + suffix] + dask)
            times.append(time.perf_counter() - t)
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # shutdown noise only
    return times[0], times[1]


def bench_pipeline(tmp, num_videos, seconds, dask_workers=()):
    from beam.extract_features import run
    from tags_tf.testing import export_mean_colour_model

    vdir = os.path.join(tmp, "videos")
    os.makedirs(vdir)
    files = [_write(os.path.join(vdir, f"v{i:03d}.mp4"), seconds, 25, 160, 120) for i in range(num_videos)]
    model = export_mean_colour_model(os.path.join(tmp, "sm"), frames=16, height=112, width=112)
    spec = f"savedmodel:{model}"
    print(f"\n== pipeline: {num_videos} videos of {seconds:.0f} s 160x120 @25 fps, mean-colour encoder @112 ==")
    t = time.perf_counter()
    _plain_loop(files, spec, os.path.join(tmp, "plain.tfrecord"))
    plain = time.perf_counter() - t
    job = ["--videos", vdir, "--encoder", spec]
    t = time.perf_counter()
    run(job + ["--output", os.path.join(tmp, "out")])
    beam_s = time.perf_counter() - t
    print(f"{'runner':<28}{'s':>8}{'videos/s':>10}  ratio")
    print(f"{'plain loop':<28}{plain:>8.1f}{num_videos / plain:>10.2f}")
    print(f"{'beam (FnApiRunner)':<28}{beam_s:>8.1f}{num_videos / beam_s:>10.2f}  {plain / beam_s:.2f} x plain")
    for k in dask_workers:
        cold, warm = _run_on_dask(run, job, os.path.join(tmp, f"dask{k}"), k)
        for label, dask_s in ((f"beam (Dask {k}w, cold)", cold), (f"beam (Dask {k}w, warm)", warm)):
            print(f"{label:<28}{dask_s:>8.1f}{num_videos / dask_s:>10.2f}  {beam_s / dask_s:.2f} x local runner")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--sections", default="decode,encoders,pipeline", help="comma-separated subset to run")
    ap.add_argument("--num_videos", type=int, default=None, help="pipeline videos (default 16, --quick 4)")
    ap.add_argument("--seconds", type=float, default=None, help="pipeline video length (default 8, --quick 4)")
    ap.add_argument("--dask_workers", default="1,2", help="LocalCluster sizes for the Dask rows; '' = none")
    args = ap.parse_args()
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    dask_workers = [int(x) for x in args.dask_workers.split(",") if x.strip()]
    if dask_workers and importlib.util.find_spec("dask.distributed") is None:
        print("dask.distributed is not installed (pip install -e '.[dask]'): no Dask rows")
        dask_workers = []
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        if "decode" in sections:
            bench_decode(tmp, 4 if args.quick else 20)
        if "encoders" in sections:
            bench_encoders(2 if args.quick else 5)
        if "pipeline" in sections:
            num_videos = args.num_videos or (4 if args.quick else 16)
            seconds = args.seconds or (4 if args.quick else 8)
            bench_pipeline(tmp, num_videos, seconds, dask_workers)


if __name__ == "__main__":
    main()
