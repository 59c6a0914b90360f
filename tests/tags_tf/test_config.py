"""tags_tf.config: presets, --set overrides and their types, validation, round trips."""

import pytest

from tags_tf.config import ConfigError, apply_overrides, from_dict, get_config, parse_set_args


def test_presets_and_their_protocols():
    anet, thumos, demo = get_config("anet"), get_config("thumos"), get_config("demo")
    assert (anet.model.num_classes, anet.model.input_snippets, anet.data.protocol) == (200, 200, "anet")
    assert (thumos.model.num_classes, thumos.model.input_snippets, thumos.data.protocol) == (20, 256, "thumos")
    assert (thumos.data.window_snippets, thumos.data.window_overlap) == (256, 0.5)  # windows of native snippets
    assert anet.data.window_snippets == demo.data.window_snippets == 0  # whole videos resampled
    paper = get_config("thumos", {"data.window_snippets": 0, "model.base_snippets": 512})
    assert paper.model.input_snippets == 1024  # the paper's THUMOS input
    assert (demo.model.num_classes, demo.data.protocol) == (4, "anet")
    with pytest.raises(ConfigError, match="unknown preset 'kinetics'"):
        get_config("kinetics")


def test_set_strings_are_coerced_to_the_fields_type():
    cfg = get_config("demo", parse_set_args(["model.embed_dim=32", "model.scales=(1, 2, 4)", "train.learning_rate=1",
                                             "data.protocol=thumos", "model.mask_trunk_gradient=0.5"]))
    assert cfg.model.embed_dim == 32 and cfg.model.scales == (1, 2, 4)
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.data.protocol == "thumos" and cfg.model.mask_trunk_gradient == 0.5


@pytest.mark.parametrize("overrides, message", [
    ({"model.embed_dim": "2.5"}, "model.embed_dim: expected an int, got 2.5"),
    ({"model.embeddim": 3}, "unknown config key 'model.embeddim'; model has: "),
    ({"data.window_snippets": -1}, "data.window_snippets must be >= 0"),
    ({"data.window_overlap": 1.0}, "data.window_overlap in \\[0, 1\\)"),
    ({"data.protocol": "coco"}, "data.protocol must be one of \\('anet', 'thumos'\\), got 'coco'"),
    ({"model.embed_dim": 30}, "model.embed_dim 30 is not divisible by num_heads 4"),
    ({"train.schedule": "step"}, r"train.schedule must be one of \('constant', 'cosine'\)"),
])
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_config("anet", overrides)
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_set_args(["model.embed_dim"])


def test_to_dict_from_dict_round_trip():
    cfg = apply_overrides(get_config("thumos"), {"loss.mask_background": 0.5, "model.mask_hidden_dim": 64})
    assert from_dict(cfg.to_dict()) == cfg
