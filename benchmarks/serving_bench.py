"""Latency of the exported ``detect`` signature: in-process vs over gRPC.

For each preset (random-init TagsModel; latency does not depend on the weights) this
exports the SavedModel, then times ``detect`` on random features of ``T_in`` snippets:

* in-process: the reloaded SavedModel's ``detect`` signature (``tf.saved_model.load``),
* gRPC: ``serving.client.DetectionClient`` -> ``serving.dev_server`` on 127.0.0.1 (TF1
  session run by SignatureDef names, the way TF Serving runs it),

at batch 1 and 16 (one request of B videos). It prints p50/p95 per request and per
video (request / B) and the gRPC overhead ratio. The dev server is not TF Serving, but
both run the same graph through a TF session, so the in-process column bounds what TF
Serving can do and the gRPC column adds protocol + (de)serialization costs.

    python benchmarks/serving_bench.py [--presets demo anet] [--repeats 20] [--batches 1 16]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing.

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from serving import signatures  # noqa: E402
from serving import testing  # noqa: E402
from serving.client import DetectionClient  # noqa: E402
from serving.dev_server import DevServer  # noqa: E402
from tags_tf.config import get_config  # noqa: E402


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1e3, [50, 95])
    return float(p50), float(p95)


def _time(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_preset(preset: str, batches: list[int], repeats: int, t_in: int | None, workdir: Path) -> list[dict]:
    cfg = get_config(preset)
    t_in = t_in or (cfg.model.input_snippets * 3) // 2  # videos are longer than T: downsampling
    t0 = time.perf_counter()
    model, path = testing.export_model(workdir / preset, cfg)
    export_s = time.perf_counter() - t0
    del model
    detect = tf.saved_model.load(str(path)).signatures[signatures.DETECT]
    rng = np.random.default_rng(0)
    rows = []
    with DevServer("tags", workdir / preset, max_workers=4) as server:
        server.wait_until_available(timeout=600)
        with DetectionClient(server.address, timeout=600) as client:
            for b in batches:
                x = rng.normal(size=(b, t_in, cfg.model.feature_dim)).astype(np.float32)
                dur = rng.uniform(30, 300, size=b).astype(np.float32)
                xt, dt = tf.constant(x), tf.constant(dur)
                local = _time(lambda: detect(features=xt, duration=dt)[signatures.NUM_DETECTIONS].numpy(), repeats)
                remote = _time(lambda: client.detect(x, dur), repeats)
                for where, secs in (("in-process", local), ("gRPC", remote)):
                    p50, p95 = _percentiles(secs)
                    rows.append({"preset": preset, "T_in": t_in, "where": where, "batch": b, "p50": p50,
                                 "p95": p95, "video_p50": p50 / b, "video_p95": p95 / b, "export_s": export_s})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["demo", "anet"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--t-in", type=int, default=None, help="snippets per video (default 1.5 x the model's T)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            rows += bench_preset(preset, args.batches, args.repeats, args.t_in, Path(tmp))
    print(f"\ndetect latency, {args.repeats} timed calls each, {os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"{'preset':<7} {'T_in':>5} {'where':<11} {'B':>3} {'req p50 ms':>11} {'req p95 ms':>11} "
          f"{'video p50 ms':>13} {'video p95 ms':>13}")
    for r in rows:
        print(f"{r['preset']:<7} {r['T_in']:>5} {r['where']:<11} {r['batch']:>3} {r['p50']:>11.1f} {r['p95']:>11.1f} "
              f"{r['video_p50']:>13.2f} {r['video_p95']:>13.2f}")
    print("\nratios of p50 per request: gRPC / in-process; per video: batch B / batch 1 (gRPC)")
    for preset in args.presets:
        sel = {(r["where"], r["batch"]): r for r in rows if r["preset"] == preset}
        b0 = args.batches[0]
        for b in args.batches:
            print(f"  {preset:<5} B={b:<3} gRPC/in-process {sel['gRPC', b]['p50'] / sel['in-process', b]['p50']:.2f}x"
                  f"   per-video vs B={b0}: {sel['gRPC', b]['video_p50'] / sel['gRPC', b0]['video_p50']:.2f}x")
    for preset in args.presets:
        r = next(r for r in rows if r["preset"] == preset)
        print(f"  export of {preset}: {r['export_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
