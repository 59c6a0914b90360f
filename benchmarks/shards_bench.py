"""build_shards throughput: Beam (local runner, Dask) vs a plain single-process loop.

    python benchmarks/shards_bench.py [--num_videos 2000] [--shapes 100x400,200x2048]
        [--num_shards 4] [--compression gzip] [--direct_num_workers 1] [--workdir DIR]
        [--dask_workers 1,2]

For every (T x D) shape it generates ANet-like inputs (ActivityNet-format annotations
with 1-3 segments per video, float32 .npy features), then times

  beam:  beam.build_shards.run_build_shards on the local runner (FnApiRunner; pipeline
         construction, startup, reading, validation, encoding, writing and the manifest
         are all inside the timing);
  loop:  the same work written as one Python loop: np.load -> the same checks ->
         features.make_example -> tags_tf.data.tfrecord's writer (the framing beam.shard_io
         streams too) into the same number of shards;
  dask N: run_build_shards on Beam's DaskRunner (``--runner dask``) against a
         dask.distributed LocalCluster of N worker processes (one thread each, loopback
         only, no dashboard), for every N of ``--dask_workers`` ("" skips them). The
         cluster is started before the timing; "cold" is the first job on it (the
         workers' first imports, TensorFlow, inside), "warm" a second identical job on
         the same workers (steady state of a long-lived cluster).

and prints videos/s of each and the ratios (beam / loop, dask / beam; > 1 means faster).
All write the same examples (checked on the record counts; the Beam runs also check the
records on disk, see beam.accounting.finalize_output).

The input-pipeline side of the issue (tf.data examples/s vs the model's training step)
is a different benchmark, kept with tags_tf/data (see benchmarks/ for input_bench).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing.


def make_inputs(root: str, num_videos: int, t: int, d: int, seed: int = 0) -> tuple[str, str]:
    """Writes annotations.json + features/<id>.npy; returns (annotation path, feature dir)."""
    rng = np.random.default_rng(seed)
    feat_dir = os.path.join(root, "features")
    os.makedirs(feat_dir, exist_ok=True)
    classes = [f"class_{i:03d}" for i in range(200)]
    db = {}
    for i in range(num_videos):
        vid = f"vid{i:06d}"
        duration = float(rng.uniform(10.0, 240.0))
        segs = []
        for _ in range(int(rng.integers(1, 4))):
            s = float(rng.uniform(0, duration * 0.9))
            e = s + float(rng.uniform(1.0, duration - s))
            segs.append({"segment": [s, e], "label": classes[rng.integers(200)]})
        db[vid] = {"subset": "training" if i % 4 else "validation", "duration": duration, "annotations": segs}
        np.save(os.path.join(feat_dir, vid + ".npy"), rng.standard_normal((t, d), dtype=np.float32))
    ann = os.path.join(root, "annotations.json")
    with open(ann, "w") as f:
        json.dump({"version": "1.3", "taxonomy": [], "database": db}, f)
    return ann, feat_dir


def run_loop(ann_path: str, feat_dir: str, out_dir: str, num_shards: int, compression: str) -> int:
    """The single-process baseline: same checks, same examples, round-robin shards."""
    from beam import build_shards_dofns
    from beam.segments import clean_segments
    from tags_tf.data import features as F
    from tags_tf.data.annotation_files import load_annotations
    from tags_tf.data.tfrecord import open_records, shard_name

    ann = load_annotations(ann_path)
    class_index = ann.class_index()
    os.makedirs(out_dir, exist_ok=True)
    n = max(num_shards, 1)
    writers = {}
    written = 0
    for vid in sorted(ann.videos):
        v = ann.videos[vid]
        feats = np.load(os.path.join(feat_dir, vid + ".npy"))
        reason, feats = build_shards_dofns.check_features(vid, feats, None)
        if reason is not None:
            continue
        clean = clean_segments(v.instances, v.duration)
        ex = F.make_example(
            vid, v.subset, v.duration, feats, clean.segments, [class_index[n] for n in clean.labels], clean.labels
        )
        key = (v.subset, written % n)
        if key not in writers:
            writers[key] = open_records(os.path.join(out_dir, shard_name(v.subset, key[1], n, compression)), compression)
        writers[key].write(F.serialize(ex))
        written += 1
    for w in writers.values():
        w.close()
    return written


def run_beam(ann_path, feat_dir, out_dir, num_shards, compression, workers, dask_address=None) -> int:
    from beam.build_shards import run_build_shards

    args = ["--runner=DirectRunner"]
    if dask_address:
        args = ["--runner=dask", f"--dask_client_address={dask_address}"]
    elif workers > 1:
        args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    manifest = run_build_shards(
        ann_path, feat_dir, out_dir, num_shards=num_shards, compression=compression or None, pipeline_args=args
    )
    return manifest["counts"]["written"]


def _child(args) -> None:
    """Runs one timed job in this (fresh) process and prints a JSON line."""
    import resource

    # Imports outside the timing (TensorFlow alone takes seconds).
    import tensorflow  # noqa: F401

    import beam.build_shards  # noqa: F401
    from tags_tf.data import features  # noqa: F401

    job, ann, feat_dir, out = args.child
    cluster = None
    if job.startswith("dask"):
        from dask.distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=int(job[4:]), threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    t0, c0 = time.perf_counter(), time.process_time()
    if job == "loop":
        n = run_loop(ann, feat_dir, out, args.num_shards, args.compression)
    else:
        address = cluster.scheduler_address if cluster else None
        n = run_beam(ann, feat_dir, out, args.num_shards, args.compression, args.direct_num_workers, address)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0  # cpu: this process only
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    result = {"job": job, "wall": wall, "cpu": cpu, "rss_mb": rss, "written": n}
    if cluster is not None:  # the same job again on the now warm workers
        t0 = time.perf_counter()
        warm = run_beam(ann, feat_dir, out + "_warm", args.num_shards, args.compression, 1, cluster.scheduler_address)
        result.update(warm=time.perf_counter() - t0, written=min(n, warm))
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # shutdown noise only
        cluster.close()
    print(json.dumps(result))


def _timed(job, ann, feat_dir, out, args) -> dict:
    cmd = [sys.executable, __file__, "--child", job, ann, feat_dir, out] + [
        f"--num_shards={args.num_shards}", f"--compression={args.compression}",
        f"--direct_num_workers={args.direct_num_workers}",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
    if res.returncode or not lines:
        raise RuntimeError(f"{job} failed:\n{res.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num_videos", type=int, default=2000)
    ap.add_argument("--shapes", default="100x400,200x2048", help="comma-separated TxD")
    ap.add_argument("--num_shards", type=int, default=4, help="per subset (0: the runner decides, no shuffle)")
    ap.add_argument("--compression", default="", help="'' or gzip")
    ap.add_argument("--direct_num_workers", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="default: a temporary directory (removed)")
    ap.add_argument("--dask_workers", default="1,2", help="LocalCluster sizes for the Dask columns; '' = none")
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.compression = "GZIP" if args.compression.lower() in ("gzip", "gz") else ""
    if args.child:
        return _child(args)

    dask_sizes = [int(x) for x in args.dask_workers.split(",") if x.strip()]
    if dask_sizes and importlib.util.find_spec("dask.distributed") is None:
        print("dask.distributed is not installed (pip install -e '.[dask]'): no Dask columns")
        dask_sizes = []
    root = args.workdir or tempfile.mkdtemp(prefix="shards_bench_")
    rows = []
    try:
        for shape in args.shapes.split(","):
            t, d = (int(x) for x in shape.lower().split("x"))
            base = os.path.join(root, shape)
            ann, feat_dir = make_inputs(base, args.num_videos, t, d)
            loop = _timed("loop", ann, feat_dir, os.path.join(base, "loop"), args)
            bm = _timed("beam", ann, feat_dir, os.path.join(base, "beam"), args)
            dask = {k: _timed(f"dask{k}", ann, feat_dir, os.path.join(base, f"dask{k}"), args) for k in dask_sizes}
            assert loop["written"] == bm["written"] == args.num_videos, (loop, bm)
            assert all(r["written"] == args.num_videos for r in dask.values()), dask
            mb = args.num_videos * t * d * 4 / 2**20
            rows.append((shape, args.num_videos, mb, bm, loop, dask))
            shutil.rmtree(base, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)

    print(
        f"build_shards: DirectRunner (FnApiRunner, workers={args.direct_num_workers}) vs single-process loop; "
        f"{args.num_shards} shards/subset, compression={args.compression or 'none'}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'T x D':<10}{'videos':>7}{'MiB':>7}{'beam s':>8}{'beam v/s':>9}{'cpu s':>7}{'RSS MiB':>8}"
        f"{'loop s':>8}{'loop v/s':>9}{'cpu s':>7}{'RSS MiB':>8}{'ratio':>7}{'cpu ratio':>10}"
    )
    for shape, n, mb, bm, lp, _ in rows:
        print(
            f"{shape:<10}{n:>7}{mb:>7.0f}{bm['wall']:>8.1f}{n / bm['wall']:>9.1f}{bm['cpu']:>7.1f}{bm['rss_mb']:>8.0f}"
            f"{lp['wall']:>8.1f}{n / lp['wall']:>9.1f}{lp['cpu']:>7.1f}{lp['rss_mb']:>8.0f}"
            f"{lp['wall'] / bm['wall']:>7.2f}{lp['cpu'] / bm['cpu']:>10.2f}"
        )
    print(
        "ratio = beam videos/s / loop videos/s (wall; Beam's includes pipeline construction and startup); "
        "cpu ratio = the same on process CPU time (robust to a busy machine; workers=1 only)"
    )
    if not dask_sizes:
        return
    print(
        "\nbuild_shards on Beam's DaskRunner: dask.distributed LocalCluster of N worker processes "
        "(1 thread each, 127.0.0.1; cluster start-up not timed)"
    )
    header = f"{'T x D':<10}{'videos':>7}{'loop v/s':>9}{'local v/s':>10}"
    for k in dask_sizes:
        header += f"{f'd{k} cold s':>10}{'v/s':>6}{'warm s':>8}{'v/s':>6}{'x local':>12}"
    print(header)
    for shape, n, _, bm, lp, dask in rows:
        line = f"{shape:<10}{n:>7}{n / lp['wall']:>9.1f}{n / bm['wall']:>10.1f}"
        for k in dask_sizes:
            r = dask[k]
            ratios = f"{bm['wall'] / r['wall']:.2f}/{bm['wall'] / r['warm']:.2f}"
            line += f"{r['wall']:>10.1f}{n / r['wall']:>6.1f}{r['warm']:>8.1f}{n / r['warm']:>6.1f}{ratios:>12}"
        print(line)
    print(
        "dN = a LocalCluster of N workers; cold = its first job, warm = the same job again; "
        "x local = dask videos/s / local-runner videos/s, cold/warm (wall; > 1 means Dask is faster)"
    )


if __name__ == "__main__":
    main()
