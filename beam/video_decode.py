"""Decodes a video file (PyAV) into fixed-size RGB snippets of N frames.

A snippet is ``N`` consecutive frames (after optional resampling to a target fps),
windows start every ``S`` frames (``S = N = 16`` as in the paper's feature extractors).
:func:`iter_snippets` is a generator: at most ``max(N, S)`` frames are held in memory,
so long videos stream through. Every failure to read a file raises
:class:`VideoDecodeError` with a short machine-readable ``reason`` (used as the
dead-letter reason and Beam counter name) and a one-line message naming the file.

Time conventions: frame ``j`` of a stream at rate ``r`` covers ``[t_j, t_j + 1/r)``
seconds with ``t_j`` its presentation time relative to the stream start. A snippet's
centre time is the midpoint of the span covered by its *real* frames:
``(t_first + t_last + 1/r) / 2`` (for a padded last snippet only the real frames count).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from typing import Iterable, Iterator, TypeVar

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")

RESIZE_MODES = ("crop", "stretch")


class VideoDecodeError(Exception):
    """A video could not be decoded. ``reason`` is a short snake_case tag."""

    def __init__(self, path: str, reason: str, detail: str):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}: {detail}")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream."""

    path: str
    duration: float  # seconds, from the stream (else the container)
    fps: float  # native average frame rate
    num_frames: int  # as reported by the container; 0 when unknown
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class Snippet:
    """One snippet: ``frames`` is (N, H, W, 3) uint8 RGB."""

    index: int
    frames: np.ndarray
    center_time: float  # seconds
    num_real_frames: int  # < N only for a padded last snippet


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How to cut a video into snippets.

    snippet_frames: N frames per snippet. snippet_stride: S frames between snippet
    starts. fps: resample to this rate first (None = native rate). height/width: output
    frame size (None = native size). resize_mode: "crop" resizes the shorter side to
    cover (height, width) keeping the aspect ratio and centre-crops; "stretch" resizes
    to (height, width) directly. pad_last: add one last snippet padded by repeating its
    last frame when frames after the last full window (or fewer than N frames in all)
    would otherwise be dropped, so the snippets cover the whole video.
    min_frame_fraction: a file that decodes to fewer than this fraction of the frames
    its container announces is rejected as truncated.
    """

    snippet_frames: int = 16
    snippet_stride: int = 16
    fps: float | None = None
    height: int | None = None
    width: int | None = None
    resize_mode: str = "crop"
    pad_last: bool = True
    min_frame_fraction: float = 0.95

    def __post_init__(self):
        if self.snippet_frames < 1 or self.snippet_stride < 1:
            raise ValueError(
                f"snippet_frames and snippet_stride must be >= 1, got {self.snippet_frames}, {self.snippet_stride}"
            )
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0 or None, got {self.fps}")
        if (self.height is None) != (self.width is None):
            raise ValueError(f"give both height and width or neither, got {self.height}x{self.width}")
        if self.height is not None and (self.height < 1 or self.width < 1):
            raise ValueError(f"height and width must be >= 1, got {self.height}x{self.width}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")


@contextlib.contextmanager
def _opened(path: str):
    """Opens ``path`` with PyAV (local path, or any Beam FileSystem URL such as gs://)."""
    import av  # imported lazily: only the decode workers need PyAV

    handle = None
    try:
        if "://" in str(path):
            from apache_beam.io.filesystems import FileSystems

            handle = FileSystems.open(str(path))
            container = av.open(handle)
        else:
            container = av.open(str(path))
    except FileNotFoundError as e:
        raise VideoDecodeError(path, "file_not_found", str(e)) from None
    except Exception as e:  # av.error.InvalidDataError and friends: garbage, truncated moov, empty file
        if handle is not None:
            handle.close()
        raise VideoDecodeError(path, "unreadable_container", f"{type(e).__name__}: {e}") from None
    try:
        if not container.streams.video:
            raise VideoDecodeError(path, "no_video_stream", "the container has no video stream")
        yield container
    finally:
        container.close()
        if handle is not None:
            handle.close()


def _stream_info(path: str, container) -> VideoInfo:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    if duration <= 0 and container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE is microseconds
    num_frames = int(stream.frames or 0)  # 0 when the container does not say (e.g. webm)
    return VideoInfo(
        path=str(path),
        duration=duration,
        fps=fps,
        num_frames=num_frames,
        width=int(stream.codec_context.width or 0),
        height=int(stream.codec_context.height or 0),
    )


def probe(path: str) -> VideoInfo:
    """Reads the container header only (no decoding). Raises VideoDecodeError."""
    with _opened(path) as container:
        info = _stream_info(path, container)
    if info.fps <= 0:
        raise VideoDecodeError(path, "no_frame_rate", "the video stream has no frame rate")
    return info


def _resize_plan(src_h: int, src_w: int, opts: DecodeOptions) -> tuple[int, int, int, int] | None:
    """(scaled_h, scaled_w, crop_top, crop_left) or None to keep the native size."""
    if opts.height is None:
        return None
    h, w = opts.height, opts.width
    if opts.resize_mode == "stretch":
        return h, w, 0, 0
    scale = max(h / src_h, w / src_w)  # cover the target, keep the aspect ratio
    sh, sw = max(h, round(src_h * scale)), max(w, round(src_w * scale))
    return sh, sw, (sh - h) // 2, (sw - w) // 2


def _to_rgb(frame, plan, opts: DecodeOptions) -> np.ndarray:
    """One av.VideoFrame -> (H, W, 3) uint8 RGB."""
    if plan is None:
        return frame.to_ndarray(format="rgb24")
    sh, sw, top, left = plan
    img = frame.reformat(width=sw, height=sh, format="rgb24").to_ndarray()
    return np.ascontiguousarray(img[top : top + opts.height, left : left + opts.width])


def _timed_frames(path: str, container, info: VideoInfo, opts: DecodeOptions) -> Iterator[tuple[float, np.ndarray]]:
    """Yields (time_seconds, (H, W, 3) uint8) at the native or the target rate.

    Checks for truncation at the end (fewer decoded frames than announced).
    """
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    plan = None
    decoded = 0
    # Target rate: the last decoded frame waits for the next one (its display interval
    # ends there); it is converted to RGB only if some output time falls in it, so
    # lowering the rate also skips the resize of dropped frames.
    prev_t, prev_frame, prev_img = 0.0, None, None
    next_k = 0  # index of the next output frame at the target rate
    try:
        for frame in container.decode(stream):
            t = (frame.time - start) if frame.time is not None else decoded / info.fps
            if plan is None and opts.height is not None:
                plan = _resize_plan(frame.height, frame.width, opts)
            decoded += 1
            if opts.fps is None:
                yield t, _to_rgb(frame, plan, opts)
                continue
            # Output frame k (time k/fps) shows the latest frame with time <= k/fps.
            while prev_frame is not None and next_k / opts.fps < t - 1e-9:
                if prev_img is None:
                    prev_img = _to_rgb(prev_frame, plan, opts)
                yield next_k / opts.fps, prev_img
                next_k += 1
            prev_t, prev_frame, prev_img = t, frame, None
    except VideoDecodeError:
        raise
    except Exception as e:  # corrupt packets mid-stream
        raise VideoDecodeError(path, "decode_error", f"after {decoded} frames: {type(e).__name__}: {e}") from None
    if decoded == 0:
        raise VideoDecodeError(path, "no_frames", "no frame could be decoded")
    announced = info.num_frames or int(round(info.duration * info.fps))  # else estimate from the duration
    if announced > 0 and decoded < opts.min_frame_fraction * announced:
        raise VideoDecodeError(path, "truncated", f"decoded {decoded} of {announced} announced frames")
    if prev_frame is not None:  # flush the target-rate tail up to the end of the last native frame
        end = prev_t + 1.0 / info.fps
        while next_k / opts.fps < end - 1e-9:
            if prev_img is None:
                prev_img = _to_rgb(prev_frame, plan, opts)
            yield next_k / opts.fps, prev_img
            next_k += 1


@contextlib.contextmanager
def open_frames(path: str, opts: DecodeOptions, info: VideoInfo | None = None):
    """``with open_frames(path, opts) as (info, frames)``: the container's info and an
    iterator of (time_seconds, (H, W, 3) uint8 RGB) at the target (or native) rate, cut
    and resized as ``opts`` says: the frames every snippet is made of. Raises
    VideoDecodeError (also while iterating). The serving client streams these frames, so
    its snippets are the ones :func:`iter_snippets` yields to ``beam.extract_features``.
    """
    with _opened(path) as container:
        if info is None:
            info = _stream_info(path, container)
        if info.fps <= 0:
            raise VideoDecodeError(path, "no_frame_rate", "the video stream has no frame rate")
        yield info, _timed_frames(path, container, info, opts)


def iter_snippets(path: str, opts: DecodeOptions, info: VideoInfo | None = None) -> Iterator[Snippet]:
    """Yields the snippets of ``path`` in order. Raises VideoDecodeError (possibly after
    some snippets were yielded: callers must treat the video as failed as a whole).

    At most ``max(N, S)`` frames are held in memory.
    """
    with open_frames(path, opts, info) as (info, frames):
        rate = opts.fps or info.fps
        for index, buf in enumerate(window_frames(frames, opts.snippet_frames, opts.snippet_stride, opts.pad_last)):
            yield _make_snippet(index, buf, opts.snippet_frames, rate)


def window_frames(frames: Iterable[T], n: int, s: int, pad_last: bool = True) -> Iterator[list[T]]:
    """The real frames of each snippet of a frame stream, in order: windows of ``n``
    frames every ``s`` frames, then (``pad_last``) the frames after the last full window
    (or all of them when there are fewer than ``n``), which the caller pads. At most
    ``max(n, s)`` frames are held."""
    buf: list[T] = []  # frames next_start .. next_start+len-1
    next_start = 0  # frame index of the next window's first frame
    covered_end = 0  # frames [0, covered_end) lie in an emitted snippet
    count = 0
    total = 0
    for j, item in enumerate(frames):
        total = j + 1
        if j < next_start:  # stride > N: frames between windows are skipped
            continue
        buf.append(item)
        if len(buf) == n:
            yield list(buf)
            count += 1
            covered_end = next_start + n
            next_start += s
            buf = buf[s:] if s < n else []
    # Frames after the last full window (or a video shorter than N): one padded snippet.
    if pad_last and buf and (count == 0 or total > covered_end):
        yield buf


def _make_snippet(index: int, buf: list[tuple[float, np.ndarray]], n: int, rate: float) -> Snippet:
    real = len(buf)
    frames = np.stack([img for _, img in buf])  # list of (H, W, 3) -> (real, H, W, 3)
    if real < n:  # pad by repeating the last frame: (real, H, W, 3) -> (N, H, W, 3)
        frames = np.concatenate([frames, np.repeat(frames[-1:], n - real, axis=0)])
    center = 0.5 * (buf[0][0] + buf[-1][0] + 1.0 / rate)
    return Snippet(index=index, frames=frames, center_time=float(center), num_real_frames=real)


def expected_num_snippets(num_frames: int, snippet_frames: int, snippet_stride: int, pad_last: bool = True) -> int:
    """Number of snippets :func:`iter_snippets` yields for ``num_frames`` frames."""
    n, s = snippet_frames, snippet_stride
    full = 0 if num_frames < n else (num_frames - n) // s + 1
    if not pad_last:
        return full
    if full == 0:
        return 1 if num_frames > 0 else 0
    covered = (full - 1) * s + n
    next_start = full * s
    return full + 1 if covered < num_frames and next_start < num_frames else full


def padding_frames(num_frames: int, snippet_frames: int, snippet_stride: int, pad_last: bool = True) -> int:
    """Copies of the last frame to append to ``num_frames`` frames so that windows of N
    frames every S frames over the longer stream are exactly :func:`iter_snippets`'
    snippets (its padded last snippet repeats the last frame): 0 when it pads nothing."""
    n, s = snippet_frames, snippet_stride
    full = 0 if num_frames < n else (num_frames - n) // s + 1
    if expected_num_snippets(num_frames, n, s, pad_last) == full:
        return 0
    return full * s + n - num_frames  # the padded snippet starts at frame full * S


def resampled_num_frames(duration_frames: int, native_fps: float, target_fps: float) -> int:
    """Frames produced when resampling ``duration_frames`` native frames to ``target_fps``."""
    end = duration_frames / native_fps
    return int(math.ceil(end * target_fps - 1e-9))
