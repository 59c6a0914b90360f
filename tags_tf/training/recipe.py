"""The optimisation recipe: optimizer, learning-rate schedule and step budget from ``cfg.train``.

The paper's recipe (Adam, constant learning rate, a fixed number of epochs) is sized for
its datasets (ActivityNet: 10,000 training videos, 200 steps of 50 per epoch). On a
dataset of a few hundred videos the same epochs are ten times fewer optimizer steps, so
``train.min_steps`` stretches the epochs until the run makes at least that many steps,
and ``train.schedule = "cosine"`` warms up linearly over ``warmup_fraction`` of the steps
then decays with a cosine to ``final_lr_fraction`` of the peak
(``keras.optimizers.schedules.CosineDecay``). ``train.weight_decay > 0`` makes Adam AdamW.

:func:`fit` sizes the recipe to a user's dataset (``train.recipe = "auto"``, applied by
``tags_tf.training.dataset_resolver.config_for``): a batch of about 1/32 of the training samples,
at least ``train.fit_steps`` optimizer steps (as many as the preset's own recipe for a
set as large as the preset's ``train.reference_videos``), warm-up + cosine to
``train.fit_learning_rate``.
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


FIT_MIN_BATCH = 8
FIT_BATCHES_PER_EPOCH = 32
FIT_VALIDATIONS = 10


def fit(train: TrainConfig, num_train_samples: int) -> tuple[dict[str, object], str]:
    """(overrides, one-line reason) fitting the recipe to ``num_train_samples`` (videos, or
    windows with ``data.window_snippets > 0``).

    Empty overrides when ``train.recipe == "preset"``. Otherwise: batch = the power of two
    nearest ``n / 32`` within [8, preset batch] (about 32 steps per epoch); epochs =
    enough for a step budget of ``max(fit_steps, the preset's own steps x min(1, n /
    reference_videos))``, where the preset's own steps are its epochs over
    ``reference_videos`` at its batch (ActivityNet: 15 x 200 = 3,000; so a set as large as
    the preset's trains as long as the paper's, a small one ``fit_steps``); linear
    warm-up + cosine decay; peak learning rate ``fit_learning_rate``; validation every
    ``ceil(epochs / 10)`` epochs when that is more than one.
    """
    n = int(num_train_samples)
    if train.recipe == "preset" or n <= 0:
        return {}, ""
    target = max(n / FIT_BATCHES_PER_EPOCH, 1.0)
    batch = 2 ** round(math.log2(target))
    batch = int(min(max(batch, FIT_MIN_BATCH), train.batch_size))
    steps = steps_per_epoch(n, batch)
    preset_steps = train.epochs * steps_per_epoch(train.reference_videos, train.batch_size)
    budget = max(train.fit_steps, round(preset_steps * min(1.0, n / train.reference_videos)))
    epochs = max(1, math.ceil(budget / steps))
    lr = float(train.fit_learning_rate)
    overrides = {"train.batch_size": batch, "train.epochs": epochs, "train.schedule": "cosine",
                 "train.learning_rate": lr}
    if epochs > FIT_VALIDATIONS:  # tiny datasets: about 10 validations, not one per epoch
        overrides["train.validate_every"] = math.ceil(epochs / FIT_VALIDATIONS)
    reason = (f"recipe fitted to {n} training samples (the preset's is sized for {train.reference_videos}): "
              f"batch {batch}, {epochs} epochs of {steps} steps, warm-up + cosine to lr {lr:g}; "
              "--set train.recipe=preset for the preset's own")
    return overrides, reason


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
    """Adam (AdamW when ``weight_decay > 0``) with the schedule, optional clipping and,
    with ``ema_momentum > 0``, a moving average of the weights (``tags_tf.training.ema`` swaps it
    in for validation and checkpoints)."""
    import keras

    lr = learning_rate(train, total_steps)
    common = {"clipnorm": train.clipnorm or None}
    if train.ema_momentum > 0:
        common.update(use_ema=True, ema_momentum=train.ema_momentum)
    if train.weight_decay > 0:
        return keras.optimizers.AdamW(lr, weight_decay=train.weight_decay, **common)
    return keras.optimizers.Adam(lr, **common)
