"""The TAGS model (paper Fig. 2): projection -> multi-scale encoder -> two heads per scale.

``call()`` always returns the same raw outputs (see :class:`TagsModel`). Targets are
built by the weight-free label assignment inside ``compute_loss``; decoding (masks to
action instances, Soft-NMS) is :class:`tags_tf.decode.decoder.DetectionDecoder`, which
``predict_step``, evaluation and the serving export all reuse.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import tensorflow as tf
from keras import layers

from tags_tf import config as config_lib
from tags_tf.data import windows as win
from tags_tf.data.resample import resample_features
from tags_tf.decode.decoder import DetectionDecoder
from tags_tf.model.encoder import ScaleEncoder, SinusoidalPositionEncoding
from tags_tf.model.heads import ClassificationHead, make_mask_head
from tags_tf.model.labels import build_targets
from tags_tf.model.losses import total_loss

LOSS_TERMS = ("cls", "mask", "pp", "fc")


def output_keys(scales) -> list[str]:
    """Names of the raw outputs, in a stable order."""
    keys = []
    for s in scales:
        keys += [f"cls_logits_s{s}", f"mask_logits_s{s}", f"cons_cls_s{s}", f"cons_mask_s{s}"]
    return keys


def scale_gradient(x: tf.Tensor, scale: float) -> tf.Tensor:
    """``x`` in the forward pass; ``scale * dL/dx`` flows back through it (0: none, 1: all)."""
    if scale == 1.0:
        return x
    if scale == 0.0:
        return tf.stop_gradient(x)
    return scale * x + (1.0 - scale) * tf.stop_gradient(x)


def _reducible_logs(logs):
    """Keras 3 (TF backend) reduces a step's logs with ``strategy.reduce("MEAN", v,
    axis=0)`` under MultiWorkerMirroredStrategy, which fails on scalar logs
    (tensorflow/tensorflow#72388). Giving each log a length-1 axis makes that reduction
    valid and returns the same scalar (the logs are metric results, already
    aggregated over all replicas)."""
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}  # () -> (1,)
    return logs


@keras.saving.register_keras_serializable(package="tags_tf")
class TagsModel(keras.Model):
    """TAGS for snippet features ``(B, T_in, D)``, ``T_in = cfg.model.input_snippets``.

    ``call(features)`` (or ``call({"features": ...})``) returns a dict with, for every
    scale ``s``:

    - ``cls_logits_s{s}`` (B, T^s, K+1): pre-softmax class logits (class K = background).
    - ``mask_logits_s{s}`` (B, T^s, T^s): pre-sigmoid masks; ``[b, t, k]`` is position k
      of the mask predicted by snippet t.
    - ``cons_cls_s{s}`` (B, T^s, K+1) and ``cons_mask_s{s}`` (B, T^s, T^s): ``E_p`` and
      ``E_m`` of the consistency loss (Eq. 9).

    ``y`` for ``fit``/``evaluate`` is either the raw ground truth ``{"segments" (B, N, 2)
    seconds, "labels" (B, N) int with -1 padding, "duration" (B,)}`` or targets already
    built by :func:`tags_tf.model.labels.build_targets`.
    """

    def __init__(self, config: config_lib.TagsConfig | Mapping[str, Any], **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, config_lib.TagsConfig) else config_lib.from_dict(config)
        self.tags_config = cfg
        m = cfg.model
        self.scales = tuple(m.scales)
        self.input_proj = layers.Dense(m.embed_dim, name="input_proj")
        self.position = SinusoidalPositionEncoding(name="position") if m.position_encoding == "sine" else None
        self.encoders = [
            ScaleEncoder(
                m.embed_dim,
                num_heads=m.num_heads,
                pool_stride=m.pool_stride(s),
                pool_kernel=m.pool_kernel,
                pool_padding=m.pool_padding,
                pool_type=m.pool_type,
                mlp_activation=m.mlp_activation,
                dropout=m.dropout,
                name=f"encoder_s{s}",
            )
            for s in self.scales
        ]
        self.cls_heads = [ClassificationHead(m.num_classes, m.cls_kernel, name=f"cls_head_s{s}") for s in self.scales]
        self.mask_heads = [
            make_mask_head(m.mask_head, m.snippets(s), m.mask_hidden_dim or m.embed_dim, m.mask_kernel,
                           m.mask_key_dim, f"mask_head_s{s}")
            for s in self.scales
        ]
        self.loss_trackers = {t: keras.metrics.Mean(name=f"{t}_loss") for t in LOSS_TERMS}
        self.decoder = DetectionDecoder.from_tags_config(cfg, name="decoder")

    # ------------------------------------------------------------------ forward
    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["features"]
        self.input_proj.build(input_shape)
        proj = (input_shape[0], input_shape[1], self.tags_config.model.embed_dim)
        for s, enc, ch, mh in zip(self.scales, self.encoders, self.cls_heads, self.mask_heads):
            enc.build(proj)
            e_shape = enc.compute_output_shape(proj)
            ch.build(e_shape)
            mh.build(e_shape)

    def call(self, inputs, training=None):
        x = inputs["features"] if isinstance(inputs, dict) else inputs  # (B, T_in, D)
        x = self.input_proj(x)  # (B, T_in, D) -> (B, T_in, C)
        if self.position is not None:
            x = self.position(x)
        out = {}
        for s, enc, ch, mh in zip(self.scales, self.encoders, self.cls_heads, self.mask_heads):
            e = enc(x, training=training)  # (B, T^s, C)
            out[f"cls_logits_s{s}"], out[f"cons_cls_s{s}"] = ch(e)
            e_mask = scale_gradient(e, self.tags_config.model.mask_trunk_gradient)
            out[f"mask_logits_s{s}"], out[f"cons_mask_s{s}"] = mh(e_mask)
        return out

    # --------------------------------------------------------------- training
    def targets_from(self, y: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Targets at every scale from raw ground truth (or passes built targets through)."""
        if f"cls_target_s{self.scales[0]}" in y:
            return dict(y)
        return build_targets(y["segments"], y["labels"], y["duration"], self.tags_config.model)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = total_loss(y_pred, self.targets_from(y), self.tags_config)
        for name, tracker in self.loss_trackers.items():
            tracker.update_state(terms[name])
        # Keras sums gradients over replicas and expects compute_loss to return the
        # per-replica loss divided by the replica count (its built-in losses do the
        # same); the loss it reports is multiplied back.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return terms["total"] / float(replicas) if replicas > 1 else terms["total"]

    def train_step(self, data):
        return _reducible_logs(super().train_step(data))

    def test_step(self, data):
        return _reducible_logs(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15, TF backend) reduces the first batch with strategy.reduce before
        # building; MultiWorkerMirroredStrategy cannot reduce a dict batch. When the
        # model and its optimizer are already built (the trainer builds both inside
        # strategy.scope()), there is nothing to build, so skip it.
        if self.built and (self.optimizer is None or self.optimizer.built):
            return
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # -------------------------------------------------------------- inference
    def detect(self, features, duration, decoder=None, external_scores=None):
        """The one path from features to detections: resample -> model -> decode.

        ``features`` (B, T_in, D), any T_in >= 1 (the same for every video of the
        batch); ``duration`` (B,) seconds. With ``data.window_snippets = 0`` each video is
        resampled whole to ``input_snippets`` (unless it already has that static length);
        with W > 0 it is cut into windows of W native snippets (:meth:`detect_windows`).
        ``decoder``: a :class:`tags_tf.decode.decoder.DetectionDecoder` instead of
        ``self.decoder`` (to compare decodings of one checkpoint); ``external_scores``
        (B, K) for ``class_fusion="external"``. Used by ``predict_step``,
        ``tags_tf.evaluation.inference`` (training-time validation, batch inference) and the serving
        ``detect`` signature.
        """
        decoder = decoder if decoder is not None else self.decoder
        if self.tags_config.data.window_snippets > 0:
            return self.detect_windows(features, duration, decoder, external_scores)
        num_snippets = self.tags_config.model.input_snippets
        if features.shape[1] != num_snippets:
            features = resample_features(features, num_snippets)  # (B, T_in, D) -> (B, T, D)
        outputs = self(features, training=False)
        if external_scores is None:
            return decoder(outputs, duration)
        return decoder(outputs, duration, external_scores=external_scores)

    def detect_windows(self, features, duration, decoder, external_scores=None):
        """:meth:`detect` for ``data.window_snippets = W > 0`` (tags_tf.data.windows):
        windows of every video -> model (one batch of B x n windows) -> each window's
        candidates mapped to seconds -> pooled per video -> one Soft-NMS."""
        data = self.tags_config.data
        w = data.window_snippets
        features = tf.convert_to_tensor(features)
        b, t_in, d = tf.shape(features)[0], tf.shape(features)[1], tf.shape(features)[2]
        starts = win.window_starts(t_in, w, win.window_stride(w, data.window_overlap))  # (n,)
        n = tf.shape(starts)[0]
        x = tf.reshape(win.cut_windows(features, starts, w), [b * n, w, d])  # (B, n, W, D) -> (B*n, W, D)
        x = tf.ensure_shape(x, [None, w, features.shape[-1]])
        if w != self.tags_config.model.input_snippets:
            x = resample_features(x, self.tags_config.model.input_snippets)
        outputs = self(x, training=False)
        if external_scores is not None:
            external_scores = tf.repeat(external_scores, n, axis=0)  # (B, K) -> (B*n, K)
        segments, scores, classes = decoder.candidates(outputs, external_scores)  # (B*n, C, ...)
        c = tf.shape(scores)[1]
        segments = win.windows_to_seconds(tf.reshape(segments, [b, n, c, 2]), duration, t_in, starts, w)
        return decoder.select(tf.reshape(segments, [b, n * c, 2]), tf.reshape(scores, [b, n * c]),
                              tf.reshape(classes, [b, n * c]))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        features = x["features"] if isinstance(x, dict) else x
        if isinstance(x, dict) and "duration" in x:
            duration = x["duration"]
        else:  # without a duration, segments come out in normalized time [0, 1]
            duration = tf.ones(tf.shape(features)[:1], tf.float32)
        return self.detect(features, duration)

    def get_config(self):
        return {"config": self.tags_config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
