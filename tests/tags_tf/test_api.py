"""tags_tf/api.py: load a run, a .keras file or a SavedModel; detect on numpy; score."""

import json

import numpy as np
import pytest

import tags_tf
from serving.testing import export_model
from tags_tf import testing
from tags_tf.api import Segment


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory (best.keras + class_names.json) of a random-init tiny model."""
    cfg = testing.tiny_config()
    model = testing.build_model(cfg, seed=3)
    path = tmp_path_factory.mktemp("run")
    model.save(path / "best.keras")
    (path / "class_names.json").write_text(json.dumps(testing.class_names(cfg)))
    return path, model, cfg


def test_a_run_detects_named_segments_equal_to_the_model(run):
    path, model, cfg = run
    features = np.random.default_rng(0).normal(size=(23, cfg.model.feature_dim)).astype("float32")
    segments = tags_tf.load(path).detect(features, 46.0)
    ref = testing.in_process_detect(model, features[None], np.array([46.0]))
    n = int(ref["num_detections"][0])
    assert len(segments) == n > 0 and all(isinstance(s, Segment) for s in segments)
    names = testing.class_names(cfg)
    assert [s.label for s in segments] == [names[c] for c in ref["detection_classes"][0, :n]]
    np.testing.assert_allclose([[s.start, s.end] for s in segments], ref["detection_segments"][0, :n], atol=1e-5)
    np.testing.assert_allclose([s.score for s in segments], ref["detection_scores"][0, :n], rtol=1e-5)
    assert all(0.0 <= s.start < s.end <= 46.0 for s in segments)
    assert [s.score for s in segments] == sorted((s.score for s in segments), reverse=True)


def test_a_keras_file_and_a_saved_model_give_the_same_segments(run, tmp_path):
    path, _, cfg = run
    features = np.random.default_rng(1).normal(size=(17, cfg.model.feature_dim)).astype("float32")
    from_file = tags_tf.load(path / "best.keras").detect(features, 30.0)  # class names beside it
    _, version = export_model(tmp_path / "tags", cfg, seed=3)
    served = tags_tf.load(version).detect(features, 30.0)
    assert [s.label for s in served] == [s.label for s in from_file]
    np.testing.assert_allclose([[s.start, s.end, s.score] for s in served],
                               [[s.start, s.end, s.score] for s in from_file], rtol=1e-4, atol=1e-4)


def test_bad_input_is_one_line(run, tmp_path):
    path, _, cfg = run
    detector = tags_tf.load(path)
    with pytest.raises(ValueError, match=rf"features must be \(T >= 1, {cfg.model.feature_dim}\) .* got \[5, 3\]"):
        detector.detect(np.zeros((5, 3)), 10.0)
    with pytest.raises(ValueError, match="duration must be > 0"):
        detector.detect(np.zeros((5, cfg.model.feature_dim)), 0.0)
    with pytest.raises(FileNotFoundError, match="not a training run"):
        tags_tf.load(tmp_path / "nothing")


def test_score_by_hand(tmp_path):
    database = {v: {"subset": "test", "duration": 10.0, "annotations": [{"segment": seg, "label": "jump"}]}
                for v, seg in (("a", [1.0, 3.0]), ("b", [5.0, 9.0]))}
    database["c"] = {"subset": "training", "duration": 10.0, "annotations": [{"segment": [0.0, 1.0], "label": "jump"}]}
    (tmp_path / "gt.json").write_text(json.dumps({"version": "1.3", "database": database}))
    hit_a, miss_b, hit_b = Segment(1.0, 3.0, "jump", 0.9), Segment(0.0, 1.0, "jump", 0.5), Segment(5.0, 9.0, "jump", 0.4)
    # Only a found: recall 1/2 at precision 1 -> AP 0.5 at every tIoU.
    assert tags_tf.score({"a": [hit_a]}, tmp_path / "gt.json", "test").average_map == pytest.approx(0.5)
    # a (TP 0.9), b's false positive (0.5), b (TP 0.4): AP = 0.5 x 1 + 0.5 x 2/3.
    report = tags_tf.score({"a": [hit_a], "b": [miss_b, hit_b]}, tmp_path / "gt.json", "test", protocol="thumos")
    assert report.average_map == pytest.approx(0.5 + 0.5 * 2 / 3) and len(report.map_per_tiou) == 5


def test_the_api_names_are_not_shadowed_by_a_module():
    # A submodule imported later becomes an attribute of the package: an API name equal
    # to a module name (tags_tf.evaluate is the CLI) would stop working after that import.
    import importlib
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(tags_tf.__path__)}
    assert not set(tags_tf.__all__) & modules, set(tags_tf.__all__) & modules
    importlib.import_module("tags_tf.evaluate")
    assert callable(tags_tf.score) and callable(tags_tf.load) and tags_tf.Segment is Segment
