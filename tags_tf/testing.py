"""Helpers shared by the tests and the benchmarks (neither imports the other's modules).

* The tiny config, defined once: :data:`TINY_OVERRIDES` over the demo preset
  (:func:`tiny_config`), and as ``--set`` arguments of the training CLI
  (:func:`tiny_set_args`, with :data:`TINY_TRAIN_OVERRIDES`). A test keeps its own
  extra overrides and passes them in.
* A seeded, built model (:func:`build_model`), its class names, the in-process reference
  of the ``detect`` signature, a synthetic batch with ground truth.
* Tiny shards in the ``beam.build_shards`` layout and the training CLI in a subprocess.
* Synthetic videos (PyAV) whose frames name their index, and the "mean colour" encoder
  exported as a SavedModel (golden features), for the raw-video tests and benchmark.

Imports only ``tags_tf`` and numpy at module level; TensorFlow, Keras and PyAV are
imported by the functions that need them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tags_tf.config import TagsConfig, get_config
from tags_tf.data.schema import MANIFEST_NAME, Manifest
from tags_tf.data.tfrecord import file_checksum, write_shards

# The checkout holding this package (the training CLI runs from there).
REPO = Path(__file__).resolve().parents[1]

# ---- the tiny config ------------------------------------------------------------------

# D=8 features, K=3 classes, T=8 snippets at scale 1, C=16 channels, top-4 snippets in
# the consistency loss and the decoder: trains in seconds on 2 cores.
TINY_OVERRIDES: Mapping[str, Any] = {
    "model.feature_dim": 8,
    "model.num_classes": 3,
    "model.base_snippets": 8,
    "model.embed_dim": 16,
    "loss.topk": 4,
    "postprocess.top_snippets": 4,
}
# What the training-CLI tests pin besides the sizes.
TINY_TRAIN_OVERRIDES: Mapping[str, Any] = {
    "postprocess.pre_nms_top_k": 100,
    "train.learning_rate": 3e-3,
    "train.recipe": "preset",  # tests/tags_tf/training/test_recipe.py covers the fitted recipe
}
# Given by the shards' manifest when training on shards, so not passed as --set.
_FROM_MANIFEST = ("model.feature_dim", "model.num_classes")


def tiny_config(**overrides) -> TagsConfig:
    """The demo preset with :data:`TINY_OVERRIDES`, then ``overrides``."""
    return get_config("demo", {**TINY_OVERRIDES, **overrides})


def tiny_set_args(**overrides) -> list[str]:
    """``KEY=VALUE`` strings for ``python -m tags_tf.train --set``: :data:`TINY_OVERRIDES`
    (but the classes and feature width, which the shards' manifest gives), then
    :data:`TINY_TRAIN_OVERRIDES`, then ``overrides``."""
    sizes = {k: v for k, v in TINY_OVERRIDES.items() if k not in _FROM_MANIFEST}
    return [f"{k}={v}" for k, v in {**sizes, **TINY_TRAIN_OVERRIDES, **overrides}.items()]


def class_names(cfg: TagsConfig) -> list[str]:
    """``action_0 .. action_{K-1}``."""
    return [f"action_{i}" for i in range(cfg.model.num_classes)]


def build_model(cfg: TagsConfig, seed: int = 0):
    """A randomly initialised, built TagsModel (Keras seeded with ``seed``)."""
    import keras
    import tensorflow as tf

    from tags_tf.model.tags_model import TagsModel

    keras.utils.set_random_seed(seed)
    model = TagsModel(cfg)
    model(tf.zeros([1, cfg.model.input_snippets, cfg.model.feature_dim]), training=False)
    return model


def in_process_detect(model, features: np.ndarray, duration: np.ndarray) -> dict:
    """Reference of the ``detect`` signature: ``TagsModel.detect`` (resample -> model ->
    decoder), eagerly; ``features`` (B, T, D), ``duration`` (B,) -> numpy outputs."""
    import tensorflow as tf

    out = model.detect(tf.constant(features, tf.float32), tf.constant(duration, tf.float32))
    return {k: v.numpy() for k, v in out.items()}


def synthetic_batch(num_videos: int = 6, t_in: int = 16, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Videos whose features say which of 3 classes is active where (1-2 instances each).

    Returns:
      features (V, t_in, dim) float32; ground truth {"segments" (V, 2, 2) s, "labels"
      (V, 2) int32, -1 = padding, "duration" (V,) = 2 s per input snippet}.
    """
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(3, dim)) * 2.0
    feats = rng.normal(size=(num_videos, t_in, dim)).astype("float32") * 0.1
    segs = np.zeros((num_videos, 2, 2), "float32")
    labels = -np.ones((num_videos, 2), "int32")
    dur = np.full((num_videos,), 2.0 * t_in, "float32")
    for v in range(num_videos):
        starts = sorted(rng.choice(np.arange(0, t_in - 3, 4), size=1 + v % 2, replace=False))
        for j, s0 in enumerate(starts):
            length = int(rng.integers(2, 4))
            c = int(rng.integers(0, 3))
            feats[v, s0 : s0 + length] += protos[c]
            segs[v, j] = [s0 * 2.0, (s0 + length) * 2.0]  # 2 s per input snippet
            labels[v, j] = c
    return feats, {"segments": segs, "labels": labels, "duration": dur}


# ---- tiny shards and the training CLI --------------------------------------------------

def write_tiny_shards(shard_dir: Path, num_train: int = 16, num_val: int = 6,
                      dim: int = TINY_OVERRIDES["model.feature_dim"], seed: int = 0) -> Path:
    """Shards in the ``beam.build_shards`` layout (one file per subset, manifest.json):
    ``TINY_OVERRIDES["model.num_classes"]`` classes ``class0 ..``, one instance per
    video, whose features carry its class's prototype."""
    from tags_tf.data.features import make_example, serialize

    num_classes = TINY_OVERRIDES["model.num_classes"]
    names = [f"class{c}" for c in range(num_classes)]
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(num_classes, dim)) * 2.0
    counts, checksums = {}, {}
    for subset, n in (("training", num_train), ("validation", num_val)):
        records = []
        for i in range(n):
            t, dur = int(rng.integers(12, 24)), float(rng.uniform(20, 60))
            feats = rng.normal(size=(t, dim)) * 0.3
            a = int(rng.integers(0, t // 2))
            b = a + int(rng.integers(3, t // 2))
            c = int(rng.integers(0, num_classes))
            feats[a:b] += protos[c]
            seg = [[a * dur / t, b * dur / t]]
            records.append(serialize(make_example(f"{subset}_{i}", subset, dur, feats, seg, [c], [names[c]])))
        (path,) = write_shards(str(shard_dir), subset, records, num_shards=1)
        counts[subset] = {"videos": n, "files": [os.path.basename(path)]}
        with open(path, "rb") as f:
            checksums[os.path.basename(path)] = file_checksum(f)
    manifest = Manifest.from_dict({"class_names": names, "feature_dim": dim, "subsets": counts,
                                   "shard_checksums": checksums})
    (Path(shard_dir) / MANIFEST_NAME).write_text(manifest.to_json())
    return Path(shard_dir)


def run_train(args: list[str], env: Mapping[str, str | None] | None = None, timeout: float = 600,
              **kw) -> subprocess.CompletedProcess:
    """``python -m tags_tf.train *args`` from the checkout; output captured as text. ``env``
    entries are added to the environment (a value of None removes the variable)."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "tags_tf.train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


# ---- synthetic videos ------------------------------------------------------------------
# Frame ``i`` is a solid colour that identifies it: R = 10 + 8 * i (mod 256), G = 128,
# B = 64, plus (optionally) a white 8-px vertical bar moving 2 px a frame on the left
# half. Codecs are lossy, so compare colours with a tolerance of a few levels.

FRAME_SIZE = 16  # the raw-video tests decode to 16 x 16
SNIPPET_FRAMES = 8  # frames per snippet in the raw-video tests


def frame_colour(i: int) -> tuple[int, int, int]:
    return (10 + 8 * i) % 256, 128, 64


def frame_image(i: int, width: int, height: int, bar: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 of frame ``i``."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = frame_colour(i)
    if bar:
        x = (2 * i) % max(width // 2 - 8, 1)
        img[:, x : x + 8] = 255
    return img


def write_video(
    path,
    num_frames: int = 30,
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    codec: str = "mpeg4",
    faststart: bool = False,
    bar: bool = True,
) -> str:
    """Writes an mp4 (or any container by extension) of ``num_frames`` synthetic frames."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 2_000_000  # near-lossless at this size
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height, bar), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def truncate(src, dst, fraction: float = 0.5) -> str:
    """Copies the first ``fraction`` of ``src``'s bytes to ``dst`` (a cut download)."""
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * fraction)])
    return str(dst)


def garbage(path, size: int = 2000) -> str:
    """A file with a video extension that is not a video."""
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return str(path)


def frame_index_of(img: np.ndarray) -> int:
    """Which synthetic frame ``img`` (H, W, 3) shows, from its median red level."""
    r = float(np.median(img[..., 0]))
    return int(round((r - 10) / 8))


# Kernel of the tiny "mean colour" encoder: features = [R, G, B, R + G + B] of the
# clip's mean colour in [0, 1] (D = 4), so expected features are hand-computable.
MEAN_COLOUR_KERNEL = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]], np.float32)


def mean_colour_features(clips: np.ndarray) -> np.ndarray:
    """Expected output of the exported mean-colour model: (B, N, H, W, 3) uint8 -> (B, 4)."""
    mean = clips.astype(np.float64).mean(axis=(1, 2, 3)) / 255.0  # (B, N, H, W, 3) -> (B, 3)
    return (mean @ MEAN_COLOUR_KERNEL).astype(np.float32)  # (B, 3) @ (3, 4) -> (B, 4)


def export_mean_colour_model(path, frames=None, height=None, width=None, per_frame: bool = False) -> str:
    """Exports a Keras 3 model (``model.export``, i.e. ExportArchive) as a SavedModel.

    Clip model: (B, frames, height, width, 3) float in [0, 1] -> (B, 4); per-frame
    model: (B, height, width, 3) -> (B, 4). None dims stay dynamic in the signature.
    """
    import keras

    if per_frame:
        inputs = keras.Input((height, width, 3), name="frames")
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    else:
        inputs = keras.Input((frames, height, width, 3), name="clips")
        pooled = keras.layers.GlobalAveragePooling3D()(inputs)
    dense = keras.layers.Dense(4, use_bias=False, name="mix")
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([MEAN_COLOUR_KERNEL])
    model.export(str(path), format="tf_saved_model", verbose=False)
    return str(path)
