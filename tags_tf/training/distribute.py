"""tf.distribute strategy selection and chief-only writing (no home-made distribution)."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None


def num_workers() -> int:
    return len(_tf_config().get("cluster", {}).get("worker", [])) or 1


def build_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Builds the strategy. Call before any other TensorFlow op (multi-worker needs it).

    ``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several workers,
    MirroredStrategy on several GPUs, else the default strategy.
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "auto":
        if num_workers() > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    log.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def is_chief() -> bool:
    """True on the worker that writes checkpoints, summaries and results."""
    task = _tf_config().get("task", {})
    if not task:
        return True
    kind, index = task.get("type"), task.get("index", 0)
    has_chief = "chief" in _tf_config().get("cluster", {})
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def task_id() -> str:
    task = _tf_config().get("task", {})
    return f"{task.get('type', 'worker')}_{task.get('index', 0)}"


def worker_dir(path: str) -> str:
    """``path`` on the chief; a per-worker scratch folder below it on the others."""
    if is_chief():
        return path
    return os.path.join(path, "workers", task_id())
