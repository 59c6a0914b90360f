"""Helpers shared by the serving tests and benchmark (a tiny config, model and export)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tags_tf.config import TagsConfig, get_config


def tiny_config(**overrides) -> TagsConfig:
    """Demo preset shrunk further: D=8, K=3, T=16 (scales 1, 2), C=16, N=10."""
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
        **overrides,
    })


def build_model(cfg: TagsConfig, seed: int = 0) -> keras.Model:
    """A randomly initialised, built TagsModel (seeded for reproducible tests)."""
    from tags_tf.model import TagsModel

    keras.utils.set_random_seed(seed)
    model = TagsModel(cfg)
    model(tf.zeros([1, cfg.model.input_snippets, cfg.model.feature_dim]), training=False)
    return model


def class_names(cfg: TagsConfig) -> list[str]:
    return [f"action_{i}" for i in range(cfg.model.num_classes)]


def export_model(base: Path, cfg: TagsConfig, version: int = 1, seed: int = 0) -> tuple[keras.Model, Path]:
    """Exports a random-init model to ``base/version``; returns (model, version dir)."""
    from serving.export import export_saved_model

    model = build_model(cfg, seed)
    return model, export_saved_model(model, cfg, Path(base) / str(version), class_names(cfg))


def in_process_detect(model: keras.Model, cfg: TagsConfig, features: np.ndarray, duration: np.ndarray) -> dict:
    """Reference ``detect``: ``TagsModel.detect`` (resample -> model -> decoder), eagerly."""
    out = model.detect(tf.constant(features, tf.float32), tf.constant(duration, tf.float32))
    return {k: v.numpy() for k, v in out.items()}
