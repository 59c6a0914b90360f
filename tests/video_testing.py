"""Tiny synthetic videos written with PyAV for the raw-video tests.

Frame ``i`` is a solid colour that identifies it: R = 10 + 8 * i (mod 256), G = 128,
B = 64, plus (optionally) a white 8-px vertical bar moving 2 px a frame on the left
half. Codecs are lossy, so compare colours with a tolerance of a few levels.
"""

from __future__ import annotations

import os

import numpy as np


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
