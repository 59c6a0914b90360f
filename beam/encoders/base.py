"""What every snippet encoder is: :class:`Encoder` (uint8 clips (B, N, H, W, 3) RGB ->
float32 features (B, D)), the :class:`ClipSpec` it consumes, and the helpers the
backends share (weights options, per-frame pooling, short error messages).

TensorFlow is imported inside the functions that need it, so that the launching
process can parse and pre-flight a spec without loading it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable

import numpy as np

from beam.encoders.spec import EncoderError, EncoderSpec, parse_size


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What an encoder consumes: snippets of ``frames`` frames of ``height`` x ``width``."""

    frames: int
    height: int
    width: int


class Encoder(abc.ABC):
    """uint8 clips (B, N, H, W, 3) RGB -> float32 features (B, D).

    A backend's constructor is ``(spec, snippet_frames, allow_random_init)``; it sets
    :attr:`clip` and calls :meth:`_trace`. Its classmethod :meth:`preflight` checks the
    same spec without building the network (``WEIGHTS_OPTION`` names the option that
    holds its weights file, checked by :meth:`resolve_weights`).
    """

    WEIGHTS_OPTION = ""

    def __init__(self, spec: EncoderSpec, clip: ClipSpec):
        self.spec = spec
        self.clip = clip
        self._fn: Callable | None = None  # tf.function over (B, N, H, W, 3) uint8
        self.feature_dim = 0
        self.resources: list = []  # the objects holding the weights (what a SavedModel export tracks)

    @property
    def graph_fn(self) -> Callable:
        """The traced function: uint8 tensor (B, N, H, W, 3) -> float32 (B, D); callable
        inside another tf.function (``serving.export --video-encoder`` puts it in the
        served graph, with :attr:`resources`)."""
        return self._fn

    @classmethod
    def default_size(cls, spec: EncoderSpec) -> int:
        """The model's square input size; raises EncoderError for an unknown model name."""
        raise NotImplementedError

    @classmethod
    def clip_of(cls, spec: EncoderSpec, snippet_frames: int) -> ClipSpec:
        """The clip ``spec`` asks for: option ``size=`` or the model's default size."""
        default = cls.default_size(spec)
        h, w = parse_size(spec, (default, default))
        return ClipSpec(snippet_frames, h, w)

    @classmethod
    def resolve_weights(cls, spec: EncoderSpec, path: str) -> str:
        """The weights file to load for option ``WEIGHTS_OPTION=path``; raises when absent."""
        raise NotImplementedError

    @classmethod
    def preflight(cls, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool) -> ClipSpec:
        """Checks ``spec`` and its weights file without building the network."""
        clip = cls.clip_of(spec, snippet_frames)
        path = weights_path(spec, cls.WEIGHTS_OPTION, allow_random_init)
        if path is not None:
            cls.resolve_weights(spec, path)
        return clip

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        clips = np.asarray(clips)
        want = (self.clip.frames, self.clip.height, self.clip.width, 3)
        if clips.ndim != 5 or clips.shape[1:] != want:
            want_s = ", ".join(map(str, want))
            raise EncoderError(f"encoder {self.spec}: expected clips (B, {want_s}), got {clips.shape}")
        if clips.dtype != np.uint8:
            raise EncoderError(f"encoder {self.spec}: expected uint8 clips, got {clips.dtype}")
        out = self._fn(tf.convert_to_tensor(clips)).numpy().astype(np.float32)
        if out.shape != (clips.shape[0], self.feature_dim):
            want_s = f"({clips.shape[0]}, {self.feature_dim})"
            raise EncoderError(f"encoder {self.spec}: produced {out.shape}, expected {want_s}")
        return out

    def _trace(self, fn: Callable) -> None:
        """Wraps ``fn`` (uint8 tensor (B, N, H, W, 3) -> (B, D)) in one tf.function."""
        import tensorflow as tf

        sig = [tf.TensorSpec([None, self.clip.frames, self.clip.height, self.clip.width, 3], tf.uint8)]
        self._fn = tf.function(fn, input_signature=sig, reduce_retracing=True)
        probe = np.zeros((1, self.clip.frames, self.clip.height, self.clip.width, 3), np.uint8)
        self.feature_dim = int(self._fn(tf.constant(probe)).shape[-1])


def weights_path(spec: EncoderSpec, key: str, allow_random_init: bool) -> str | None:
    """Option ``key`` (a weights file). Nothing is ever downloaded, so its absence is
    refused unless ``allow_random_init`` (tests and smoke runs only)."""
    path = spec.get(key)
    if path is None and not allow_random_init:
        raise EncoderError(
            f"encoder spec {spec}: no {key}=PATH given; features from a randomly initialized "
            f"network are meaningless, so pass {key}=PATH in the spec (nothing is downloaded) "
            "or --allow_random_init for tests and smoke runs"
        )
    return path


def require_file(spec: EncoderSpec, key: str, path: str, tf_checkpoint: bool = False) -> None:
    """Raises EncoderError unless ``path`` (or, for a TF checkpoint prefix, ``path.index``) exists."""
    import tensorflow as tf

    exists = tf.io.gfile.exists(path) or (tf_checkpoint and tf.io.gfile.exists(path + ".index"))
    if not exists:
        raise EncoderError(f"encoder spec {spec}: {key} file {path!r} does not exist")


def first_line(e: BaseException) -> str:
    """The first line of an exception message (TF errors are long), capped at 300 chars."""
    return (str(e).splitlines() or [""])[0][:300]


def frames_then_pool(frame_fn: Callable, clips):
    """Applies a per-frame model and mean-pools over the snippet's frames.

    clips (B, N, H, W, 3) -> frame_fn on (B*N, H, W, 3) -> (B*N, D) -> (B, N, D) -> (B, D).
    """
    import tensorflow as tf

    shape = tf.shape(clips)
    frames = tf.reshape(clips, tf.concat([[-1], shape[2:]], 0))  # (B, N, H, W, 3) -> (B*N, H, W, 3)
    feats = frame_fn(frames)
    feats = tf.reshape(feats, tf.concat([shape[:2], [-1]], 0))  # (B*N, D) -> (B, N, D)
    return tf.reduce_mean(feats, axis=1)
