"""benchmarks/class_oracle.py: the video-class oracle filter and its table."""

import importlib.util
import sys

import numpy as np

from tags_tf.evaluation.evaluator import Evaluator
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("class_oracle", REPO / "benchmarks" / "class_oracle.py")
co = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("class_oracle", co)
_spec.loader.exec_module(co)


def _det(segments, scores, classes):
    return {"segments": np.asarray(segments, float), "scores": np.asarray(scores, float),
            "classes": np.asarray(classes, np.int64)}


def test_oracle_drops_only_classes_absent_from_the_video():
    det = {"a": _det([[0, 5], [1, 4], [6, 9]], [0.9, 0.8, 0.7], [1, 0, 1]),
           "b": _det([[0, 2]], [0.5], [2])}
    gt = {"a": {"segments": np.array([[0.0, 5.0]]), "labels": np.array([1]), "duration": 10.0},
          "b": {"segments": np.zeros((0, 2)), "labels": np.zeros(0, np.int64), "duration": 10.0}}
    out = co.keep_video_classes(det, gt)
    np.testing.assert_array_equal(out["a"]["classes"], [1, 1])
    np.testing.assert_array_equal(out["a"]["scores"], [0.9, 0.7])
    np.testing.assert_array_equal(out["a"]["segments"], [[0, 5], [6, 9]])
    assert len(out["b"]["scores"]) == 0


def test_oracle_removes_the_cost_of_a_wrong_class():
    # v0: one class-0 instance [0, 10]; its top detection has the right segment but
    # class 1 (a false positive of class 1), the second the right class. v1: one class-1
    # instance [50, 60], first missed (0.95), then found (0.1).
    det = {"v0": _det([[0, 10], [0, 10]], [0.9, 0.8], [1, 0]),
           "v1": _det([[20, 30], [50, 60]], [0.95, 0.1], [1, 1])}
    gt = {"v0": {"segments": np.array([[0.0, 10.0]]), "labels": np.array([0]), "duration": 100.0},
          "v1": {"segments": np.array([[50.0, 60.0]]), "labels": np.array([1]), "duration": 100.0}}
    ev = Evaluator(["c0", "c1"], "anet")
    as_is = ev.evaluate(det, gt).average_map
    oracle = ev.evaluate(co.keep_video_classes(det, gt), gt).average_map
    # As is, class 1 ranks: 0.95 (v1, miss), 0.9 (v0, FP), 0.1 (v1, hit) -> AP = 1/3.
    # Oracle, class 1: 0.95 (miss), 0.1 (hit) -> AP = 1/2. Class 0: AP 1 both ways.
    np.testing.assert_allclose(as_is, (1.0 + 1 / 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(oracle, (1.0 + 1 / 2) / 2, rtol=1e-6)


def test_table_reports_mean_and_sd_over_seeds():
    run = lambda avg, oracle: {s: {"avg": avg, "oracle_avg": oracle, "oracle_per_tiou": [oracle] * 10}  # noqa: E731
                               for s in ("val", "test")}
    table = co.format_table({("tags", "mask"): [run(0.30, 0.40), run(0.32, 0.44)]})
    row = table.splitlines()[2]
    assert row.startswith("| tags | mask | 2 | 31.0 ± 1.4 | 42.0 ± 2.8 | 31.0 ± 1.4 | 42.0 ± 2.8 |")
    assert row.endswith(" 42 42 42 42 42 42 42 42 42 42 |")
