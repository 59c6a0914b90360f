"""Snippet encoders for raw-video feature extraction, chosen by a SPEC string.

SPEC grammar: ``KIND:NAME[:key=value]...`` (options are the trailing ``key=value``
parts, so NAME may itself contain ``:`` as in ``savedmodel:gs://bucket/model``).

``movinet:a0[:checkpoint=PATH][:size=172][:causal=false][:num_classes=600][:conv_type=3d]``
    MoViNet (tf-models-official ``official.projects.movinet``, a tf_keras model),
    model ids a0..a5. Weights come from a TF checkpoint of
    ``tf.train.Checkpoint(model=MovinetClassifier(...))`` as in the official
    release (``checkpoint=movinet_a0_base`` -- a directory means its latest
    checkpoint -- or ``movinet_a0_base/ckpt-1``) or a ``.h5`` weights file. The feature is
    the backbone's ``head`` endpoint (globally pooled), D = 480 for a0. The options
    must describe the checkpoint's model (``causal=true`` for the ``*_stream``
    releases; ``conv_type=2plus1d`` only with a (2+1)D checkpoint).
    ``fast_conv=auto|true|false``: on CPU (auto: when TF sees no GPU) the 3D convs
    skip the XLA path of tf-models-official (see ``beam.movinet_fast``, ~60x faster,
    same outputs).
``keras_app:NAME[:weights=PATH][:size=224][:alpha=1.0]``
    A ``keras.applications`` image model (see :data:`KERAS_APPS`) applied to every
    frame with ``include_top=False, pooling="avg"`` and mean-pooled over the
    snippet's frames (a TSN-style RGB stream).
``savedmodel:PATH[:signature=serving_default][:input=NAME][:output=NAME][:size=HxW][:input_range=0_1]``
    Any SavedModel whose signature takes one float (or uint8) tensor of clips
    (B, N, H, W, 3) -- or frames (B, H, W, 3), then applied per frame and
    mean-pooled -- and returns (B, D) or (B, ..., D) (middle axes are mean-pooled).

Nothing is ever downloaded. A model without weights (no ``checkpoint=`` /
``weights=``) is refused unless ``allow_random_init=True`` (CLI
``--allow_random_init``), which is meant for tests and smoke runs only.

Every encoder maps uint8 clips (B, N, H, W, 3) RGB -> float32 features (B, D).

Long because the spec grammar and its three backends share one pre-flight check; a split
per backend is open (issue 14).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import os
import re
from typing import Callable, Mapping

import numpy as np

log = logging.getLogger(__name__)

KINDS = ("movinet", "keras_app", "savedmodel")
_OPTION_KEYS = {
    "movinet": {"checkpoint", "size", "causal", "num_classes", "conv_type", "fast_conv"},
    "keras_app": {"weights", "size", "alpha"},
    "savedmodel": {"signature", "input", "output", "size", "input_range"},
}
_OPTION_RE = re.compile(r"^([a-z_]+)=(.*)$")
MOVINET_IDS = ("a0", "a1", "a2", "a3", "a4", "a5")
MOVINET_CONV_TYPES = ("3d", "2plus1d", "3d_2plus1d")
MOVINET_DEFAULT_SIZE = {"a0": 172, "a1": 172, "a2": 224, "a3": 256, "a4": 290, "a5": 320}
INPUT_RANGES = {"0_1": (0.0, 1.0), "-1_1": (-1.0, 1.0), "0_255": (0.0, 255.0)}


class EncoderError(ValueError):
    """A bad encoder spec or model (message names the spec and what was expected)."""


# name -> (keras.applications constructor, preprocess module, default square size)
KERAS_APPS: Mapping[str, tuple[str, str, int]] = {
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", 224),
    "mobilenet_v3_small": ("MobileNetV3Small", "mobilenet_v3", 224),
    "mobilenet_v3_large": ("MobileNetV3Large", "mobilenet_v3", 224),
    "resnet50": ("ResNet50", "resnet50", 224),
    "resnet50_v2": ("ResNet50V2", "resnet_v2", 224),
    "inception_v3": ("InceptionV3", "inception_v3", 299),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet", 224),
    "efficientnet_v2_b0": ("EfficientNetV2B0", "efficientnet_v2", 224),
    "convnext_tiny": ("ConvNeXtTiny", "convnext", 224),
}


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """A parsed SPEC string: ``kind``, ``name`` and the ``key=value`` options."""

    kind: str
    name: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> "EncoderSpec":
        kind, sep, rest = str(spec).partition(":")
        if not sep or kind not in KINDS or not rest:
            raise EncoderError(
                f"encoder spec {spec!r}: expected KIND:NAME[:key=value...] with KIND one of {KINDS}, "
                "e.g. movinet:a0:checkpoint=PATH, keras_app:mobilenet_v3_small, savedmodel:/path/to/model"
            )
        parts: list[str] = []
        for part in rest.split(":"):  # "gs://b/m" stays one part (URL schemes in names and values)
            if part.startswith("//") and parts:
                parts[-1] += ":" + part
            else:
                parts.append(part)
        options: list[tuple[str, str]] = []
        while len(parts) > 1 and _OPTION_RE.match(parts[-1]):  # peel key=value parts off the right
            key, value = _OPTION_RE.match(parts.pop()).groups()
            if key not in _OPTION_KEYS[kind]:
                raise EncoderError(
                    f"encoder spec {spec!r}: unknown option {key!r} for {kind}; known: {sorted(_OPTION_KEYS[kind])}"
                )
            if any(k == key for k, _ in options):
                raise EncoderError(f"encoder spec {spec!r}: option {key!r} given twice")
            options.append((key, value))
        name = ":".join(parts)
        if not name:
            raise EncoderError(f"encoder spec {spec!r}: empty model name/path")
        return cls(kind, name, tuple(sorted(options)))

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def __str__(self) -> str:
        return ":".join([self.kind, self.name] + [f"{k}={v}" for k, v in self.options])


def _parse_size(spec: EncoderSpec, default: tuple[int, int] | None) -> tuple[int, int] | None:
    raw = spec.get("size")
    if raw is None:
        return default
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", raw)
    if not m or int(m.group(1)) < 1:
        raise EncoderError(f"encoder spec {spec}: size must be H or HxW (positive ints), got {raw!r}")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def _parse_bool(spec: EncoderSpec, key: str, default: bool) -> bool:
    raw = spec.get(key)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise EncoderError(f"encoder spec {spec}: {key} must be true/false, got {raw!r}")


def _require_file(spec: EncoderSpec, key: str, path: str, tf_checkpoint: bool = False) -> None:
    import tensorflow as tf

    exists = tf.io.gfile.exists(path) or (tf_checkpoint and tf.io.gfile.exists(path + ".index"))
    if not exists:
        raise EncoderError(f"encoder spec {spec}: {key} file {path!r} does not exist")


def _movinet_checkpoint(spec: EncoderSpec, path: str) -> str:
    """A checkpoint prefix, ``.h5`` file, or a directory (its latest checkpoint, as in
    the extracted ``movinet_a0_base/`` release). Raises EncoderError when absent."""
    import tensorflow as tf

    if not path.endswith(".h5") and tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise EncoderError(f"encoder spec {spec}: checkpoint directory {path!r} holds no TF checkpoint")
        return latest
    _require_file(spec, "checkpoint", path, tf_checkpoint=not path.endswith(".h5"))
    return path


def _pick_tensor(spec: EncoderSpec, kind: str, available) -> str:
    """The signature ``kind`` ("input"/"output") named by option ``kind=``, else its only one."""
    name = spec.get(kind)
    if name is None:
        if len(available) != 1:
            raise EncoderError(
                f"encoder spec {spec}: signature has {kind}s {sorted(available)}; pick one with {kind}=NAME"
            )
        return next(iter(available))
    if name not in available:
        raise EncoderError(f"encoder spec {spec}: signature has no {kind} {name!r}; {kind}s: {sorted(available)}")
    return name


def _first_line(e: BaseException) -> str:
    """The first line of an exception message (TF errors are long), capped at 300 chars."""
    return (str(e).splitlines() or [""])[0][:300]


def _no_weights_error(spec: EncoderSpec, key: str) -> EncoderError:
    return EncoderError(
        f"encoder spec {spec}: no {key}=PATH given; features from a randomly initialized "
        f"network are meaningless, so pass {key}=PATH in the spec (nothing is downloaded) "
        "or --allow_random_init for tests and smoke runs"
    )


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What an encoder consumes: snippets of ``frames`` frames of ``height`` x ``width``."""

    frames: int
    height: int
    width: int


class Encoder(abc.ABC):
    """uint8 clips (B, N, H, W, 3) RGB -> float32 features (B, D)."""

    def __init__(self, spec: EncoderSpec, clip: ClipSpec):
        self.spec = spec
        self.clip = clip
        self._fn: Callable | None = None  # tf.function over (B, N, H, W, 3) uint8
        self.feature_dim = 0

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


def _frames_then_pool(frame_fn: Callable, clips):
    """Applies a per-frame model and mean-pools over the snippet's frames.

    clips (B, N, H, W, 3) -> frame_fn on (B*N, H, W, 3) -> (B*N, D) -> (B, N, D) -> (B, D).
    """
    import tensorflow as tf

    shape = tf.shape(clips)
    frames = tf.reshape(clips, tf.concat([[-1], shape[2:]], 0))  # (B, N, H, W, 3) -> (B*N, H, W, 3)
    feats = frame_fn(frames)
    feats = tf.reshape(feats, tf.concat([shape[:2], [-1]], 0))  # (B*N, D) -> (B, N, D)
    return tf.reduce_mean(feats, axis=1)


class MovinetEncoder(Encoder):
    """MoViNet backbone; the pooled ``head`` endpoint is the feature (D = 480 for a0)."""

    def __init__(self, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool):
        import tensorflow as tf

        if spec.name not in MOVINET_IDS:
            raise EncoderError(f"encoder spec {spec}: MoViNet model id must be one of {MOVINET_IDS}")
        h, w = _parse_size(spec, (MOVINET_DEFAULT_SIZE[spec.name],) * 2)
        super().__init__(spec, ClipSpec(snippet_frames, h, w))
        ckpt = spec.get("checkpoint")
        if ckpt is None and not allow_random_init:
            raise _no_weights_error(spec, "checkpoint")
        try:
            num_classes = int(spec.get("num_classes", "600"))
        except ValueError:
            raise EncoderError(f"encoder spec {spec}: num_classes must be an int") from None
        from official.projects.movinet.modeling import movinet, movinet_model

        conv_type = spec.get("conv_type", "3d")
        if conv_type not in MOVINET_CONV_TYPES:
            raise EncoderError(f"encoder spec {spec}: conv_type must be one of {MOVINET_CONV_TYPES}")
        backbone = movinet.Movinet(
            model_id=spec.name, causal=_parse_bool(spec, "causal", False), conv_type=conv_type
        )
        backbone.trainable = False
        # The classifier only exists so that official checkpoints (saved for the
        # classifier) restore; features come from the backbone.
        model = movinet_model.MovinetClassifier(backbone=backbone, num_classes=num_classes)
        model.build([None, None, None, None, 3])
        if ckpt is not None:
            ckpt = _movinet_checkpoint(spec, ckpt)
            try:
                if ckpt.endswith(".h5"):
                    model.load_weights(ckpt)
                else:
                    tf.train.Checkpoint(model=model).read(ckpt).expect_partial().assert_existing_objects_matched()
            except Exception as e:  # mismatched variables, unreadable file
                raise EncoderError(
                    f"encoder spec {spec}: checkpoint {ckpt!r} does not match MoViNet-{spec.name} "
                    f"(num_classes={num_classes}): {type(e).__name__}: {_first_line(e)}"
                ) from None
            log.info("MoViNet-%s weights restored from %s", spec.name, ckpt)
        else:
            log.warning("MoViNet-%s is randomly initialized (--allow_random_init)", spec.name)
        fast = spec.get("fast_conv", "auto").lower()
        if fast not in ("auto", "true", "false"):
            raise EncoderError(f"encoder spec {spec}: fast_conv must be auto, true or false, got {fast!r}")
        if fast == "true" or (fast == "auto" and not tf.config.list_physical_devices("GPU")):
            from beam.movinet_fast import patch_conv3d

            patch_conv3d(backbone)
        self.model = model
        self.backbone = backbone

        def fn(clips):
            x = tf.cast(clips, tf.float32) / 255.0  # MoViNet takes RGB in [0, 1]
            endpoints, _ = backbone({"image": x}, training=False)
            head = endpoints["head"]  # (B, 1, 1, 1, D): already globally pooled
            return tf.reduce_mean(head, axis=[1, 2, 3])  # (B, 1, 1, 1, D) -> (B, D)

        self._trace(fn)


class KerasAppEncoder(Encoder):
    """A keras.applications image model per frame, mean-pooled per snippet (TSN-style)."""

    def __init__(self, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool):
        import keras

        if spec.name not in KERAS_APPS:
            raise EncoderError(f"encoder spec {spec}: unknown keras_app {spec.name!r}; known: {sorted(KERAS_APPS)}")
        ctor_name, module_name, default = KERAS_APPS[spec.name]
        h, w = _parse_size(spec, (default, default))
        super().__init__(spec, ClipSpec(snippet_frames, h, w))
        weights = spec.get("weights")
        if weights is None and not allow_random_init:
            raise _no_weights_error(spec, "weights")
        if weights is not None:
            _require_file(spec, "weights", weights)
        kwargs = {}
        if spec.get("alpha") is not None:
            try:
                kwargs["alpha"] = float(spec.get("alpha"))
            except ValueError:
                raise EncoderError(f"encoder spec {spec}: alpha must be a float") from None
        ctor = getattr(keras.applications, ctor_name)
        try:
            # weights=None or a local file path: keras never downloads in either case.
            model = ctor(include_top=False, weights=weights, input_shape=(h, w, 3), pooling="avg", **kwargs)
        except (ValueError, TypeError, OSError) as e:
            raise EncoderError(f"encoder spec {spec}: cannot build {ctor_name}: {_first_line(e)}") from None
        if weights is None:
            log.warning("%s is randomly initialized (--allow_random_init)", ctor_name)
        self.model = model
        preprocess = getattr(keras.applications, module_name).preprocess_input

        def fn(clips):
            import tensorflow as tf

            def frame_fn(frames):  # (B*N, H, W, 3) uint8 -> (B*N, D)
                x = preprocess(tf.cast(frames, tf.float32))  # keras apps take RGB in [0, 255]
                return model(x, training=False)

            return _frames_then_pool(frame_fn, clips)

        self._trace(fn)


class SavedModelEncoder(Encoder):
    """Any SavedModel signature over clips (B, N, H, W, 3) or frames (B, H, W, 3)."""

    def __init__(self, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool = False):
        import tensorflow as tf

        del allow_random_init  # a SavedModel carries its own weights
        path = spec.name
        if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            raise EncoderError(f"encoder spec {spec}: {path!r} is not a SavedModel directory (no saved_model.pb)")
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:
            raise EncoderError(f"encoder spec {spec}: cannot load SavedModel: {_first_line(e)}") from None
        sig_name = spec.get("signature", "serving_default")
        if sig_name not in loaded.signatures:
            available = sorted(loaded.signatures)
            raise EncoderError(f"encoder spec {spec}: no signature {sig_name!r}; available: {available}")
        sig = loaded.signatures[sig_name]
        inputs = sig.structured_input_signature[1]  # {name: TensorSpec}
        in_name = _pick_tensor(spec, "input", inputs)
        in_spec = inputs[in_name]
        rank = in_spec.shape.rank
        if rank not in (4, 5):
            raise EncoderError(
                f"encoder spec {spec}: input {in_name!r} has shape {in_spec.shape}; expected clips "
                "(B, N, H, W, 3) or frames (B, H, W, 3)"
            )
        dims = in_spec.shape.as_list()
        if rank == 5 and dims[1] is not None and dims[1] != snippet_frames:
            raise EncoderError(
                f"encoder spec {spec}: the model takes clips of {dims[1]} frames "
                f"but --snippet_frames is {snippet_frames}"
            )
        static_hw = (dims[-3], dims[-2]) if dims[-3] and dims[-2] else None
        size = _parse_size(spec, static_hw)
        if size is None:
            raise EncoderError(f"encoder spec {spec}: the model input has dynamic height/width; give size=HxW")
        if static_hw is not None and size != static_hw:
            raise EncoderError(f"encoder spec {spec}: size={size[0]}x{size[1]} but the model takes {static_hw}")
        rng = spec.get("input_range", "0_1")
        if rng not in INPUT_RANGES:
            raise EncoderError(f"encoder spec {spec}: input_range must be one of {sorted(INPUT_RANGES)}, got {rng!r}")
        lo, hi = INPUT_RANGES[rng]
        outputs = sig.structured_outputs
        out_name = _pick_tensor(spec, "output", outputs)
        super().__init__(spec, ClipSpec(snippet_frames, *size))
        self.loaded = loaded  # keeps the signature's variables alive
        dtype = in_spec.dtype

        def call(x):
            if dtype != tf.uint8:  # uint8 [0, 255] -> [lo, hi]
                x = tf.cast(tf.cast(x, tf.float32) * ((hi - lo) / 255.0) + lo, dtype)
            y = sig(**{in_name: x})[out_name]
            if y.shape.rank < 2:
                raise EncoderError(
                    f"encoder spec {spec}: output {out_name!r} has rank {y.shape.rank}; expected (B, ..., D)"
                )
            if y.shape.rank > 2:  # (B, ..., D) -> (B, D)
                y = tf.reduce_mean(y, axis=list(range(1, y.shape.rank - 1)))
            return tf.cast(y, tf.float32)

        def fn(clips):
            return call(clips) if rank == 5 else _frames_then_pool(call, clips)

        try:
            self._trace(fn)
        except EncoderError:
            raise
        except Exception as e:
            raise EncoderError(f"encoder spec {spec}: calling the signature failed: {_first_line(e)}") from None


_BUILDERS = {"movinet": MovinetEncoder, "keras_app": KerasAppEncoder, "savedmodel": SavedModelEncoder}


def build_encoder(spec: str | EncoderSpec, snippet_frames: int = 16, allow_random_init: bool = False) -> Encoder:
    """Builds the encoder of ``spec`` for snippets of ``snippet_frames`` frames."""
    if not isinstance(spec, EncoderSpec):
        spec = EncoderSpec.parse(spec)
    return _BUILDERS[spec.kind](spec, snippet_frames, allow_random_init)


def clip_spec(spec: str | EncoderSpec, snippet_frames: int = 16, allow_random_init: bool = False) -> ClipSpec:
    """Checks ``spec`` and returns the clip size it consumes, without building the
    network (a SavedModel's signature is read). Run in the launching process so that a
    bad spec, a missing weights file or missing ``--allow_random_init`` fails there with
    one line instead of on a worker. Raises EncoderError."""
    if not isinstance(spec, EncoderSpec):
        spec = EncoderSpec.parse(spec)
    if spec.kind == "movinet":
        if spec.name not in MOVINET_IDS:
            raise EncoderError(f"encoder spec {spec}: MoViNet model id must be one of {MOVINET_IDS}")
        h, w = _parse_size(spec, (MOVINET_DEFAULT_SIZE[spec.name],) * 2)
        weights_key = "checkpoint"
    elif spec.kind == "keras_app":
        if spec.name not in KERAS_APPS:
            raise EncoderError(f"encoder spec {spec}: unknown keras_app {spec.name!r}; known: {sorted(KERAS_APPS)}")
        default = KERAS_APPS[spec.name][2]
        h, w = _parse_size(spec, (default, default))
        weights_key = "weights"
    else:
        return SavedModelEncoder(spec, snippet_frames).clip
    path = spec.get(weights_key)
    if path is None and not allow_random_init:
        raise _no_weights_error(spec, weights_key)
    if path is not None and spec.kind == "movinet":
        _movinet_checkpoint(spec, path)
    elif path is not None:
        _require_file(spec, weights_key, path)
    return ClipSpec(snippet_frames, h, w)
