"""Test helpers for the serving tests: a tiny config, model and export (no test code).

STAND-IN until tags_tf.model / postprocess / data.resample land: a tiny model with the
TagsModel output contract, a simple top-N decoder and bilinear resampling.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tags_tf.config import TagsConfig, get_config


def tiny_config() -> TagsConfig:
    """Demo preset shrunk further: D=8, K=3, T=16 (scales 1, 2), N=10."""
    return get_config("demo", {
        "model.feature_dim": 8,
        "model.num_classes": 3,
        "model.base_snippets": 8,
        "model.scales": (1, 2),
        "model.embed_dim": 16,
        "model.num_heads": 2,
        "postprocess.top_snippets": 4,
        "postprocess.pre_nms_top_k": 50,
        "postprocess.max_detections": 10,
    })


@keras.saving.register_keras_serializable(package="tags_tf_testing")
class StandInModel(keras.Model):
    def __init__(self, num_classes, scales, base_snippets, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.scales = tuple(scales)
        self.base_snippets = base_snippets
        self.cls = keras.layers.Dense(num_classes + 1)
        self.emb = keras.layers.Dense(8)

    def call(self, x, training=False):
        out = {}
        s_max = max(self.scales)
        for s in self.scales:
            stride = s_max // s
            xs = keras.ops.average_pool(x, stride, stride, "valid") if stride > 1 else x
            e = self.emb(xs)
            out[f"cls_logits_s{s}"] = self.cls(xs)
            out[f"mask_logits_s{s}"] = keras.ops.einsum("btc,bkc->btk", e, e)
            out[f"cons_cls_s{s}"] = out[f"cls_logits_s{s}"]
            out[f"cons_mask_s{s}"] = out[f"mask_logits_s{s}"]
        return out

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scales": self.scales,
                "base_snippets": self.base_snippets}


class StandInDecoder(keras.layers.Layer):
    def __init__(self, max_detections, **kwargs):
        super().__init__(**kwargs)
        self.max_detections = max_detections

    def call(self, outputs, duration, external_scores=None):
        logits = outputs["cls_logits_s1"]
        probs = tf.nn.softmax(logits)[..., :-1]  # (B, T, K)
        t = tf.shape(probs)[1]
        score = tf.reduce_max(probs, -1)
        n = tf.minimum(self.max_detections, t)
        top, idx = tf.math.top_k(score, k=n)
        cls = tf.gather(tf.argmax(probs, -1, output_type=tf.int32), idx, batch_dims=1)
        tf_ = tf.cast(t, tf.float32)
        start = tf.cast(idx, tf.float32) / tf_ * duration[:, None]
        end = tf.cast(idx + 1, tf.float32) / tf_ * duration[:, None]
        pad = self.max_detections - n
        seg = tf.pad(tf.stack([start, end], -1), [[0, 0], [0, pad], [0, 0]])
        return {
            "detection_segments": seg,
            "detection_scores": tf.pad(top, [[0, 0], [0, pad]]),
            "detection_classes": tf.pad(cls, [[0, 0], [0, pad]]),
            "num_detections": tf.fill([tf.shape(probs)[0]], n),
        }


def resample(x, t):
    """(B, T_in, D) -> (B, t, D), linear, align_corners=False."""
    y = tf.image.resize(x[:, :, None, :], [t, 1], method="bilinear")  # (B, T_in, 1, D)
    return y[:, :, 0, :]  # (B, t, 1, D) -> (B, t, D)


def build_model(cfg: TagsConfig, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    m = cfg.model
    model = StandInModel(m.num_classes, m.scales, m.base_snippets)
    model(tf.zeros([1, m.input_snippets, m.feature_dim]))
    return model


def build_decoder(cfg: TagsConfig) -> keras.layers.Layer:
    return StandInDecoder(cfg.postprocess.max_detections)


def export_tiny(base: Path, cfg: TagsConfig | None = None, version: int = 1, seed: int = 0):
    """Exports a tiny model to ``base/version``; returns (cfg, model, decoder, resample, path)."""
    from serving.export import export_saved_model

    cfg = cfg or tiny_config()
    model = build_model(cfg, seed)
    decoder = build_decoder(cfg)
    names = [f"action_{i}" for i in range(cfg.model.num_classes)]
    path = export_saved_model(model, cfg, Path(base) / str(version), names, decoder=decoder, resample_fn=resample)
    return cfg, model, decoder, resample, path


def random_video(rng: np.random.Generator, t: int, d: int) -> np.ndarray:
    return rng.normal(size=(t, d)).astype(np.float32)
