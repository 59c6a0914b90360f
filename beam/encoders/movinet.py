"""``movinet:a0[:checkpoint=PATH][:size=172][:causal=false][:num_classes=600][:conv_type=3d][:fast_conv=auto]``

MoViNet (tf-models-official ``official.projects.movinet``, a tf_keras model), model
ids a0..a5. Weights come from a TF checkpoint of
``tf.train.Checkpoint(model=MovinetClassifier(...))`` as in the official release
(``checkpoint=movinet_a0_base`` -- a directory means its latest checkpoint -- or
``movinet_a0_base/ckpt-1``) or a ``.h5`` weights file. The feature is the backbone's
``head`` endpoint (globally pooled), D = 480 for a0. The options must describe the
checkpoint's model (``causal=true`` for the ``*_stream`` releases;
``conv_type=2plus1d`` only with a (2+1)D checkpoint). ``fast_conv=auto|true|false``:
on CPU (auto: when TF sees no GPU) the 3D convs skip the XLA path of
tf-models-official (see ``beam.encoders.movinet_cpu_conv3d``, ~60x faster, same
outputs).

TensorFlow and tf-models-official are imported only when an encoder is built.
"""

from __future__ import annotations

import logging

from beam.encoders.base import Encoder, first_line, require_file, weights_path
from beam.encoders.spec import EncoderError, EncoderSpec, parse_bool

log = logging.getLogger(__name__)

MOVINET_IDS = ("a0", "a1", "a2", "a3", "a4", "a5")
MOVINET_CONV_TYPES = ("3d", "2plus1d", "3d_2plus1d")
MOVINET_DEFAULT_SIZE = {"a0": 172, "a1": 172, "a2": 224, "a3": 256, "a4": 290, "a5": 320}


class MovinetEncoder(Encoder):
    """MoViNet backbone; the pooled ``head`` endpoint is the feature (D = 480 for a0)."""

    WEIGHTS_OPTION = "checkpoint"

    @classmethod
    def default_size(cls, spec: EncoderSpec) -> int:
        if spec.name not in MOVINET_IDS:
            raise EncoderError(f"encoder spec {spec}: MoViNet model id must be one of {MOVINET_IDS}")
        return MOVINET_DEFAULT_SIZE[spec.name]

    @classmethod
    def resolve_weights(cls, spec: EncoderSpec, path: str) -> str:
        """A checkpoint prefix, ``.h5`` file, or a directory (its latest checkpoint, as in
        the extracted ``movinet_a0_base/`` release). Raises EncoderError when absent."""
        import tensorflow as tf

        if not path.endswith(".h5") and tf.io.gfile.isdir(path):
            latest = tf.train.latest_checkpoint(path)
            if latest is None:
                raise EncoderError(f"encoder spec {spec}: checkpoint directory {path!r} holds no TF checkpoint")
            return latest
        require_file(spec, "checkpoint", path, tf_checkpoint=not path.endswith(".h5"))
        return path

    def __init__(self, spec: EncoderSpec, snippet_frames: int, allow_random_init: bool):
        import tensorflow as tf

        super().__init__(spec, self.clip_of(spec, snippet_frames))
        ckpt = weights_path(spec, self.WEIGHTS_OPTION, allow_random_init)
        try:
            num_classes = int(spec.get("num_classes", "600"))
        except ValueError:
            raise EncoderError(f"encoder spec {spec}: num_classes must be an int") from None
        from official.projects.movinet.modeling import movinet, movinet_model

        conv_type = spec.get("conv_type", "3d")
        if conv_type not in MOVINET_CONV_TYPES:
            raise EncoderError(f"encoder spec {spec}: conv_type must be one of {MOVINET_CONV_TYPES}")
        backbone = movinet.Movinet(model_id=spec.name, causal=parse_bool(spec, "causal", False), conv_type=conv_type)
        backbone.trainable = False
        # The classifier only exists so that official checkpoints (saved for the
        # classifier) restore; features come from the backbone.
        model = movinet_model.MovinetClassifier(backbone=backbone, num_classes=num_classes)
        model.build([None, None, None, None, 3])
        if ckpt is not None:
            ckpt = self.resolve_weights(spec, ckpt)
            try:
                if ckpt.endswith(".h5"):
                    model.load_weights(ckpt)
                else:
                    tf.train.Checkpoint(model=model).read(ckpt).expect_partial().assert_existing_objects_matched()
            except Exception as e:  # mismatched variables, unreadable file
                raise EncoderError(
                    f"encoder spec {spec}: checkpoint {ckpt!r} does not match MoViNet-{spec.name} "
                    f"(num_classes={num_classes}): {type(e).__name__}: {first_line(e)}"
                ) from None
            log.info("MoViNet-%s weights restored from %s", spec.name, ckpt)
        else:
            log.warning("MoViNet-%s is randomly initialized (--allow_random_init)", spec.name)
        fast = spec.get("fast_conv", "auto").lower()
        if fast not in ("auto", "true", "false"):
            raise EncoderError(f"encoder spec {spec}: fast_conv must be auto, true or false, got {fast!r}")
        if fast == "true" or (fast == "auto" and not tf.config.list_physical_devices("GPU")):
            from beam.encoders.movinet_cpu_conv3d import patch_conv3d

            patch_conv3d(backbone)
        self.model = model
        # Its variables, not the tf_keras model: saving the model would trace every layer's call.
        self.resources = [tf.Module(name="movinet_weights")]
        self.resources[0].variables_list = list(model.variables)
        self.backbone = backbone

        def fn(clips):
            x = tf.cast(clips, tf.float32) / 255.0  # MoViNet takes RGB in [0, 1]
            endpoints, _ = backbone({"image": x}, training=False)
            head = endpoints["head"]  # (B, 1, 1, 1, D): already globally pooled
            return tf.reduce_mean(head, axis=[1, 2, 3])  # (B, 1, 1, 1, D) -> (B, D)

        self._trace(fn)
