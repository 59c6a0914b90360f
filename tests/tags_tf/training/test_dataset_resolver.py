"""tags_tf/training/dataset_resolver.py: --dataset resolution and the preset a shard directory gets."""

import json

import pytest

from tags_tf.training import dataset_resolver
from tags_tf.data.statistics import temporal_statistics


def _shard_dir(tmp_path, videos, num_classes=20, feature_dim=128):
    manifest = {"class_names": [f"c{i}" for i in range(num_classes)], "feature_dim": feature_dim,
                "subsets": {"training": {"videos": len(videos)}, "validation": {"videos": 1}},
                "statistics": {"training": temporal_statistics(videos)}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return str(tmp_path)


def _anet_like():
    # ~2-minute videos, mostly one long instance (ActivityNet: median 79 % for single
    # instances, 75 % of the videos with one).
    return [(120, 120.0, [(10.0, 100.0)])] * 6 + [(100, 100.0, [(5.0, 15.0), (40.0, 55.0)])] * 2


def _thumos_like():
    # 4-minute videos with 15 instances of ~4 s each (THUMOS14).
    return [(1800, 240.0, [(10.0 + 15 * i, 14.0 + 15 * i) for i in range(15)])] * 4


def test_activitynet_like_statistics_with_20_classes_resolve_to_anet(tmp_path):
    resolved = dataset_resolver.resolve(_shard_dir(tmp_path, _anet_like()))
    assert resolved.preset == "anet"
    assert "instances per video" in resolved.reason and "--preset" in resolved.reason
    cfg = dataset_resolver.config_for(resolved, {})
    assert cfg.model.base_snippets == 100 and cfg.model.num_classes == 20 and cfg.model.feature_dim == 128


def test_thumos_like_statistics_resolve_to_thumos_whatever_the_class_count(tmp_path):
    resolved = dataset_resolver.resolve(_shard_dir(tmp_path, _thumos_like(), num_classes=200, feature_dim=400))
    assert resolved.preset == "thumos"
    assert "median instance 1.7 % of its video" in resolved.reason and "15.0 instances per video" in resolved.reason
    assert dataset_resolver.config_for(resolved, {}).model.num_classes == 200  # classes from the manifest


def test_preset_flag_overrides_the_statistics(tmp_path):
    resolved = dataset_resolver.resolve(_shard_dir(tmp_path, _thumos_like()), preset="anet")
    assert resolved.preset == "anet" and "--preset" in resolved.reason
    with pytest.raises(dataset_resolver.MissingDataError, match="shard directory"):
        dataset_resolver.resolve("anet", preset="thumos")


def test_a_manifest_without_statistics_falls_back_to_the_class_count_and_says_so(tmp_path):
    manifest = {"class_names": [f"c{i}" for i in range(20)], "feature_dim": 2048, "subsets": {"training": {}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    resolved = dataset_resolver.resolve(str(tmp_path))
    assert resolved.preset == "thumos" and "no temporal statistics" in resolved.reason


def test_a_users_shard_directory_gets_the_recipe_fitted_to_its_size(tmp_path):
    resolved = dataset_resolver.resolve(_shard_dir(tmp_path, _anet_like()))  # 8 training videos
    assert resolved.own_data
    cfg = dataset_resolver.config_for(resolved, {})
    assert (cfg.train.batch_size, cfg.train.schedule, cfg.train.epochs) == (8, "cosine", 280)
    # An explicit key wins over the fitted one; train.recipe=preset keeps the preset's recipe.
    assert dataset_resolver.config_for(resolved, {"train.batch_size": 2}).train.batch_size == 2
    paper = dataset_resolver.config_for(resolved, {"train.recipe": "preset"}).train
    assert (paper.batch_size, paper.schedule, paper.learning_rate) == (50, "constant", 1e-4)


def test_a_manifest_missing_a_field_is_a_one_line_error_naming_the_file_and_field(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"class_names": ["a"], "subsets": {"training": {}}}))
    with pytest.raises(dataset_resolver.MissingDataError) as e:
        dataset_resolver.resolve(str(tmp_path))
    assert str(e.value).startswith(f"{tmp_path / 'manifest.json'}: field 'feature_dim' is missing")
    assert "\n" not in str(e.value)


def test_windows_are_the_training_samples_the_recipe_is_fitted_to(tmp_path, caplog):
    import logging

    import tensorflow as tf

    from tags_tf.data.windows import num_windows
    from tags_tf.testing import write_tiny_shards

    shard_dir = str(write_tiny_shards(tmp_path / "shards", num_train=40))  # 12-23 snippets a video
    resolved = dataset_resolver.resolve(shard_dir, preset="thumos")
    lengths = [int(tf.train.SequenceExample.FromString(r.numpy()).context.feature["num_snippets"].int64_list.value[0])
               for r in tf.data.TFRecordDataset(tf.io.gfile.glob(f"{shard_dir}/training-*"))]
    windows = sum(num_windows(t, 8, 4) for t in lengths)  # W = 8, stride 4
    assert windows > 2 * len(lengths)
    with caplog.at_level(logging.INFO, logger="tags_tf.training.dataset_resolver"):
        cfg = dataset_resolver.config_for(resolved, {"data.window_snippets": 8, "data.window_overlap": 0.5})
    assert f"recipe fitted to {windows} training samples" in caplog.text
    assert dataset_resolver.training_samples(resolved, "training", cfg.data) == windows
    whole = dataset_resolver.config_for(resolved, {"data.window_snippets": 0}).data
    assert dataset_resolver.training_samples(resolved, "training", whole) == 40


def test_thumos_own_layout_trains_on_validation_and_validates_on_test():
    from tags_tf.data.schema import Manifest
    from tags_tf.training.dataset_resolver import choose_subsets

    def manifest(*names):
        return Manifest.from_dict({"class_names": ["a"], "feature_dim": 4,
                                   "subsets": {n: {"videos": 1} for n in names}})

    assert choose_subsets(manifest("validation", "test"), "training", "validation") == ("validation", "test")
    assert choose_subsets(manifest("training", "validation", "test"), "training", "validation") == (
        "training", "validation")
