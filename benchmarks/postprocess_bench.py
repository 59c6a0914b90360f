"""Post-processing time per video (ms) at ActivityNet and THUMOS sizes.

Runs ``DetectionDecoder`` under ``tf.function`` (graph mode, no XLA: Soft-NMS has no XLA
kernel) on synthetic model outputs, batch 1 and 16, and prints ms per video for the
whole decoder, for candidate generation alone and for Soft-NMS alone (on the merged
candidates, pre_nms_top_k included).

Outputs are "structured" (a few instances per video; each snippet's mask is its
instance's mask plus noise, as a trained model predicts) or "random" (logits ~ N(0, 1):
fragmented masks, no duplicate runs to drop, the worst case for Soft-NMS).

  python benchmarks/postprocess_bench.py [--repeats 5] [--sizes anet thumos]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing.

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tags_tf.config import get_config  # noqa: E402
from tags_tf.decode.decoder import DetectionDecoder  # noqa: E402
from tags_tf.decode.nms import soft_nms
from tags_tf.decode.runs import decode_scale


def synthetic_outputs(rng, batch, num_classes, scales, base, kind):
    """Dict of cls_logits_s{s} (B, T, K+1) and mask_logits_s{s} (B, T, T) float32."""
    out = {}
    for s in scales:
        t = base * s
        if kind == "random":
            cls = rng.normal(size=(batch, t, num_classes + 1))
            mask = rng.normal(size=(batch, t, t))
        else:
            cls = rng.normal(scale=0.5, size=(batch, t, num_classes + 1))
            cls[..., num_classes] += 3.0  # background by default.
            mask = np.full((batch, t, t), -4.0)
            for b in range(batch):
                for _ in range(rng.integers(1, 4)):
                    lo = int(rng.integers(0, t - 2))
                    hi = int(min(t, lo + rng.integers(2, max(3, t // 3))))
                    c = rng.integers(num_classes)
                    cls[b, lo:hi, c] += 6.0
                    cls[b, lo:hi, num_classes] -= 3.0
                    mask[b, lo:hi, lo:hi] = 4.0
            mask = mask + rng.normal(scale=1.5, size=mask.shape)
        out[f"cls_logits_s{s}"] = tf.constant(cls, tf.float32)
        out[f"mask_logits_s{s}"] = tf.constant(mask, tf.float32)
    return out


def time_ms(fn, args, repeats):
    fn(*args)  # trace + warm up.
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn(*args)
        tf.nest.map_structure(lambda x: x.numpy(), res)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["anet", "thumos"], choices=["anet", "thumos"])
    parser.add_argument("--kinds", nargs="+", default=["structured", "random"], choices=["structured", "random"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"TF {tf.__version__}, CPU threads intra={tf.config.threading.get_intra_op_parallelism_threads()}, "
          f"best of {args.repeats}")
    print("ms per video (best of repeats); decoder = candidates + merge + Soft-NMS + scaling")
    print(f"{'size':7s} {'outputs':10s} {'B':>3s} {'T':>9s} {'decoder':>8s} {'candidates':>10s} "
          f"{'soft-NMS':>8s} {'cands/video':>11s} {'dets/video':>10s}")
    for size in args.sizes:
        cfg = get_config(size)
        m, p = cfg.model, cfg.postprocess
        decoder = DetectionDecoder.from_tags_config(cfg)
        full = tf.function(lambda o, d: decoder(o, d))

        def cands(o, scales=m.scales):
            return [decode_scale(o[f"cls_logits_s{s}"], o[f"mask_logits_s{s}"], p.mask_thresholds, p.top_snippets)
                    for s in scales]

        cands_fn = tf.function(cands)

        @tf.function
        def nms_fn(segments, scores, classes):
            return soft_nms(segments, scores, classes, p.max_detections, p.soft_nms_sigma,
                            p.score_threshold, p.pre_nms_top_k)
        ts = "/".join(str(m.snippets(s)) for s in m.scales)
        for kind in args.kinds:
            for batch in args.batches:
                outputs = synthetic_outputs(rng, batch, m.num_classes, m.scales, m.base_snippets, kind)
                duration = tf.fill([batch], 120.0)
                t_full = time_ms(full, (outputs, duration), args.repeats) / batch
                t_cand = time_ms(cands_fn, (outputs,), args.repeats) / batch
                merged = {k: tf.concat([c[k] for c in cands_fn(outputs)], axis=1) for k in ("segments", "class_scores", "classes", "valid")}
                nms_args = (merged["segments"], merged["class_scores"], merged["classes"])
                t_nms = time_ms(nms_fn, nms_args, args.repeats) / batch
                n_cands = float(tf.reduce_mean(tf.reduce_sum(tf.cast(merged["valid"], tf.float32), axis=1)))
                dets = float(tf.reduce_mean(tf.cast(full(outputs, duration)["num_detections"], tf.float32)))
                print(f"{size:7s} {kind:10s} {batch:3d} {ts:>9s} {t_full:8.2f} {t_cand:10.2f} "
                      f"{t_nms:8.2f} {n_cands:11.0f} {dets:10.1f}")


if __name__ == "__main__":
    main()
