"""``python -m tags_tf.train ... --dry-run``: what a run would do and how long it would take.

Resolves the dataset and the config, counts the optimizer steps (with ``train.min_steps``
stretching the epochs), times a few training steps and one validation batch on this
machine, and returns a plan without training or writing anything.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import keras

from tags_tf.data.input import make_dataset, subset_pattern
from tags_tf.evaluation.inference import make_detect_fn
from tags_tf.model.tags_model import TagsModel
from tags_tf.training import recipe
from tags_tf.training import trainer
from tags_tf.training.dataset_resolver import choose_subsets, training_samples

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Plan:
    preset: str
    reason: str
    train_subset: str
    val_subset: str
    train_videos: int
    val_videos: int
    steps_per_epoch: int
    epochs: int
    seconds_per_step: float
    seconds_per_val_batch: float

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def estimated_seconds(self) -> float:
        val_batches = -(-self.val_videos // max(self.val_batch_videos or self.batch_size, 1))
        return self.total_steps * self.seconds_per_step + self.epochs * val_batches * self.seconds_per_val_batch

    batch_size: int = 1
    val_batch_videos: int = 0  # videos per validation batch; 0 = batch_size (windows: 1)
    train_windows: int = 0  # training samples when videos are cut into windows (0: whole videos)

    def describe(self) -> str:
        minutes = self.estimated_seconds / 60.0
        return "\n".join([
            f"dataset: {self.reason or 'preset ' + self.preset}",
            f"subsets: {self.train_videos} {self.train_subset} videos"
            + (f" ({self.train_windows} windows)" if self.train_windows else "")
            + f", {self.val_videos} {self.val_subset} videos",
            f"steps: {self.steps_per_epoch} per epoch (batch {self.batch_size}) x {self.epochs} epochs "
            f"= {self.total_steps}",
            f"timed on this machine: {self.seconds_per_step:.3f} s per training step, "
            f"{self.seconds_per_val_batch:.3f} s per validation batch",
            f"estimated wall time: {minutes:.1f} min of training and validation (dry run: nothing trained)",
        ])


def plan_run(cfg, resolved, timed_steps: int = 3) -> Plan:
    """Times ``timed_steps`` training steps (after one warm-up step) and one validation batch."""

    cfg = trainer.planned_config(cfg, resolved)
    train_subset, val_subset = choose_subsets(resolved.manifest, cfg.data.train_subset, cfg.data.val_subset)
    compression = cfg.data.compression or None
    batch = cfg.train.batch_size
    train_ds = make_dataset(subset_pattern(resolved.shard_dir, train_subset), cfg, training=True,
                            batch_size=batch, compression=compression, seed=cfg.train.seed).repeat()
    val_ds = make_dataset(subset_pattern(resolved.shard_dir, val_subset), cfg, training=False,
                          batch_size=batch, compression=compression, with_metadata=True)
    keras.utils.set_random_seed(cfg.train.seed)
    model = TagsModel(cfg)
    steps = trainer.steps_per_epoch_of(cfg, resolved)
    model.compile(optimizer=recipe.build_optimizer(cfg.train, cfg.train.epochs * steps), jit_compile=False)
    it = iter(train_ds)
    x, y = next(it)
    model.train_on_batch(x, y)  # warm-up: tracing and building
    start = time.perf_counter()
    for _ in range(timed_steps):
        x, y = next(it)
        model.train_on_batch(x, y)
    per_step = (time.perf_counter() - start) / timed_steps
    detect = make_detect_fn(model)
    vx, _ = next(iter(val_ds))
    detect(vx["features"], vx["duration"])  # warm-up
    start = time.perf_counter()
    detect(vx["features"], vx["duration"])
    per_val = time.perf_counter() - start
    return Plan(
        preset=resolved.preset, reason=resolved.reason, train_subset=train_subset, val_subset=val_subset,
        train_videos=int(resolved.manifest.subset_videos(train_subset) or 0),
        val_videos=int(resolved.manifest.subset_videos(val_subset) or 0),
        steps_per_epoch=steps, epochs=cfg.train.epochs, seconds_per_step=per_step,
        seconds_per_val_batch=per_val, batch_size=batch, val_batch_videos=int(vx["features"].shape[0]),
        train_windows=training_samples(resolved, train_subset, cfg.data) if cfg.data.window_snippets > 0 else 0,
    )
