"""``savedmodel:PATH[:signature=serving_default][:input=NAME][:output=NAME][:size=HxW][:input_range=0_1]``

Any SavedModel whose signature takes one float (or uint8) tensor of clips
(B, N, H, W, 3) -- or frames (B, H, W, 3), then applied per frame and mean-pooled --
and returns (B, D) or (B, ..., D) (middle axes are mean-pooled). A SavedModel carries
its own weights, so its pre-flight reads the signature (it loads the model).
"""

from __future__ import annotations

import os

from beam.encoders.base import ClipSpec, Encoder, first_line, frames_then_pool
from beam.encoders.spec import EncoderError, EncoderSpec, parse_size

INPUT_RANGES = {"0_1": (0.0, 1.0), "-1_1": (-1.0, 1.0), "0_255": (0.0, 255.0)}


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


class SavedModelEncoder(Encoder):
    """Any SavedModel signature over clips (B, N, H, W, 3) or frames (B, H, W, 3)."""

    @classmethod
    def preflight(cls, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool) -> ClipSpec:
        """Loads the SavedModel and reads its signature: the clip size is the model's."""
        return cls(spec, snippet_frames).clip

    def __init__(self, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool = False):
        import tensorflow as tf

        del allow_random_init  # a SavedModel carries its own weights
        path = spec.name
        if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            raise EncoderError(f"encoder spec {spec}: {path!r} is not a SavedModel directory (no saved_model.pb)")
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:
            raise EncoderError(f"encoder spec {spec}: cannot load SavedModel: {first_line(e)}") from None
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
        size = parse_size(spec, static_hw)
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
        self.resources = [loaded]
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
            return call(clips) if rank == 5 else frames_then_pool(call, clips)

        try:
            self._trace(fn)
        except EncoderError:
            raise
        except Exception as e:
            raise EncoderError(f"encoder spec {spec}: calling the signature failed: {first_line(e)}") from None
