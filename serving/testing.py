"""The export of the serving tests and benchmark; the tiny config, model, class names and
the in-process reference ``detect`` are :mod:`tags_tf.testing`'s."""

from __future__ import annotations

from pathlib import Path

from tags_tf import testing
from tags_tf.config import TagsConfig

# The serving tests' extras over the shared tiny config: two heads, a short detection list.
SERVING_OVERRIDES = {
    "model.scales": (1, 2),
    "model.num_heads": 2,
    "postprocess.pre_nms_top_k": 50,
    "postprocess.max_detections": 10,
}


def tiny_config(**overrides) -> TagsConfig:
    """:func:`tags_tf.testing.tiny_config` with :data:`SERVING_OVERRIDES`, then ``overrides``."""
    return testing.tiny_config(**{**SERVING_OVERRIDES, **overrides})


def export_model(base: Path, cfg: TagsConfig, version: int = 1, seed: int = 0):
    """Exports a random-init model to ``base/version``; returns (model, version dir)."""
    from serving.export import export_saved_model

    model = testing.build_model(cfg, seed)
    return model, export_saved_model(model, cfg, Path(base) / str(version), testing.class_names(cfg))


class InProcessClient:
    """``DetectionClient.predict`` run on a loaded ``serving.servable.Servable``, no gRPC:
    what the video client's requests compute without the transport (tests, benchmark)."""

    server, model_name = "in-process", "tags"

    def __init__(self, servable):
        self.servable = servable

    def predict(self, inputs, signature=None, output_filter=()):
        import numpy as np

        return self.servable.run(signature, {k: np.asarray(v) for k, v in inputs.items()}, tuple(output_filter))
