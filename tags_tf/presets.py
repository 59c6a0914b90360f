"""Named presets: overrides on the defaults of :mod:`tags_tf.config` (``--dataset
anet|thumos|demo`` or ``--preset``). Why each value: docs/design.md."""

from __future__ import annotations

from typing import Any


PRESETS: dict[str, dict[str, Any]] = {
    # ActivityNet-1.3: 200 classes, TSN two-stream 400-d features, 100/200 snippets.
    "anet": {},
    # THUMOS14: 20 classes, I3D 2048-d features, N = 200 detections, lr 1e-5, batch 25.
    # Long videos with short actions: windows of 256 native snippets (50 % overlap), each
    # the model's T = 256 (docs/design.md "Long videos"). The paper resamples whole videos to
    # T = 1024: --set data.window_snippets=0 --set model.base_snippets=512.
    "thumos": {
        "model.num_classes": 20,
        "model.feature_dim": 2048,
        "model.base_snippets": 128,
        "data.window_snippets": 256,
        "postprocess.max_detections": 200,
        "data.protocol": "thumos",
        "train.learning_rate": 1e-5,
        "train.batch_size": 25,
        "train.reference_videos": 200,  # THUMOS14 validation videos (its training set)
        "train.fit_learning_rate": 1e-3,  # the fitted recipe's peak on windows (docs/design.md)
    },
    # Tiny and CPU-fast: the embedded demo dataset (see tags_tf.data.demo).
    "demo": {
        "model.num_classes": 4,
        "model.feature_dim": 32,
        "model.base_snippets": 32,
        "model.embed_dim": 64,
        "model.mask_key_dim": 64,
        "loss.topk": 8,
        "postprocess.top_snippets": 16,
        "postprocess.pre_nms_top_k": 400,
        "postprocess.max_detections": 50,
        "train.learning_rate": 3e-3,
        "train.schedule": "cosine",  # warm-up + cosine, as a fitted recipe (docs/design.md)
        "train.batch_size": 16,
        "train.epochs": 15,
        "train.reference_videos": 600,  # the demo's training videos
        "train.recipe": "preset",  # the recipe above is already fitted to the demo's 600 videos
    },
}
