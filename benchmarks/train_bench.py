"""Training throughput (videos/s) per preset at the paper's batch sizes.

    python benchmarks/train_bench.py [--presets demo anet thumos] [--steps 3] [--epoch-videos 10000]

Times ``model.train_on_batch`` (forward, the four losses with label assignment inside
``compute_loss``, backward, Adam) on synthetic in-memory batches after one warm-up
step, so the input pipeline is out of the picture (benchmarks/input_bench.py shows it
is far faster than the step). Prints videos/s and the implied time per epoch of
``--epoch-videos`` videos (ActivityNet train: ~10,000), to set beside the paper's
0.26 h for full training (9 epochs) on one 2080 Ti. Runs on whatever device
TensorFlow picks (a GPU when there is one).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tags_tf.config import get_config  # noqa: E402
from tags_tf.model.tags_model import TagsModel  # noqa: E402


def synthetic_batch(cfg, batch: int, rng: np.random.Generator):
    m = cfg.model
    x = rng.normal(size=(batch, m.input_snippets, m.feature_dim)).astype("float32")
    n = 4
    starts = rng.uniform(0, 60, size=(batch, n))
    lengths = rng.uniform(2, 40, size=(batch, n))
    segs = np.stack([starts, starts + lengths], -1).astype("float32")  # (B, N, 2)
    labels = rng.integers(0, m.num_classes, size=(batch, n)).astype("int32")
    labels[:, 2:] = np.where(rng.random((batch, 2)) < 0.5, -1, labels[:, 2:])  # 2-4 instances
    return x, {"segments": segs, "labels": labels, "duration": np.full((batch,), 120.0, "float32")}


def videos_per_second(preset: str, steps: int, batch: int | None) -> tuple[int, float]:
    cfg = get_config(preset)
    batch = batch or cfg.train.batch_size
    model = TagsModel(cfg)
    model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate))
    x, y = synthetic_batch(cfg, batch, np.random.default_rng(0))
    model.train_on_batch(x, y)  # trace + warm up
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch, steps * batch / (time.perf_counter() - start)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["demo", "anet", "thumos"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's (paper: 50 ANet, 25 THUMOS)")
    p.add_argument("--epoch-videos", type=int, default=10000)
    args = p.parse_args(argv)
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}")
    print(f"{'preset':8} {'batch':>5} {'videos/s':>9} {'s/epoch of ' + str(args.epoch_videos):>18}")
    for preset in args.presets:
        batch, vps = videos_per_second(preset, args.steps, args.batch_size)
        print(f"{preset:8} {batch:5d} {vps:9.2f} {args.epoch_videos / vps:18.0f}")
    print("paper (Table 2): TAGS trains in 0.26 h (9 epochs) on one 2080 Ti = ~104 s per ANet epoch")


if __name__ == "__main__":
    main()
