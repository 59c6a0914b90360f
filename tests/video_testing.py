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
