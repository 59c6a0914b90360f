"""The optimisation recipe: optimizer, learning-rate schedule and step budget from ``cfg.train``.

The paper's recipe (Adam, constant learning rate, a fixed number of epochs) is sized for
its datasets (ActivityNet: 10,000 training videos, 200 steps of 50 per epoch). On a
dataset of a few hundred videos the same epochs are ten times fewer optimizer steps, so
``train.min_steps`` stretches the epochs until the run makes at least that many steps,
and ``train.schedule = "cosine"`` warms up linearly over ``warmup_fraction`` of the steps
then decays with a cosine to ``final_lr_fraction`` of the peak
(``keras.optimizers.schedules.CosineDecay``). ``train.weight_decay > 0`` makes Adam AdamW.
"""

from __future__ import annotations

import math

from tags_tf.config import TrainConfig


def steps_per_epoch(num_videos: int, batch_size: int) -> int:
    """Optimizer steps of one pass over ``num_videos`` (the last partial batch is dropped)."""
    return max(1, num_videos // batch_size)


def planned_epochs(train: TrainConfig, steps: int) -> int:
    """Epochs to run: the configured ones, or more until ``min_steps`` steps are made."""
    if train.min_steps <= 0:
        return train.epochs
    return max(train.epochs, math.ceil(train.min_steps / max(steps, 1)))


def learning_rate(train: TrainConfig, total_steps: int):
    """A float (``schedule="constant"``) or a Keras schedule over ``total_steps`` steps."""
    if train.schedule == "constant":
        return train.learning_rate
    import keras

    total_steps = max(int(total_steps), 1)
    warmup = int(round(train.warmup_fraction * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else train.learning_rate,
        decay_steps=max(total_steps - warmup, 1),
        alpha=train.final_lr_fraction,
        warmup_target=train.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def build_optimizer(train: TrainConfig, total_steps: int):
    """Adam (AdamW when ``weight_decay > 0``) with the schedule and optional clipping."""
    import keras

    lr = learning_rate(train, total_steps)
    clip = train.clipnorm or None
    if train.weight_decay > 0:
        return keras.optimizers.AdamW(lr, weight_decay=train.weight_decay, clipnorm=clip)
    return keras.optimizers.Adam(lr, clipnorm=clip)
