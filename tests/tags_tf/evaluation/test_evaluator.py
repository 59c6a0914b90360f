"""tags_tf.evaluation.evaluator: one Evaluator for arrays (training) and files (the CLI), golden values."""

import json

import numpy as np
import pytest

from tags_tf.config import get_config
from tags_tf.data.annotation_files import load_annotations
from tags_tf.evaluation.evaluator import Evaluator
from tags_tf.evaluation.detections import ResultsError
from tags_tf.evaluation.results_reader import read_results
from tags_tf.evaluation.submission import ResultsWriter

NAMES = ("A", "B", "C")  # C has no ground truth
GROUND_TRUTH = {
    "v1": {"segments": np.array([[0.0, 10.0]]), "labels": np.array([0]), "duration": 40.0},
    "v2": {"segments": np.array([[5.0, 15.0]]), "labels": np.array([1]), "duration": 20.0},
}
DETECTIONS = {
    "v1": {"segments": np.array([[0.0, 10.0], [20.0, 30.0], [0.0, 10.0]], np.float32),
           "scores": np.array([0.9, 0.5, 0.8], np.float32), "classes": np.array([0, 0, 2])},
    "v2": {"segments": np.array([[5.0, 10.0]], np.float32), "scores": np.array([0.7], np.float32),
           "classes": np.array([1])},
}


def test_arrays_golden_values():
    # A: [TP (tIoU 1), FP] -> AP 1 at both thresholds. B: tIoU 0.5 -> AP 1 at 0.5, 0 at 0.75.
    # The C detection has no ground-truth class: left out and counted.
    report = Evaluator(NAMES, tiou_thresholds=[0.5, 0.75]).evaluate(DETECTIONS, GROUND_TRUTH)
    assert report.protocol == "custom" and report.class_names == ("A", "B")
    np.testing.assert_allclose(report.ap, [[1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(report.mAP, [1.0, 0.5])
    assert report.average_mAP == pytest.approx(0.75)
    assert (report.num_predictions, report.unknown_label_predictions, report.unknown_labels) == (3, 1, ("C",))


def test_arrays_and_the_files_written_from_them_score_the_same(tmp_path):
    """Training scores arrays; tags_tf.evaluate scores the files: one evaluator, one result."""
    evaluator = Evaluator(NAMES, "thumos")
    in_memory = evaluator.evaluate(DETECTIONS, GROUND_TRUTH)
    ResultsWriter(NAMES).add_detections(DETECTIONS).write(tmp_path / "pred.json")  # what training writes
    database = {vid: {"subset": "validation", "duration": g["duration"],
                      "annotations": [{"segment": s.tolist(), "label": NAMES[c]} for s, c in zip(g["segments"], g["labels"])]}
                for vid, g in GROUND_TRUTH.items()}
    (tmp_path / "gt.json").write_text(json.dumps({"version": "1.3", "database": database}))
    gt = load_annotations(tmp_path / "gt.json", subset="validation")
    from_files = evaluator.evaluate_sets(read_results(tmp_path / "pred.json"), gt)
    assert from_files.to_dict() == in_memory.to_dict()
    assert in_memory.protocol == "thumos" and len(in_memory.tiou_thresholds) == 5


def test_the_training_evaluator_takes_the_protocol_from_the_config():
    assert Evaluator.from_config(get_config("thumos"), NAMES).protocol == "thumos"
    assert Evaluator.from_config(get_config("anet"), NAMES).protocol == "anet"
    with pytest.raises(ValueError, match="unknown protocol 'coco'"):
        Evaluator(NAMES, "coco")


def test_bad_arrays_are_one_line_errors_naming_the_video():
    bad = {"v1": {"segments": np.array([[0.0, 1.0]]), "scores": np.array([0.5]), "classes": np.array([3])}}
    with pytest.raises(ResultsError, match=r"Detections.from_arrays\('v1'\): class ids must be integers in \[0, 3\)"):
        Evaluator(NAMES).evaluate(bad, GROUND_TRUTH)


def test_write_plots_of_arrays(tmp_path):
    written = Evaluator(NAMES).write_plots(str(tmp_path), DETECTIONS, GROUND_TRUTH)
    assert {"pr_curves.png", "false_positive_profile.png"} <= {p.rsplit("/", 1)[-1] for p in written}
