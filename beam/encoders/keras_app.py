"""``keras_app:NAME[:weights=PATH][:size=224][:alpha=1.0]``

A ``keras.applications`` image model (see :data:`KERAS_APPS`) applied to every frame
with ``include_top=False, pooling="avg"`` and mean-pooled over the snippet's frames (a
TSN-style RGB stream). Keras is imported only when an encoder is built.
"""

from __future__ import annotations

import logging
from typing import Mapping

from beam.encoders.base import Encoder, first_line, frames_then_pool, require_file, weights_path
from beam.encoders.spec import EncoderError, EncoderSpec

log = logging.getLogger(__name__)

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


class KerasAppEncoder(Encoder):
    """A keras.applications image model per frame, mean-pooled per snippet (TSN-style)."""

    WEIGHTS_OPTION = "weights"

    @classmethod
    def default_size(cls, spec: EncoderSpec) -> int:
        if spec.name not in KERAS_APPS:
            raise EncoderError(f"encoder spec {spec}: unknown keras_app {spec.name!r}; known: {sorted(KERAS_APPS)}")
        return KERAS_APPS[spec.name][2]

    @classmethod
    def resolve_weights(cls, spec: EncoderSpec, path: str) -> str:
        require_file(spec, "weights", path)
        return path

    def __init__(self, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool):
        import keras

        clip = self.clip_of(spec, snippet_frames)
        super().__init__(spec, clip)
        ctor_name, module_name, _ = KERAS_APPS[spec.name]
        weights = weights_path(spec, self.WEIGHTS_OPTION, allow_random_init)
        if weights is not None:
            self.resolve_weights(spec, weights)
        kwargs = {}
        if spec.get("alpha") is not None:
            try:
                kwargs["alpha"] = float(spec.get("alpha"))
            except ValueError:
                raise EncoderError(f"encoder spec {spec}: alpha must be a float") from None
        ctor = getattr(keras.applications, ctor_name)
        try:
            # weights=None or a local file path: keras never downloads in either case.
            input_shape = (clip.height, clip.width, 3)
            model = ctor(include_top=False, weights=weights, input_shape=input_shape, pooling="avg", **kwargs)
        except (ValueError, TypeError, OSError) as e:
            raise EncoderError(f"encoder spec {spec}: cannot build {ctor_name}: {first_line(e)}") from None
        if weights is None:
            log.warning("%s is randomly initialized (--allow_random_init)", ctor_name)
        self.model = model
        self.resources = [model]
        preprocess = getattr(keras.applications, module_name).preprocess_input

        def fn(clips):
            import tensorflow as tf

            def frame_fn(frames):  # (B*N, H, W, 3) uint8 -> (B*N, D)
                x = preprocess(tf.cast(frames, tf.float32))  # keras apps take RGB in [0, 255]
                return model(x, training=False)

            return frames_then_pool(frame_fn, clips)

        self._trace(fn)
