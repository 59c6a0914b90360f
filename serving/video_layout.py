"""How a served model cuts video into snippets: the :class:`VideoLayout` its ``encode``,
``encode_jpeg`` and ``detect_video`` signatures implement, read from the manifest of the
shards the model was trained on, and the checks that refuse an encoder that would feed
the model other features than it learned from.

The layout travels with the SavedModel (``assets.extra/video_layout.json`` and the
``video_layout`` output of the encode signatures), so a client decodes every video the
way ``beam.extract_features`` decoded the training videos: same frame rate, frame size,
resize mode, snippet length N, stride S and padded last snippet. Pure Python.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from beam.encoders.spec import EncoderSpec
from beam.video_decode import RESIZE_MODES, DecodeOptions, expected_num_snippets, padding_frames
from tags_tf.data.schema import Manifest

# Request limits of the video signatures (checked in the graph before any decoding).
DEFAULT_MAX_CHUNK_BYTES = 2 * 1024 * 1024  # one encode request's frame payload: half of gRPC's default 4 MiB
DEFAULT_MAX_VIDEO_BYTES = 32 * 1024 * 1024  # one detect_video request's JPEG bytes
DEFAULT_MAX_FRAME_PIXELS = 4096 * 4096  # a JPEG's declared height x width (a decompression bomb stops here)


class LayoutError(ValueError):
    """The encoder, the layout or the manifest disagree (one-line message)."""


@dataclasses.dataclass(frozen=True)
class VideoLayout:
    """Snippets of ``snippet_frames`` frames every ``snippet_stride`` frames, at ``fps``
    (None: each video's native rate), frames of ``height`` x ``width`` made by
    ``resize_mode``; ``pad_last``: a last snippet padded with the last frame covers the
    frames after the last full window. ``encoder`` is the spec's ``KIND:NAME`` (no paths)."""

    encoder: str
    feature_dim: int
    snippet_frames: int
    snippet_stride: int
    fps: float | None
    height: int
    width: int
    resize_mode: str = "crop"
    pad_last: bool = True
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
    max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS

    def __post_init__(self):
        for name in ("feature_dim", "snippet_frames", "snippet_stride", "height", "width", "max_chunk_bytes",
                     "max_video_bytes", "max_frame_pixels"):
            if int(getattr(self, name)) < 1:
                raise LayoutError(f"video layout: {name} must be >= 1, got {getattr(self, name)}")
        if self.fps is not None and not self.fps > 0:
            raise LayoutError(f"video layout: fps must be > 0 or null (native rate), got {self.fps}")
        if self.resize_mode not in RESIZE_MODES:
            raise LayoutError(f"video layout: resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")

    @property
    def frame_bytes(self) -> int:
        """Bytes of one raw uint8 RGB frame at the layout's size."""
        return self.height * self.width * 3

    def decode_options(self) -> DecodeOptions:
        """The ``beam.video_decode`` options that cut a file into this layout's frames."""
        return DecodeOptions(snippet_frames=self.snippet_frames, snippet_stride=self.snippet_stride, fps=self.fps,
                             height=self.height, width=self.width, resize_mode=self.resize_mode,
                             pad_last=self.pad_last)

    def num_snippets(self, num_frames: int) -> int:
        """Snippets of a video of ``num_frames`` frames (the padded last one included)."""
        return expected_num_snippets(num_frames, self.snippet_frames, self.snippet_stride, self.pad_last)

    def padding_frames(self, num_frames: int) -> int:
        """Copies of the last frame that complete the padded last snippet (0: none)."""
        return padding_frames(num_frames, self.snippet_frames, self.snippet_stride, self.pad_last)

    def chunk_frames(self, num_snippets: int) -> int:
        """Frames of a chunk holding ``num_snippets`` consecutive snippets."""
        return (num_snippets - 1) * self.snippet_stride + self.snippet_frames if num_snippets > 0 else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "video layout") -> "VideoLayout":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(data) - names), sorted(
            f.name for f in dataclasses.fields(cls)
            if f.name not in data and f.default is dataclasses.MISSING)
        if unknown or missing:
            raise LayoutError(f"{source}: unknown fields {unknown}, missing fields {missing}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "video layout") -> "VideoLayout":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise LayoutError(f"{source}: not JSON ({e})") from None
        if not isinstance(data, dict):
            raise LayoutError(f"{source}: expected a JSON object")
        return cls.from_dict(data, source)


def layout_from_manifest(manifest: Manifest, source: str = "manifest.json", **limits) -> VideoLayout:
    """The layout ``beam.extract_features`` recorded in ``manifest``'s ``encoder`` block.

    Raises LayoutError for shards of precomputed features (``beam.build_shards``): they
    record no encoder, so nothing could check a served encoder against them.
    """
    enc = manifest.extra.get("encoder")
    if not isinstance(enc, Mapping):
        raise LayoutError(
            f"{source}: written by {manifest.created_by or 'an unknown job'}, it records no video encoder or "
            "snippet layout; a model served from video must be trained on beam.extract_features shards "
            "(serve precomputed features through the detect signature)")
    try:
        spec = EncoderSpec.parse(enc["spec"])
        return VideoLayout(
            encoder=f"{spec.kind}:{spec.name}",
            feature_dim=int(manifest.feature_dim),
            snippet_frames=int(enc["clip_frames"]),
            snippet_stride=int(enc["snippet_stride"]),
            fps=None if enc.get("fps") is None else float(enc["fps"]),
            height=int(enc["height"]),
            width=int(enc["width"]),
            resize_mode=str(enc.get("resize_mode", "crop")),
            pad_last=bool(enc.get("pad_last", True)),
            **limits,
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, LayoutError):
            raise
        raise LayoutError(f"{source}: encoder block {dict(enc)} is incomplete ({type(e).__name__}: {e})") from None


def check_encoder(trained: VideoLayout, spec: str, clip_frames: int, height: int, width: int, feature_dim: int,
                  requested: Mapping[str, Any] | None = None) -> None:
    """Raises LayoutError (one line) when the encoder ``spec`` (its clips of
    ``clip_frames`` x ``height`` x ``width``, features of ``feature_dim``) or the
    ``requested`` layout values (``snippet_frames``, ``snippet_stride``, ``fps``; None =
    the manifest's) differ from the layout the model was trained on."""
    parsed = EncoderSpec.parse(spec)
    served = {
        "encoder": f"{parsed.kind}:{parsed.name}",
        "feature_dim": feature_dim,
        "snippet_frames": clip_frames,
        "height": height,
        "width": width,
    }
    for key, value in (requested or {}).items():
        if value is not None:
            served[key] = value
    what = {"encoder": "encoder", "feature_dim": "feature width", "snippet_frames": "snippet frames",
            "snippet_stride": "snippet stride", "fps": "frame rate", "height": "frame height", "width": "frame width"}
    for key, value in served.items():
        want = getattr(trained, key)
        same = (want is None and value is None) or (
            want is not None and value is not None and (abs(float(want) - float(value)) < 1e-9
                                                        if key == "fps" else str(want) == str(value)))
        if not same:
            raise LayoutError(
                f"--video-encoder {spec}: {what[key]} {value if value is not None else 'native'} differs from "
                f"the {want if want is not None else 'native'} of the features the model was trained on "
                f"(manifest encoder {trained.encoder}, {trained.snippet_frames} frames every "
                f"{trained.snippet_stride} at {trained.fps or 'native'} fps, {trained.height}x{trained.width})")
