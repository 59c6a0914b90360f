"""Tests for tags_tf.data.annotations (every layout, every error, the real files)."""

import json
import re
import subprocess
import sys

import pytest

from tags_tf.data.annotation_files import load_annotations

from tags_tf.data.annotations import AnnotationError, AnnotationSet, Instance


def _write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


OFFICIAL = {
    "version": "VERSION 1.3",
    "taxonomy": [],
    "database": {
        "vidA": {"subset": "validation", "duration": 10.0, "annotations": [
            {"segment": [1.0, 4.0], "label": "Zumba"},
            {"segment": [5.0, 5.0], "label": "Archery"},  # zero length: kept
            {"segment": [8.0, 12.0], "label": "Zumba"},  # past the duration: kept
        ]},
        "vidB": {"subset": "training", "duration": 20.0, "annotations": [
            {"segment": [0.5, 2.5], "label": "Bowling"}]},
        "vidC": {"subset": "testing", "duration": 7.0, "annotations": []},
    },
}


OFFICIAL_INSTANCES_A = (Instance(1.0, 4.0, "Zumba"), Instance(5.0, 5.0, "Archery"), Instance(8.0, 12.0, "Zumba"))


def test_official_layout(tmp_path):
    gt = load_annotations(_write(tmp_path, "gt.json", OFFICIAL))
    assert gt.fmt == "activitynet"
    assert gt.class_names == ("Archery", "Bowling", "Zumba")
    assert gt.subsets == ("testing", "training", "validation")
    vid = gt.videos["vidA"]
    assert vid.duration == 10.0 and vid.fps is None
    # File order, zero-length and past-duration segments are kept untouched.
    assert vid.instances == (Instance(1.0, 4.0, "Zumba"), Instance(5.0, 5.0, "Archery"),
                             Instance(8.0, 12.0, "Zumba"))
    val = gt.subset("VALIDATION")  # case-insensitive
    assert list(val.videos) == ["vidA"]
    assert val.class_names == gt.class_names  # class ids stay stable across subsets
    assert val.class_index()["Zumba"] == 2
    assert list(load_annotations(_write(tmp_path, "g2.json", OFFICIAL),
                                 subset=["training", "testing"]).videos) == ["vidB", "vidC"]


def test_actionformer_layout(tmp_path):
    obj = {"version": "Thumos14-30fps", "database": {
        "video_test_1": {"subset": "Test", "duration": 33.8, "fps": 30.0, "annotations": [
            {"label": "Diving", "segment": [0.2, 1.1], "segment(frames)": [6, 33], "label_id": 7}]},
        "video_validation_1": {"subset": "Validation", "duration": 9.0, "fps": 25.0,
                               "annotations": []}}}
    gt = load_annotations(_write(tmp_path, "thumos.json", obj))
    assert gt.fmt == "actionformer"
    test = gt.subset("test")
    assert test.videos["video_test_1"].fps == 30.0
    assert test.videos["video_test_1"].instances == (Instance(0.2, 1.1, "Diving"),)


def test_gtad_layout_string_segments(tmp_path):
    obj = {"database": {"video_test_2": {"subset": "test", "annotations": [
        {"segment": ["18.6", "24.8"], "label": "HighJump"}]}}}
    gt = load_annotations(_write(tmp_path, "thumos_gt.json", obj))
    assert gt.fmt == "gtad"
    assert gt.videos["video_test_2"].instances == (Instance(18.6, 24.8, "HighJump"),)
    assert gt.videos["video_test_2"].duration is None


def test_bsn_layout_with_video_info(tmp_path):
    anno = {"v_abc": {"duration_second": 12.5, "duration_frame": 300, "feature_frame": 288,
                      "annotations": [{"segment": [1.0, 3.0], "label": "Ballet"}]},
            "v_def": {"duration_second": 8.0, "duration_frame": 200, "feature_frame": 192,
                      "annotations": [{"segment": [0.0, 8.0], "label": "Zumba"}]},
            "v_notincsv": {"duration_second": 1.0, "annotations": []}}
    path = _write(tmp_path, "anet_anno_action.json", anno)
    (tmp_path / "video_info_new.csv").write_text(
        "video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
        "v_abc,300,12.5,24.0,24.0,validation,288\n"
        "v_def,200,8.0,25.0,25.0,training,192\n")
    gt = load_annotations(path)  # finds the csv next to the json
    assert gt.fmt == "bsn"
    assert set(gt.videos) == {"abc", "def"}  # v_ stripped, csv lists the videos
    assert gt.videos["abc"].subset == "validation" and gt.videos["abc"].fps == 24.0
    assert gt.videos["abc"].duration == 12.5
    kept = load_annotations(path, video_info=tmp_path / "video_info_new.csv",
                            strip_v_prefix=False, subset="training")
    assert list(kept.videos) == ["v_def"]


def test_bsn_without_csv_names_missing_file(tmp_path):
    path = _write(tmp_path, "anno.json", {"v_abc": {"duration_second": 1.0, "annotations": []}})
    with pytest.raises(AnnotationError, match="video_info_new.csv: file not found"):
        load_annotations(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["database"]["vidA"]["annotations"][0].pop("segment"), "missing key 'segment'"),
    (lambda d: d["database"]["vidA"]["annotations"][0].pop("label"), "missing key 'label'"),
    (lambda d: d["database"]["vidA"]["annotations"][0].update(segment=[4.0, 1.0]),
     r"segment end 1.0 < start 4.0"),
    (lambda d: d["database"]["vidA"]["annotations"][0].update(segment=["a", 1.0]),
     "segment start must be a number"),
    (lambda d: d["database"]["vidA"]["annotations"][0].update(segment=[1.0, float("nan")]),
     "segment end must be finite"),
    (lambda d: d["database"]["vidA"]["annotations"][0].update(segment=[1.0]),
     r"'segment' must be \[start, end\]"),
    (lambda d: d["database"]["vidA"]["annotations"][0].update(label=""), "'label' must be a non-empty"),
])
def test_bad_segment_is_left_out_and_described_not_fatal(tmp_path, mutate, message):
    obj = json.loads(json.dumps(OFFICIAL))
    mutate(obj)
    gt = load_annotations(_write(tmp_path, "bad.json", obj))
    vid = gt.videos["vidA"]
    # The other two segments of vidA and the other videos are kept; the bad one is described.
    assert vid.instances == OFFICIAL_INSTANCES_A[1:] and vid.problem is None
    (problem,) = vid.bad_segments
    assert re.search(message, problem) and "'vidA' annotation 0" in problem and "\n" not in problem
    assert set(gt.videos) == {"vidA", "vidB", "vidC"} and gt.num_bad_segments == 1
    assert gt.class_names == ("Archery", "Bowling", "Zumba")  # class ids do not move


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["database"]["vidA"].pop("subset"), "missing key 'subset'"),
    (lambda d: d["database"]["vidA"].update(duration="long"), "duration must be a number"),
    (lambda d: d["database"]["vidA"].update(annotations={}), "'annotations' must be a list"),
    (lambda d: d["database"].update(vidA=[1, 2]), "expected an object"),
])
def test_bad_video_is_marked_with_a_reason_not_fatal(tmp_path, mutate, message):
    obj = json.loads(json.dumps(OFFICIAL))
    mutate(obj)
    path = _write(tmp_path, "bad.json", obj)
    gt = load_annotations(path)
    vid = gt.videos["vidA"]
    assert vid.instances == () and vid.problem[0] == "bad_annotation"
    assert re.search(message, vid.problem[1]) and vid.problem[1].startswith(str(path))
    assert "\n" not in vid.problem[1] and "'vidA'" in vid.problem[1]
    assert [p[0] for p in gt.problems()] == ["vidA"]
    assert set(gt.usable().videos) == {"vidB", "vidC"}  # the good videos are all there


def test_bad_input_is_summed_up_in_one_warning(tmp_path, caplog):
    obj = json.loads(json.dumps(OFFICIAL))
    obj["database"]["vidA"]["annotations"][0]["segment"] = [4.0, 1.0]
    obj["database"]["vidB"]["duration"] = "long"
    with caplog.at_level("WARNING"):
        load_annotations(_write(tmp_path, "bad.json", obj))
    (record,) = caplog.records
    assert "1 unusable video(s), 1 bad segment(s) left out" in record.getMessage()


def test_file_level_errors(tmp_path):
    with pytest.raises(AnnotationError, match="file not found"):
        load_annotations(tmp_path / "nope.json")
    with pytest.raises(AnnotationError, match="invalid JSON"):
        load_annotations(_write(tmp_path, "broken.json", "{not json"))
    with pytest.raises(AnnotationError, match="unrecognized annotation layout"):
        load_annotations(_write(tmp_path, "odd.json", {"videos": [1, 2]}))
    with pytest.raises(AnnotationError, match="top level"):
        load_annotations(_write(tmp_path, "list.json", [1, 2]))
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        load_annotations(_write(tmp_path, "gt.json", OFFICIAL), fmt="coco")


def test_video_listed_twice_is_rejected_not_merged(tmp_path):
    text = ('{"version": "1.3", "taxonomy": [], "database": {'
            '"vidA": {"subset": "training", "duration": 10.0, "annotations": ['
            '{"segment": [1, 2], "label": "Jump"}]}, '
            '"vidB": {"subset": "training", "duration": 5.0, "annotations": []}, '
            '"vidA": {"subset": "validation", "duration": 12.0, "annotations": []}}}')
    gt = load_annotations(_write(tmp_path, "twice.json", text))
    assert gt.videos["vidA"].problem == ("duplicate_video_id", f"{tmp_path / 'twice.json'}: video 'vidA' is listed 2 times")
    assert gt.videos["vidA"].instances == () and gt.videos["vidB"].problem is None
    assert gt.class_names == ("Jump",)  # its labels still name a class


def test_key_twice_at_the_top_level_or_in_a_segment(tmp_path):
    top = '{"version": "1", "version": "2", "taxonomy": [], "database": {}}'
    with pytest.raises(AnnotationError, match=r"key 'version' appears twice at the top level"):
        load_annotations(_write(tmp_path, "top.json", top))
    seg = ('{"database": {"v": {"subset": "training", "duration": 9, "annotations": ['
           '{"segment": [1, 2], "segment": [3, 4], "label": "A"}]}}}')
    gt = load_annotations(_write(tmp_path, "seg.json", seg))
    assert gt.videos["v"].bad_segments == ("video 'v' annotation 0: key 'segment' appears twice",)


def test_wrong_subset_lists_available(tmp_path):
    gt = load_annotations(_write(tmp_path, "gt.json", OFFICIAL))
    with pytest.raises(AnnotationError,
                       match="wrong subset name 'val'; available subsets: testing, training, validation"):
        gt.subset("val")


def test_no_tensorflow_import():
    code = ("import sys, tags_tf.data.annotations; "
            "sys.exit(int(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---- the real public files (skipped without ../shared) ----------------------------------

def test_real_activitynet(shared):
    gt = load_annotations(shared / "datasets/activitynet13/activity_net.v1-3.reconstructed.json")
    assert len(gt.class_names) == 200
    counts = {s: (len(gt.subset(s)), gt.subset(s).num_instances) for s in gt.subsets}
    assert counts == {"training": (10024, 15410), "validation": (4926, 7654), "testing": (5044, 0)}
    # 3 zero-length validation segments are kept, like the official evaluator does.
    val = gt.subset("validation")
    assert sum(i.start == i.end for v in val.videos.values() for i in v.instances) == 3


def test_real_bsn_matches_provenance(shared):
    gt = load_annotations(shared / "datasets/activitynet13/bsn/anet_anno_action.json")
    assert {s: len(gt.subset(s)) for s in gt.subsets} == {
        "training": 9649, "validation": 4728, "testing": 4851}
    assert gt.videos["4Lu8ECLHvK4"].duration == 124.23
    assert len(gt.class_names) == 200


def test_real_thumos(shared):
    gt = load_annotations(shared / "datasets/thumos14/thumos14.json")
    assert gt.subset("test").num_instances == 3358 and len(gt.subset("Test")) == 212
    assert gt.subset("validation").num_instances == 3007
    assert gt.class_names[0] == "BaseballPitch" and len(gt.class_names) == 20
    gtad = load_annotations(shared / "datasets/thumos14/gtad/thumos_gt.json")
    assert (len(gtad.subset("test")), gtad.subset("test").num_instances) == (210, 3311)


def test_from_arrays():
    import numpy as np

    gt = AnnotationSet.from_arrays(
        {b"v1": (np.array([[1.0, 2.0], [3.0, 3.0]]), np.array([1, 0]), 10.0),
         "v2": ([], [])}, ["Zumba", "Archery"])
    assert gt.class_names == ("Zumba", "Archery")  # kept in id order
    assert gt.videos["v1"].instances == (Instance(1.0, 2.0, "Archery"), Instance(3.0, 3.0, "Zumba"))
    assert gt.videos["v1"].duration == 10.0 and gt.videos["v2"].instances == ()
    assert len(gt.subset("validation")) == 2
    with pytest.raises(AnnotationError, match="class id 5 outside"):
        AnnotationSet.from_arrays({"v": ([[0, 1]], [5])}, ["A"])
    with pytest.raises(AnnotationError, match="bad segment"):
        AnnotationSet.from_arrays({"v": ([[2, 1]], [0])}, ["A"])
