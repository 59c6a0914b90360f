"""Tests for the tags_tf.evaluate CLI (exit codes, output, one-line errors, imports)."""

import json
import subprocess
import sys

import pytest

from tags_tf.evaluate import main

GT = {"version": "1.3", "taxonomy": [], "database": {
    "v1": {"subset": "validation", "duration": 60.0, "annotations": [
        {"segment": [0.0, 10.0], "label": "A"}, {"segment": [20.0, 30.0], "label": "B"}]},
    "v2": {"subset": "validation", "duration": 40.0, "annotations": [
        {"segment": [5.0, 15.0], "label": "A"}]},
    "v3": {"subset": "training", "duration": 40.0, "annotations": [
        {"segment": [5.0, 15.0], "label": "C"}]}}}
PRED = {"version": "t", "external_data": {}, "results": {
    "v1": [{"label": "A", "score": 0.9, "segment": [0.0, 10.0]},
           {"label": "B", "score": 0.8, "segment": [20.0, 26.0]}],  # tIoU 0.6
    "v2": [{"label": "A", "score": 0.7, "segment": [5.0, 15.0]}]}}


@pytest.fixture
def files(tmp_path):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(GT))
    pred.write_text(json.dumps(PRED))
    return gt, pred


def _args(gt, pred, *extra):
    return ["--predictions", str(pred), "--ground-truth", str(gt), "--subset", "Validation",
            "--quiet", *extra]


def test_prints_table_and_writes_json(files, tmp_path, capsys):
    gt, pred = files
    out = tmp_path / "metrics" / "m.json"
    assert main(_args(gt, pred, "--protocol", "thumos", "--per-class", "--json", str(out))) == 0
    text = capsys.readouterr().out
    # A: 2/2 matched at every threshold (AP 1). B: tIoU 0.6 -> AP 1 at 0.3..0.6, 0 at 0.7.
    assert "0.30   1.000000  100.00" in text and "0.70   0.500000   50.00" in text
    assert "avg    0.900000   90.00" in text
    assert "THUMOS14 detection mAP" in text and "2 classes" in text
    assert any(line.startswith("B ") and line.split()[-1] == "80.0" for line in text.splitlines())
    report = json.loads(out.read_text())
    assert report["average_mAP"] == pytest.approx(0.9)
    assert report["per_class_ap"]["B"] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert report["subset"] == "Validation" and report["notes"] == []


def test_custom_thresholds(files, capsys):
    gt, pred = files
    assert main(_args(gt, pred, "--tiou", "0.5", "0.65")) == 0
    assert "avg    0.750000" in capsys.readouterr().out


def _write_bad_pred(tmp_path, mutate):
    obj = json.loads(json.dumps(PRED))
    mutate(obj)
    path = tmp_path / "bad_pred.json"
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize("case, message", [
    ("missing_pred", "missing.json: file not found"),
    ("wrong_subset", "wrong subset name 'valid'; available subsets: training, validation"),
    ("reversed", "segment end 2.0 < start 3.0"),
    ("nan_score", "'score' must be finite"),
    ("missing_key", "missing key 'segment'"),
    ("bad_gt", "gt_bad.json: invalid JSON"),
    ("bad_tiou", "--tiou thresholds must be in (0, 1]"),
])
def test_bad_input_one_line_exit_2(files, tmp_path, capsys, case, message):
    gt, pred = files
    subset = "validation"
    extra = []
    if case == "missing_pred":
        pred = tmp_path / "missing.json"
    elif case == "wrong_subset":
        subset = "valid"
    elif case == "reversed":
        pred = _write_bad_pred(tmp_path, lambda o: o["results"]["v1"][0].update(segment=[3, 2]))
    elif case == "nan_score":
        pred = _write_bad_pred(tmp_path, lambda o: o["results"]["v2"][0].update(score=float("nan")))
    elif case == "missing_key":
        pred = _write_bad_pred(tmp_path, lambda o: o["results"]["v2"][0].pop("segment"))
    elif case == "bad_gt":
        gt = tmp_path / "gt_bad.json"
        gt.write_text(json.dumps(GT)[:-3])  # a truncated file (bad segments: tests/tags_tf/test_faults_evaluate.py)
    elif case == "bad_tiou":
        extra = ["--tiou", "0.5", "1.5"]
    argv = ["--predictions", str(pred), "--ground-truth", str(gt), "--subset", subset, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_reversed_allowed_flag(files, tmp_path, capsys):
    gt, _ = files
    pred = _write_bad_pred(tmp_path, lambda o: o["results"]["v1"][1].update(segment=[26.0, 20.0]))
    assert main(_args(gt, pred, "--allow-reversed", "--tiou", "0.5")) == 0
    # B's only prediction is reversed -> false positive: mAP = (1 + 0) / 2.
    assert "avg    0.500000" in capsys.readouterr().out


def test_unknown_labels_and_absent_videos_are_reported(files, tmp_path, capsys):
    gt, _ = files
    pred = _write_bad_pred(tmp_path, lambda o: o["results"].update(
        v9=[{"label": "A", "score": 0.1, "segment": [0, 1]}],
        v2=[{"label": "Nope", "score": 0.1, "segment": [0, 1]}]))
    assert main(["--predictions", str(pred), "--ground-truth", str(gt), "--subset", "validation"]) == 0
    out = capsys.readouterr().out
    assert "note: 1 prediction(s) with label(s) not in the ground truth were ignored: 'Nope'" in out
    assert "note: 1 prediction(s) for 1 video(s) not in the ground-truth subset" in out


def test_cli_process_has_no_tensorflow_and_no_traceback(files, tmp_path):
    gt, pred = files
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "tags_tf.evaluate",
                          *_args(gt, pred)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    imported = [line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line]
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "matplotlib")]
    bad = subprocess.run([sys.executable, "-m", "tags_tf.evaluate", *_args(gt, tmp_path / "x.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0


def test_bsn_ground_truth_with_video_info(tmp_path, capsys):
    anno = {"v_v1": {"duration_second": 60.0, "annotations": [{"segment": [0, 10], "label": "A"}]}}
    (tmp_path / "anno.json").write_text(json.dumps(anno))
    (tmp_path / "info.csv").write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
                                       "v_v1,1800,60.0,30,30,validation,1792\n")
    pred = tmp_path / "p.json"
    pred.write_text(json.dumps({"version": "", "external_data": {}, "results": {
        "v1": [{"label": "A", "score": 0.5, "segment": [0, 10]}]}}))
    argv = ["--predictions", str(pred), "--ground-truth", str(tmp_path / "anno.json"),
            "--video-info", str(tmp_path / "info.csv"), "--subset", "validation", "--quiet"]
    assert main(argv) == 0
    assert "avg    1.000000" in capsys.readouterr().out


def test_cli_on_thumos_oracle(shared, capsys):
    argv = ["--predictions", str(shared / "eval_oracle/thumos_test_seed1.json"),
            "--ground-truth", str(shared / "datasets/thumos14/thumos14.json"),
            "--subset", "test", "--protocol", "thumos", "--allow-reversed", "--quiet"]
    assert main(argv) == 0
    assert "avg    0.421814" in capsys.readouterr().out
