"""A RunInference ModelHandler over our snippet encoders.

The stock ``TFModelHandlerTensor`` loads with ``tf.keras.models.load_model`` and
fails on Keras 3 SavedModels (and cannot build MoViNet from tf-models-official), so
this handler builds the encoder from its SPEC string (see ``beam.encoders``) in
``load_model`` and calls it on stacked batches of snippets.

Elements are uint8 clips (N, H, W, 3); predictions are float32 feature vectors (D,).
Wrap it in ``KeyedModelHandler`` to carry ``(video_id, snippet_index)`` keys.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from beam.encoders import Encoder, EncoderSpec, build_encoder

log = logging.getLogger(__name__)


class EncoderModelHandler(ModelHandler[np.ndarray, np.ndarray, Encoder]):
    """Loads the encoder of ``spec`` once per worker and runs it on batches of clips.

    Args:
      spec: encoder SPEC string, e.g. ``movinet:a0:checkpoint=/ckpt/ckpt-1``.
      snippet_frames: N, frames per clip.
      allow_random_init: allow an encoder without weights (tests, smoke runs).
      min_batch_size / max_batch_size: bounds for ``beam.BatchElements``.
      large_model: share one model between the worker's processes.
    """

    def __init__(
        self,
        spec: str,
        *,
        snippet_frames: int = 16,
        allow_random_init: bool = False,
        min_batch_size: int = 1,
        max_batch_size: int = 16,
        large_model: bool = False,
    ):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, large_model=large_model)
        self._spec = str(EncoderSpec.parse(spec))  # fail at construction on a bad spec
        self._snippet_frames = int(snippet_frames)
        self._allow_random_init = bool(allow_random_init)

    def load_model(self) -> Encoder:
        log.info("loading encoder %s", self._spec)
        return build_encoder(self._spec, self._snippet_frames, self._allow_random_init)

    def run_inference(
        self, batch: Sequence[np.ndarray], model: Encoder, inference_args: Optional[dict[str, Any]] = None
    ) -> Iterable[np.ndarray]:
        """batch: B clips (N, H, W, 3) uint8 -> B feature vectors (D,) float32."""
        if not batch:
            return []
        clips = np.stack(batch)  # B x (N, H, W, 3) -> (B, N, H, W, 3)
        feats = model(clips)  # (B, D)
        return list(feats)  # (B, D) -> B x (D,)

    def validate_inference_args(self, inference_args: Optional[dict[str, Any]]):
        if inference_args:
            raise ValueError(f"EncoderModelHandler takes no inference_args, got {sorted(inference_args)}")

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return int(sum(np.asarray(x).nbytes for x in batch))  # the default pickles the whole batch

    def get_metrics_namespace(self) -> str:
        return "tags_tf_extract"

    def __repr__(self) -> str:
        return f"EncoderModelHandler({self._spec!r}, snippet_frames={self._snippet_frames})"
