"""tf.data input throughput vs the model's training step (the input must not be the bottleneck).

Writes ANet-like shards (default: 500 videos of 100 x 400 snippet features, 1-3
segments each), then measures

1. input examples/s of ``tags_tf.data.input.make_dataset`` (training mode: interleave,
   shuffle, parse, resample 100 -> 200, targets at 100 and 200 snippets, batch, prefetch),
   plus the same pipeline without the targets (where the time goes) and with
   ``targets="raw"`` (the model builds the targets on the accelerator);
2. the TagsModel training step (``train_on_batch`` on one in-memory batch, the preset's
   config) in examples/s;
3. ``model.fit`` steps fed by the real pipeline vs by one cached batch repeated: the
   overhead the input adds when both run together.

Prints the numbers and the ratio input / model (> 1: the input keeps up).

    python benchmarks/input_bench.py [--videos 500] [--snippets 100] [--dim 400] [--batch 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing.

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tags_tf.data import features as F  # noqa: E402
from tags_tf.config import get_config  # noqa: E402
from tags_tf.data import input as input_lib  # noqa: E402
from tags_tf.data.tfrecord import write_shards as write_shard_files  # noqa: E402


def write_shards(out_dir: str, videos: int, snippets: int, dim: int, classes: int, num_shards: int, seed: int) -> float:
    """ANet-like shards written with tags_tf.data.tfrecord.write_shards; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    def records():
        for v in range(videos):
            duration = float(rng.uniform(30, 240))
            k = int(rng.integers(1, 4))
            starts = np.sort(rng.uniform(0, duration * 0.7, size=k))
            segs = np.stack([starts, np.minimum(starts + rng.uniform(2, duration * 0.3, size=k), duration)], -1)
            ex = F.make_example(
                f"v{v:05d}", "training", duration, rng.normal(size=(snippets, dim)).astype(np.float32),
                segs, rng.integers(0, classes, size=k).tolist(),
            )
            yield F.serialize(ex)

    write_shard_files(out_dir, "training", records(), num_shards)
    return time.perf_counter() - t0


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return r.ru_utime + r.ru_stime


def time_dataset(ds: tf.data.Dataset, epochs: int) -> tuple[float, float]:
    """(examples/s, CPU-µs/example) over ``epochs`` passes, after one warm-up pass.

    CPU time (all tf.data threads) is steadier than wall time on a shared machine.
    """
    for _ in ds:
        pass
    n, t0, c0 = 0, time.perf_counter(), _cpu_seconds()
    for _ in range(epochs):
        for x, _ in ds:
            n += int(tf.shape(x["features"])[0])
    return n / (time.perf_counter() - t0), (_cpu_seconds() - c0) / n * 1e6


class StepTimer:
    """A Keras callback recording the wall time of every training step."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._t0 = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self._t0)

            def median_ms(self, skip: int) -> float:
                return float(np.median(self.times[skip:])) * 1e3

        return _Timer()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="anet")
    p.add_argument("--videos", type=int, default=500)
    p.add_argument("--snippets", type=int, default=100, help="native snippets per video")
    p.add_argument("--dim", type=int, default=400)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2, help="timed input passes")
    p.add_argument("--steps", type=int, default=5, help="timed model steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = p.parse_args(argv)

    from tags_tf.config import parse_set_args

    cfg = get_config(args.preset, {"model.feature_dim": args.dim, "train.batch_size": args.batch, **parse_set_args(args.set)})
    m = cfg.model
    print(f"device: {tf.config.list_physical_devices('GPU') or 'CPU only'}; CPU cores visible: {os.cpu_count()}")
    print(
        f"config {args.preset}: {args.videos} videos of {args.snippets} x {args.dim} -> T_in {m.input_snippets}, "
        f"scales {m.scales} ({', '.join(str(m.snippets(s)) for s in m.scales)} snippets), K {m.num_classes}, "
        f"batch {args.batch}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        secs = write_shards(tmp, args.videos, args.snippets, args.dim, m.num_classes, args.shards, seed=0)
        print(f"write shards (single process): {args.videos / secs:8.1f} videos/s")
        pattern = os.path.join(tmp, "*.tfrecord")

        ds = input_lib.make_dataset(pattern, cfg, training=True, batch_size=args.batch, seed=0)
        input_eps, cpu = time_dataset(ds, args.epochs)
        print(f"tf.data input, full pipeline  : {input_eps:8.1f} examples/s, {cpu:6.0f} CPU-µs/example")
        no_targets = (
            tf.data.Dataset.list_files(pattern, shuffle=False)
            .interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .shuffle(cfg.data.shuffle_buffer, seed=0)
            .batch(args.batch, drop_remainder=True)
            .map(lambda r: ({"features": input_lib.decode_batch(r, cfg)["features"]}, 0), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        eps, cpu = time_dataset(no_targets, args.epochs)
        print(f"tf.data input, no targets     : {eps:8.1f} examples/s, {cpu:6.0f} CPU-µs/example")
        raw = input_lib.make_dataset(pattern, cfg, training=True, batch_size=args.batch, seed=0, targets="raw")
        eps, cpu = time_dataset(raw, args.epochs)
        print(f"tf.data input, targets='raw'  : {eps:8.1f} examples/s, {cpu:6.0f} CPU-µs/example (targets built by the model)")

        try:
            from tags_tf.model.tags_model import TagsModel
        except ImportError as e:  # the model is optional for this benchmark
            print(f"model unavailable ({e}); input throughput only")
            return
        import keras

        model = TagsModel(cfg)
        model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate))
        x, y = next(iter(ds))
        model.train_on_batch(x, y)  # build + trace
        model.train_on_batch(x, y)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        step = (time.perf_counter() - t0) / args.steps
        model_eps = args.batch / step
        print(f"model train step              : {step * 1e3:8.1f} ms = {model_eps:8.1f} examples/s")
        xr, yr = next(iter(raw))
        model.train_on_batch(xr, yr)  # retrace for the raw ground truth
        t0 = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(xr, yr)
        print(f"model train step, raw targets : {(time.perf_counter() - t0) / args.steps * 1e3:8.1f} ms (targets built in the step)")
        print(f"ratio input / model           : {input_eps / model_eps:8.1f}x  ({'input keeps up' if input_eps > model_eps else 'INPUT IS THE BOTTLENECK'})")

        # One fit per feed, timing each step with a callback; the first 2 steps (tracing,
        # pipeline start-up, filling the shuffle buffer) are left out.
        cached = tf.data.Dataset.from_tensors((x, y)).repeat()
        feeds = (("cached batch", cached), ("real pipeline", ds.repeat()), ("real, raw targets", raw.repeat()))
        for name, data in feeds:
            timer = StepTimer()
            model.fit(data, steps_per_epoch=args.steps + 2, epochs=1, verbose=0, callbacks=[timer])
            print(f"fit step, {name:17s}   : {timer.median_ms(skip=2):8.1f} ms (median)")

if __name__ == "__main__":
    main()
