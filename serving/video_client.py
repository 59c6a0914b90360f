"""Client side of serving from video: decode a file here, encode it on the server.

:func:`encode_video` decodes with PyAV through ``beam.video_decode`` at the layout the
served model reports (``video_layout`` of its ``encode`` signatures: the frame rate,
frame size, resize mode and snippets of the shards it was trained on), so the frames are
the ones ``beam.extract_features`` would have made. :func:`iter_chunks` cuts the frame
stream into chunks of whole snippets, each at most ``chunk_bytes`` of payload (JPEG
strings, or raw frames), each starting at a snippet start: with S < N consecutive
chunks share N - S frames, so every snippet is encoded from exactly its frames; the
padded last snippet is completed as ``beam.video_decode`` completes it. Chunks go to
``encode_jpeg`` (default) or ``encode`` (``raw=True``: exact, ~50x the bytes), a few in
flight while the next ones decode; the features are concatenated in order and
``detect`` is called on them by the caller (``serving.batch_client``).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from concurrent import futures
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from beam.video_decode import VideoDecodeError, open_frames
from serving import signatures
from serving.grpc_client import ClientInputError, DetectionClient, ServingError
from serving.video_layout import LayoutError, VideoLayout

DEFAULT_JPEG_QUALITY = 90
# Snippets per encode request: one encoder batch of the served graph (video_graph.ENCODER_BATCH);
# small requests keep two in flight busy while the next frames decode (benchmarks/video_serving_bench.py).
DEFAULT_CHUNK_SNIPPETS = 8


@dataclasses.dataclass
class EncodedVideo:
    """A video's snippet features as the server encoded them, and what it cost."""

    features: np.ndarray  # (T, D) float32
    duration: float  # seconds: the container's, else the end of the last frame
    num_frames: int  # decoded frames at the layout's rate (padding not counted)
    chunks: int  # encode requests
    payload_bytes: int  # frame bytes sent
    seconds: dict[str, float]  # "decode" (PyAV + JPEG on this side), "encode" (request wall time)


def jpeg(frame: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (4:2:0, TF's encoder)."""
    return tf.io.encode_jpeg(frame, quality=quality).numpy()


def fetch_layout(client: DetectionClient) -> VideoLayout:
    """The served model's layout (an ``encode`` call on zero frames). Raises
    ClientInputError when the model was exported without ``--video-encoder``."""
    try:
        out = client.predict({signatures.FRAMES: np.zeros([1, 0, 1, 1, 3], np.uint8)}, signatures.ENCODE)
    except ServingError as e:
        if "not found" in e.details.lower():
            raise ClientInputError(f"model {client.model_name!r} on {client.server} has no {signatures.ENCODE} "
                                   "signature: export it with serving.export --video-encoder SPEC") from None
        raise
    raw = out[signatures.VIDEO_LAYOUT].reshape(-1)[0]
    try:
        return VideoLayout.from_json(raw, f"{client.server} {signatures.VIDEO_LAYOUT}")
    except LayoutError as e:
        raise ClientInputError(str(e)) from None


def iter_chunks(frames: Iterable, layout: VideoLayout, chunk_bytes: int, size_of: Callable[[object], int],
                max_snippets: int | None = None) -> Iterator[tuple[list, int]]:
    """(frames of the chunk, snippets in it) for a stream of frames (any objects; their
    payload is ``size_of(frame)`` bytes). Each chunk starts at a snippet start and holds
    whole snippets, at most ``chunk_bytes`` and ``max_snippets`` of them; after the stream the last frame is repeated
    as ``layout.padding_frames`` says. Raises ClientInputError when one snippet alone is
    larger than ``chunk_bytes``."""
    n, s = layout.snippet_frames, layout.snippet_stride
    buf: list = []
    sizes: list[int] = []
    taken = 0  # snippets assigned to the chunk being built (frames buf[: (taken - 1) * s + n])

    def grow():
        nonlocal buf, sizes, taken
        while taken * s + n <= len(buf):  # the next snippet's frames are all here
            if sum(sizes[: taken * s + n]) <= chunk_bytes and (max_snippets is None or taken < max_snippets):
                taken += 1
                continue
            if taken == 0:  # (max_snippets >= 1)
                raise ClientInputError(
                    f"one snippet ({n} frames) is {sum(sizes[:n])} bytes, above the {chunk_bytes}-byte chunk "
                    "limit: send JPEG frames (not --raw-frames), lower --jpeg-quality, or export the model "
                    "with a larger --max-chunk-bytes")
            yield buf[: (taken - 1) * s + n], taken
            buf, sizes, taken = buf[taken * s:], sizes[taken * s:], 0

    total = 0
    for frame in frames:
        buf.append(frame)
        sizes.append(size_of(frame))
        total += 1
        yield from grow()
    for _ in range(layout.padding_frames(total)):
        buf.append(buf[-1])
        sizes.append(sizes[-1])
        yield from grow()
    if taken:
        yield buf[: (taken - 1) * s + n], taken


def encode_video(client: DetectionClient, path: str | Path, layout: VideoLayout, *, raw: bool = False,
                 jpeg_quality: int = DEFAULT_JPEG_QUALITY, chunk_bytes: int | None = None,
                 chunk_snippets: int = DEFAULT_CHUNK_SNIPPETS, in_flight: int = 2,
                 progress: bool = True) -> EncodedVideo:
    """Decodes ``path`` at ``layout`` and has the server encode it, chunk by chunk.

    ``chunk_snippets`` caps the snippets per request, ``in_flight`` the requests running
    while the next chunk decodes.

    Raises ClientInputError (a one-line message naming the file) for a video that
    cannot be decoded (unreadable, no video stream, no frames, truncated, ...) and
    ServingError when a request fails.
    """
    path = str(path)
    chunk_bytes = min(chunk_bytes or layout.max_chunk_bytes, layout.max_chunk_bytes)
    signature = signatures.ENCODE if raw else signatures.ENCODE_JPEG
    seconds = {"decode": 0.0, "encode": 0.0}
    pending: collections.deque = collections.deque()
    features: list[np.ndarray] = []
    count = {"frames": 0, "chunks": 0, "bytes": 0}
    meta = {"duration": 0.0}

    def encode_one(chunk: list, expected: int) -> np.ndarray:
        start = time.perf_counter()
        if raw:
            inputs = {signatures.FRAMES: np.stack(chunk)[None]}  # F x (H, W, 3) -> (1, F, H, W, 3)
        else:
            inputs = {signatures.JPEG_FRAMES: np.array([chunk], dtype=object)}  # (1, F) JPEG strings
        out = client.predict(inputs, signature, output_filter=[signatures.SNIPPET_FEATURES])
        feats = out[signatures.SNIPPET_FEATURES][0]  # (1, k, D) -> (k, D)
        if feats.shape[0] != expected:
            raise ServingError(grpc.StatusCode.INTERNAL, f"{signature} returned "
                               f"{feats.shape[0]} snippets for a chunk of {expected}", client.server)
        seconds["encode"] += time.perf_counter() - start
        return feats

    def frames():
        with open_frames(path, layout.decode_options()) as (info, stream):
            rate = layout.fps or info.fps
            estimate = int(round(info.duration * rate)) if info.duration > 0 else None
            bar = tqdm(total=estimate, desc=Path(path).name, unit="frame", leave=False,
                       disable=None if progress else True)  # None: a bar on a terminal only
            last_t = 0.0
            tick = time.perf_counter()
            try:
                for t, img in stream:
                    last_t = t
                    item = img if raw else jpeg(img, jpeg_quality)
                    count["frames"] += 1
                    bar.update(1)
                    seconds["decode"] += time.perf_counter() - tick
                    yield item
                    tick = time.perf_counter()
            finally:
                bar.close()
            meta["duration"] = info.duration if info.duration > 0 else last_t + 1.0 / rate

    size_of = (lambda f: f.nbytes) if raw else len
    try:
        with futures.ThreadPoolExecutor(max(1, in_flight)) as pool:
            for chunk, k in iter_chunks(frames(), layout, chunk_bytes, size_of, chunk_snippets):
                count["chunks"] += 1
                count["bytes"] += sum(size_of(f) for f in chunk)
                pending.append(pool.submit(encode_one, chunk, k))
                while len(pending) >= max(1, in_flight):
                    features.append(pending.popleft().result())
            while pending:
                features.append(pending.popleft().result())
    except VideoDecodeError as e:
        raise ClientInputError(f"{e.path}: {e.reason}: {e.detail}") from None
    feats = np.concatenate(features) if features else np.zeros([0, layout.feature_dim], np.float32)
    if len(feats) != layout.num_snippets(count["frames"]):  # the chunking's own invariant
        raise ClientInputError(f"{path}: {len(feats)} snippets encoded, {layout.num_snippets(count['frames'])} "
                               f"expected for {count['frames']} frames")
    return EncodedVideo(feats.astype(np.float32), float(meta["duration"]), count["frames"], count["chunks"],
                        count["bytes"], seconds)


def iter_videos(client: DetectionClient, paths: Sequence[str], **options) -> Iterator[tuple[str, object, float]]:
    """(video_id, features (T, D) or the ClientInputError/ServingError, duration) per
    file -- the input rows of ``serving.batch_client``; the id is the file's stem."""
    layout = fetch_layout(client)
    for p in paths:
        video_id = Path(p).stem
        if not Path(p).is_file():
            yield video_id, ClientInputError(f"{p}: no such video file"), 0.0
            continue
        try:
            enc = encode_video(client, p, layout, **options)
        except (ClientInputError, ServingError) as e:
            yield video_id, e, 0.0
            continue
        yield video_id, enc.features, enc.duration
