"""Model outputs -> detections in seconds: the one decoder (paper Sec. 3.4).

``DetectionDecoder`` runs :func:`decode_candidates` (every scale's candidates,
:mod:`tags_tf.decode.runs`; class fusion), keeps each video's ``pre_nms_top_k`` best,
runs Soft-NMS (:mod:`tags_tf.decode.nms`) and scales segments to seconds. The same code
runs eagerly, under ``tf.function`` and inside a served SavedModel signature: no
``py_function``, no Python loop over data, batch-major with a static number ``N =
max_detections`` of padded output rows. Soft-NMS has no XLA kernel: keep the decoder out
of XLA-compiled functions (``supports_jit`` is False).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from tags_tf.config import ModelConfig, PostprocessConfig, validate_postprocess
from tags_tf.data import schema
from tags_tf.decode.nms import best_candidates, detections_dict, fuse_external_scores, soft_nms
from tags_tf.decode.runs import actionness_logits, decode_scale

_MODEL = ModelConfig()  # the default scales (one definition: tags_tf.config)


def decode_candidates(
    outputs: Mapping[str, tf.Tensor],
    scales: Sequence[int],
    postprocess: PostprocessConfig,
    external_scores: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Steps 1-3 of the module docstring for every scale, pooled: the candidates before
    Soft-NMS, in normalized time.

    Args:
      outputs: dict with ``cls_logits_s{s}`` (B, T^s, K+1) and ``mask_logits_s{s}``
        (B, T^s, T^s) for every s in ``scales``.
      postprocess: ``mask_source`` says where candidate runs come from: "mask" (the
        global masks), "actionness" (every row replaced by the classifier's foreground
        curve, :func:`~tags_tf.decode.runs.actionness_logits`) or "both" (the two, pooled);
        ``mask_thresholds``, ``top_snippets``, ``mask_score``, ``contrast_delta`` go to
        :func:`~tags_tf.decode.runs.decode_scale`.
      external_scores: optional (B, K) video-level class scores (class fusion).

    Returns segments (B, C, 2) in [0, 1], scores (B, C) float32 and classes (B, C) int32.
    """
    pp = postprocess
    cands = []
    for s in scales:
        cls_key, mask_key = f"cls_logits_s{s}", f"mask_logits_s{s}"
        for key in (cls_key, mask_key):
            if key not in outputs:
                raise KeyError(f"model outputs have no {key!r} (scales {tuple(scales)}); got {sorted(outputs)}")
        rows = []  # (B, T, T) candidate-mask logits of each source
        if pp.mask_source in ("mask", "both"):
            rows.append(outputs[mask_key])
        if pp.mask_source in ("actionness", "both"):
            curve = actionness_logits(outputs[cls_key])  # (B, T)
            rows.append(tf.tile(curve[:, None, :], [1, tf.shape(curve)[1], 1]))  # (B, 1, T) -> (B, T, T)
        for mask_logits in rows:
            cands.append(decode_scale(outputs[cls_key], mask_logits, pp.mask_thresholds, pp.top_snippets,
                                      pp.mask_score, pp.contrast_delta))
    merged = {key: tf.concat([c[key] for c in cands], axis=1) for key in cands[0]}  # (B, sum C_s)
    if external_scores is None:
        return merged["segments"], merged["class_scores"], merged["classes"]
    return fuse_external_scores(merged["actionness_scores"], merged["segments"], external_scores, pp.fusion_top_k)


def postprocess_config(postprocess: PostprocessConfig | Mapping[str, Any] | None) -> PostprocessConfig:
    """A ``PostprocessConfig`` from itself, from its fields as a dict (``get_config``;
    lists become tuples) or from None (the defaults)."""
    if postprocess is None:
        return PostprocessConfig()
    if isinstance(postprocess, PostprocessConfig):
        return postprocess
    fields = {f.name for f in dataclasses.fields(PostprocessConfig)}
    unknown = sorted(set(postprocess) - fields)
    if unknown:
        raise ValueError(f"unknown postprocess field(s) {unknown}; expected some of {sorted(fields)}")
    return PostprocessConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in postprocess.items()})


@keras.saving.register_keras_serializable(package="tags_tf")
class DetectionDecoder(keras.layers.Layer):
    """Model outputs -> detections; shared by ``predict_step``, evaluation and serving.

    Weight-free. Always computes in float32. Not XLA-compilable (Soft-NMS has no XLA
    kernel), hence ``supports_jit = False``.

    Call args:
      outputs: dict with ``cls_logits_s{s}`` (B, T^s, K+1) and ``mask_logits_s{s}``
        (B, T^s, T^s) for each scale.
      duration: (B,) seconds.
      external_scores: (B, K) video-level classifier scores; required when
        ``postprocess.class_fusion == "external"``, refused otherwise.

    Built from its config: ``DetectionDecoder(num_classes, scales, PostprocessConfig)``
    (or :meth:`from_tags_config`); ``get_config`` stores the dataclass's fields.

    Returns dict: detection_segments (B, N, 2) float32 seconds, detection_scores (B, N)
    float32, detection_classes (B, N) int32, num_detections (B,) int32; N =
    ``max_detections``; rows past ``num_detections`` are 0 (classes -1).
    """

    def __init__(self, num_classes: int, scales: Sequence[int] = _MODEL.scales,
                 postprocess: PostprocessConfig | Mapping[str, Any] | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.postprocess = postprocess_config(postprocess)
        validate_postprocess(self.postprocess, int(num_classes))
        self.num_classes = int(num_classes)
        self.scales = tuple(int(s) for s in scales)
        self.supports_jit = False

    @classmethod
    def from_tags_config(cls, cfg, **kwargs) -> "DetectionDecoder":
        """The decoder of a ``TagsConfig`` (model.num_classes, model.scales, postprocess)."""
        return cls(cfg.model.num_classes, cfg.model.scales, cfg.postprocess, **kwargs)

    def _check(self, outputs, external_scores) -> None:
        for s in self.scales:
            key = f"cls_logits_s{s}"
            if key in outputs:
                k1 = outputs[key].shape[-1]
                if k1 is not None and k1 != self.num_classes + 1:
                    raise ValueError(
                        f"{key} has {k1} classes in its last axis; expected num_classes + 1 = "
                        f"{self.num_classes + 1} (class {self.num_classes} = background)"
                    )
        if self.postprocess.class_fusion == "external" and external_scores is None:
            raise ValueError("class_fusion='external' needs external_scores of shape (B, num_classes)")
        if self.postprocess.class_fusion == "none" and external_scores is not None:
            raise ValueError("external_scores were given but class_fusion is 'none'")
        if external_scores is not None:
            k = external_scores.shape[-1]
            if k is not None and k != self.num_classes:
                raise ValueError(f"external_scores has {k} classes; expected {self.num_classes}")

    def call(self, outputs, duration, external_scores=None):
        segments, scores, classes = self.candidates(outputs, external_scores)
        det = self._soft_nms(segments, scores, classes)
        duration = tf.reshape(tf.cast(duration, tf.float32), [-1, 1, 1])  # (B,) -> (B, 1, 1)
        return detections_dict(det, tf.clip_by_value(det["segments"], 0.0, 1.0) * duration)

    def candidates(self, outputs, external_scores=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The candidates before Soft-NMS (:func:`decode_candidates`), each sample's best
        ``pre_nms_top_k``: segments (B, C, 2) in [0, 1], scores (B, C), classes (B, C)."""
        self._check(outputs, external_scores)
        segments, scores, classes = decode_candidates(outputs, self.scales, self.postprocess, external_scores)
        return best_candidates(segments, scores, classes, self.postprocess.pre_nms_top_k)

    def select(self, segments, scores, classes) -> dict[str, tf.Tensor]:
        """Soft-NMS over pooled candidates whose ``segments`` (B, C, 2) are already in
        seconds (the windows of a long video): the detections dict of :meth:`call`."""
        det = self._soft_nms(segments, scores, classes)
        return detections_dict(det, det["segments"])

    def _soft_nms(self, segments, scores, classes) -> dict[str, tf.Tensor]:
        p = self.postprocess
        return soft_nms(segments, scores, classes, max_detections=p.max_detections, sigma=p.soft_nms_sigma,
                        score_threshold=p.score_threshold, per_class=p.nms_per_class)

    def compute_output_spec(self, outputs, duration, external_scores=None):
        b, n = duration.shape[0], self.postprocess.max_detections
        return {
            schema.DETECTION_SEGMENTS: keras.KerasTensor((b, n, 2), dtype="float32"),
            schema.DETECTION_SCORES: keras.KerasTensor((b, n), dtype="float32"),
            schema.DETECTION_CLASSES: keras.KerasTensor((b, n), dtype="int32"),
            schema.NUM_DETECTIONS: keras.KerasTensor((b,), dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, scales=list(self.scales),
                      postprocess={k: list(v) if isinstance(v, tuple) else v
                                   for k, v in dataclasses.asdict(self.postprocess).items()})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        fields = {f.name for f in dataclasses.fields(PostprocessConfig)}
        legacy = {k: config.pop(k) for k in list(config) if k in fields}  # checkpoints before 0.2: flat fields
        if legacy:
            config["postprocess"] = {**legacy, **config.get("postprocess", {})}
        return cls(**config)
