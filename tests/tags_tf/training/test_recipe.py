"""tags_tf/training/recipe.py: step budget, schedule and optimizer from the train config."""

import dataclasses

import keras
import numpy as np
import pytest

from tags_tf.training import recipe
from tags_tf.config import ConfigError, TrainConfig, get_config


def test_min_steps_stretch_the_epochs_of_a_small_dataset():
    # 600 videos at batch 16: 37 steps per epoch (the partial batch is dropped).
    steps = recipe.steps_per_epoch(600, 16)
    assert steps == 37
    paper = TrainConfig(epochs=15)
    assert recipe.planned_epochs(paper, steps) == 15  # min_steps 0: the paper's epochs
    # 1,000 steps need ceil(1000 / 37) = 28 epochs; a large dataset keeps its 15.
    assert recipe.planned_epochs(dataclasses.replace(paper, min_steps=1000), steps) == 28
    assert recipe.planned_epochs(dataclasses.replace(paper, min_steps=1000), 200) == 15


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    train = TrainConfig(learning_rate=1e-3, schedule="cosine", warmup_fraction=0.1, final_lr_fraction=0.1)
    lr = recipe.learning_rate(train, total_steps=100)
    values = np.array([float(lr(step)) for step in (0, 5, 10, 55, 100)])
    # Linear warm-up over 10 steps: 0, 5e-4, 1e-3; cosine over the remaining 90 steps:
    # half-way (step 55) = floor + (peak - floor) / 2 = 1e-4 + 4.5e-4; the end = the floor.
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5.5e-4, 1e-4], rtol=1e-5, atol=1e-9)


def test_constant_schedule_is_the_paper_recipe_and_weight_decay_gives_adamw():
    assert recipe.learning_rate(TrainConfig(learning_rate=1e-4), 100) == 1e-4
    assert type(recipe.build_optimizer(TrainConfig(), 10)) is keras.optimizers.Adam
    opt = recipe.build_optimizer(TrainConfig(weight_decay=1e-2, clipnorm=1.0), 10)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == 1e-2 and opt.clipnorm == 1.0
    assert not opt.use_ema  # train.ema_momentum 0: no averaged weights (the paper)
    ema = recipe.build_optimizer(TrainConfig(ema_momentum=0.9), 10)
    assert ema.use_ema and ema.ema_momentum == 0.9


@pytest.mark.parametrize("key,value", [("train.schedule", "step"), ("train.warmup_fraction", 1.0),
                                       ("train.min_steps", -1), ("train.early_stopping_patience", -2),
                                       ("train.ema_momentum", 1.0), ("train.ema_momentum", -0.1)])
def test_bad_recipe_values_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=key):
        get_config("anet", {key: value})


def test_fit_sizes_the_recipe_of_a_small_dataset():
    anet = get_config("anet").train  # batch 50, lr 1e-4, 15 epochs, constant, reference 10,024
    overrides, why = recipe.fit(anet, 560)
    # 560 / 32 = 17.5 -> batch 16 (nearest power of two); 560 // 16 = 35 steps per epoch;
    # ceil(280 / 35) = 8 epochs; train.fit_learning_rate (3e-4) peak under warm-up + cosine.
    assert overrides == {"train.batch_size": 16, "train.epochs": 8, "train.schedule": "cosine",
                         "train.learning_rate": 3e-4}
    assert "560 training samples" in why and "train.recipe=preset" in why
    # 100 videos: 100 / 32 = 3.1 -> the floor of 8; 12 steps per epoch -> 24 epochs.
    small, _ = recipe.fit(anet, 100)
    assert small["train.batch_size"] == 8 and small["train.epochs"] == 24
    assert small["train.validate_every"] == 3  # ceil(24 / 10): about 10 validations
    # The batch never grows past the preset's: THUMOS (batch 25, 200 reference videos)
    # with 190 videos -> 190 / 32 = 5.9 -> 8 (the floor); 2,000 demo-sized videos under
    # anet -> 62.5 -> 64, capped at 50.
    assert recipe.fit(get_config("thumos").train, 190)[0]["train.batch_size"] == 8
    assert recipe.fit(anet, 2000)[0]["train.batch_size"] == 50


def test_fit_leaves_the_preset_alone_only_when_asked():
    anet = get_config("anet").train
    assert recipe.fit(dataclasses.replace(anet, recipe="preset"), 560) == ({}, "")
    with pytest.raises(ConfigError, match="train.recipe"):
        get_config("anet", {"train.recipe": "paper"})
    assert get_config("demo").train.recipe == "preset"  # the demo's recipe is fitted to its 600 videos


def test_fit_covers_sets_as_large_as_the_presets_own():
    anet = get_config("anet").train
    # ActivityNet itself (10,024 videos): batch 50 (313 capped), 200 steps per epoch; the
    # budget is the paper's own 15 x 200 = 3,000 steps -> 15 epochs, warm-up + cosine to 3e-4.
    full, why = recipe.fit(anet, 10024)
    assert full == {"train.batch_size": 50, "train.epochs": 15, "train.schedule": "cosine",
                    "train.learning_rate": 3e-4, "train.validate_every": 2}
    # Half of it: 3,000 x 0.5 = 1,500 steps at 100 steps per epoch -> 15 epochs.
    assert recipe.fit(anet, 5012)[0]["train.epochs"] == 15
    # 2,000 videos: max(280, 3,000 x 2,000 / 10,024 = 599) = 599 steps at 40 a epoch -> 15 epochs.
    assert recipe.fit(anet, 2000)[0]["train.epochs"] == 15
    # THUMOS-like windows (1,223 samples, the preset's 200 videos x 15 epochs / 25 = 120
    # steps): 1,223 / 32 = 38 -> 32, capped at 25; 48 steps per epoch; 280 steps -> 6 epochs.
    thumos, _ = recipe.fit(get_config("thumos").train, 1223)
    assert thumos["train.batch_size"] == 25 and thumos["train.epochs"] == 6
