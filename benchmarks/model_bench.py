"""Model size and speed per preset and scale set: parameters, FLOPs per video, CPU
forward time per video at batch 1 and 32.

    python benchmarks/model_bench.py [--presets anet thumos demo] [--repeats 5]

Parameters are counted twice: all weights, and the inference weights only (without the
E_p / E_m projections that exist for the consistency loss, Eq. 9). FLOPs come from
TensorFlow's profiler on the traced forward graph (1 multiply-add = 2 FLOPs), at batch 1.
Paper (Table 3/5, ActivityNet): 6.2M params and 17.8 GFLOPs at {1,2}; 2.9M at {1};
9.8M at {1,2,4}.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tags_tf.config import get_config  # noqa: E402
from tags_tf.model.tags_model import TagsModel  # noqa: E402

PAPER = {("anet", (1,)): (2.9, None), ("anet", (1, 2)): (6.2, 17.8), ("anet", (1, 2, 4)): (9.8, None)}


def flops_per_video(model: TagsModel, t: int, d: int) -> float:
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec([1, t, d], tf.float32))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=fn.graph, options=opts)
    return float(prof.total_float_ops)


def forward_ms(model: TagsModel, batch: int, t: int, d: int, repeats: int) -> float:
    fn = tf.function(lambda x: model(x, training=False))
    x = tf.random.normal([batch, t, d])
    fn(x)  # trace + warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(x)
        _ = [v.numpy() for v in out.values()]
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / batch


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["anet", "thumos", "demo"])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rows = []
    for preset in args.presets:
        for scales in ((1,), (1, 2), (1, 2, 4)):
            cfg = get_config(preset, {"model.scales": scales})
            m = cfg.model
            model = TagsModel(cfg)
            model.build((None, m.input_snippets, m.feature_dim))
            total = model.count_params()
            infer = sum(int(np.prod(w.shape)) for w in model.weights if "/e_p/" not in w.path and "/e_m/" not in w.path)
            gflops = flops_per_video(model, m.input_snippets, m.feature_dim) / 1e9
            ms1 = forward_ms(model, 1, m.input_snippets, m.feature_dim, args.repeats)
            ms32 = forward_ms(model, 32, m.input_snippets, m.feature_dim, max(2, args.repeats // 2))
            paper = PAPER.get((preset, scales), (None, None))
            rows.append((preset, scales, [m.snippets(s) for s in scales], total / 1e6, infer / 1e6, gflops, ms1, ms32, paper))
    head = f"{'preset':7} {'scales':10} {'snippets':16} {'params M':>9} {'infer M':>8} {'paper M':>8} {'GFLOPs':>8} {'paper G':>8} {'ms/video b1':>12} {'ms/video b32':>13}"
    print(head)
    print("-" * len(head))
    for preset, scales, snip, total, infer, gfl, ms1, ms32, (pm, pg) in rows:
        print(
            f"{preset:7} {str(set(scales)):10} {str(snip):16} {total:9.2f} {infer:8.2f} "
            f"{(f'{pm:.1f}' if pm else '-'):>8} {gfl:8.2f} {(f'{pg:.1f}' if pg else '-'):>8} {ms1:12.2f} {ms32:13.2f}"
        )
    for preset, scales, _, _, infer, gfl, _, _, (pm, pg) in rows:
        if pm:
            ratio = f"params x{infer / pm:.2f}" + (f", FLOPs x{gfl / pg:.2f}" if pg else "")
            print(f"ours / paper, {preset} {set(scales)}: {ratio}")


if __name__ == "__main__":
    main()
