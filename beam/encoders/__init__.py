"""Snippet encoders for raw-video feature extraction, chosen by a SPEC string.

SPEC grammar (:mod:`beam.encoders.spec`): ``KIND:NAME[:key=value]...``, one backend
module per KIND with its options in its docstring:

``movinet:a0[:checkpoint=PATH]...``          :mod:`beam.encoders.movinet` (MoViNet a0..a5)
``keras_app:NAME[:weights=PATH]...``         :mod:`beam.encoders.keras_app` (a keras.applications
                                             image model per frame, mean-pooled per snippet)
``savedmodel:PATH[:signature=NAME]...``      :mod:`beam.encoders.savedmodel` (any SavedModel
                                             over clips or frames)

Nothing is ever downloaded. A model without weights (no ``checkpoint=`` /
``weights=``) is refused unless ``allow_random_init=True`` (CLI
``--allow_random_init``), which is meant for tests and smoke runs only.

Every encoder maps uint8 clips (B, N, H, W, 3) RGB -> float32 features (B, D)
(:class:`beam.encoders.base.Encoder`). This module builds them by kind
(:func:`build_encoder`) and runs the launcher's pre-flight check (:func:`clip_spec`);
it re-exports the public names of the submodules. TensorFlow, Keras and
tf-models-official are imported only when an encoder is built or its weights checked.
"""

from __future__ import annotations

from beam.encoders.base import ClipSpec, Encoder
from beam.encoders.keras_app import KERAS_APPS, KerasAppEncoder
from beam.encoders.movinet import MOVINET_CONV_TYPES, MOVINET_DEFAULT_SIZE, MOVINET_IDS, MovinetEncoder
from beam.encoders.savedmodel import INPUT_RANGES, SavedModelEncoder
from beam.encoders.spec import KINDS, EncoderError, EncoderSpec, as_spec

__all__ = [
    "INPUT_RANGES", "KERAS_APPS", "KINDS", "MOVINET_CONV_TYPES", "MOVINET_DEFAULT_SIZE", "MOVINET_IDS",
    "ClipSpec", "Encoder", "EncoderError", "EncoderSpec", "KerasAppEncoder", "MovinetEncoder",
    "SavedModelEncoder", "build_encoder", "clip_spec",
]

# One backend class per spec KIND.
_BACKENDS: dict[str, type[Encoder]] = {
    "movinet": MovinetEncoder, "keras_app": KerasAppEncoder, "savedmodel": SavedModelEncoder,
}


def build_encoder(spec: str | EncoderSpec, snippet_frames: int = 16, allow_random_init: bool = False) -> Encoder:
    """Builds the encoder of ``spec`` for snippets of ``snippet_frames`` frames."""
    spec = as_spec(spec)
    return _BACKENDS[spec.kind](spec, snippet_frames, allow_random_init)


def clip_spec(spec: str | EncoderSpec, snippet_frames: int = 16, allow_random_init: bool = False) -> ClipSpec:
    """Checks ``spec`` and returns the clip size it consumes, without building the
    network (a SavedModel's signature is read). Run in the launching process so that a
    bad spec, a missing weights file or missing ``--allow_random_init`` fails there with
    one line instead of on a worker. Raises EncoderError."""
    spec = as_spec(spec)
    return _BACKENDS[spec.kind].preflight(spec, snippet_frames, allow_random_init)
