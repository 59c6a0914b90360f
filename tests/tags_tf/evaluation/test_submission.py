"""Tests for tags_tf.evaluation.submission: submission-format reading, validation and writing."""

import json
import logging

import numpy as np
import pytest

from tags_tf.evaluation.detections import Detections, ResultsError

from tags_tf.evaluation.results_reader import parse_results, read_results

from tags_tf.evaluation.submission import ResultsWriter

CLASSES = ("Archery", "Bowling", "Zumba")


def _write(tmp_path, obj, name="pred.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_writer_round_trip_with_padding(tmp_path):
    writer = ResultsWriter(CLASSES, external_data={"used": True, "details": "cuhk scores"})
    # Post-processing output is padded to N = 4 with a valid count of 2.
    segments = np.array([[1.5, 4.25], [0.0, 10.0], [0, 0], [0, 0]], np.float32)
    scores = np.array([0.9, 0.25, 0.0, 0.0], np.float32)
    class_ids = np.array([2, 0, 0, 0], np.int32)
    writer.add("vid1", segments, scores, class_ids, count=2)
    writer.add("vid2", np.zeros((0, 2)), np.zeros((0,)), np.zeros((0,), np.int64))
    path = tmp_path / "out" / "results.json"
    writer.write(path)
    raw = json.loads(path.read_text())
    assert set(raw) == {"version", "results", "external_data"}
    assert raw["results"]["vid1"] == [
        {"label": "Zumba", "score": pytest.approx(0.9, abs=1e-7), "segment": [1.5, 4.25]},
        {"label": "Archery", "score": 0.25, "segment": [0.0, 10.0]}]
    assert raw["results"]["vid2"] == []
    det = read_results(path)
    assert len(det) == 2 and det.num_videos == 1
    assert det.labels.tolist() == ["Zumba", "Archery"]
    np.testing.assert_allclose(det.segments, [[1.5, 4.25], [0.0, 10.0]])
    assert det.external_data["details"] == "cuhk scores"
    assert det.to_dict()["results"]["vid1"][1]["segment"] == [0.0, 10.0]
    assert len(writer.detections()) == 2


def test_writer_add_batch_and_bytes_ids():
    writer = ResultsWriter(CLASSES)
    segs = np.array([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], np.float32)  # (B=2, N=2, 2)
    writer.add_batch([b"a", b"b"], segs, np.array([[0.5, 0.4], [0.3, 0.2]]),
                     np.array([[0, 1], [1, 2]]), counts=np.array([1, 2]))
    assert len(writer) == 3
    assert [e["label"] for e in writer.to_dict()["results"]["b"]] == ["Bowling", "Zumba"]
    with pytest.raises(ResultsError, match="batch sizes"):
        writer.add_batch(["a"], segs, np.zeros((2, 2)), np.zeros((2, 2), int))


@pytest.mark.parametrize("args, message", [
    (([[0, 1]], [0.5, 0.1], [0]), r"expected scores and class_ids of shape \(1,\)"),
    (([0, 1], [0.5], [0]), r"segments must have shape \(N, 2\)"),
    (([[0, 1]], [0.5], [3]), r"class ids must be integers in \[0, 3\)"),
    (([[0, 1]], [0.5], [0.0]), "class ids must be integers"),
    (([[0, 1]], [np.nan], [0]), "must be finite"),
    (([[2, 1]], [0.5], [0]), "end < start"),
])
def test_writer_rejects_bad_arrays(args, message):
    with pytest.raises(ResultsError, match=message):
        ResultsWriter(CLASSES).add("v", *args)
    with pytest.raises(ResultsError, match="count 5 outside"):
        ResultsWriter(CLASSES).add("v", [[0, 1]], [0.5], [0], count=5)


GOOD = {"version": "1.3", "external_data": {}, "results": {
    "v1": [{"label": "Zumba", "score": 0.5, "segment": [1, 2]},
           {"label": "Bowling", "score": 1, "segment": [3, 4.5]}],
    "v2": []}}


def test_read_good_file(tmp_path):
    det = read_results(_write(tmp_path, GOOD))
    assert det.video_ids.tolist() == ["v1", "v1"] and det.scores.tolist() == [0.5, 1.0]
    np.testing.assert_allclose(det.segments, [[1, 2], [3, 4.5]])  # ints and floats
    assert det.for_video("v1").labels.tolist() == ["Zumba", "Bowling"]
    assert len(det.for_video("v2")) == 0 and len(Detections.empty()) == 0


def _bad(mutator):
    obj = json.loads(json.dumps(GOOD))
    mutator(obj)
    return obj


@pytest.mark.parametrize("obj, message", [
    ([1, 2], "expected a JSON object with 'results'"),
    ({"version": "x"}, "missing key 'results'"),
    ({"results": []}, "'results' must be an object"),
    (_bad(lambda o: o["results"].update(v2={"a": 1})), "video 'v2': expected a list"),
    (_bad(lambda o: o["results"]["v1"][1].pop("label")), "video 'v1' entry 1: missing key 'label'"),
    (_bad(lambda o: o["results"]["v1"][0].pop("score")), "video 'v1' entry 0: missing key 'score'"),
    (_bad(lambda o: o["results"]["v1"][0].pop("segment")), "missing key 'segment'"),
    (_bad(lambda o: o["results"]["v1"].append(3)), "video 'v1' entry 2: expected an object"),
    (_bad(lambda o: o["results"]["v1"][1].update(label=7)), "entry 1: 'label' must be a string"),
    (_bad(lambda o: o["results"]["v1"][1].update(score="0.3")), "entry 1: 'score' must be a number"),
    (_bad(lambda o: o["results"]["v1"][1].update(score=True)), "'score' must be a number"),
    (_bad(lambda o: o["results"]["v1"][1].update(score=float("nan"))), "entry 1: 'score' must be finite"),
    (_bad(lambda o: o["results"]["v1"][0].update(score=float("inf"))), "entry 0: 'score' must be finite"),
    (_bad(lambda o: o["results"]["v1"][0].update(segment=[1])), r"'segment' must be \[start, end\]"),
    (_bad(lambda o: o["results"]["v1"][1].update(segment=["a", 2])), r"entry 1: 'segment' must be"),
    (_bad(lambda o: o["results"]["v1"][1].update(segment=[1, float("nan")])), "'segment' must be finite"),
    (_bad(lambda o: o["results"]["v1"][1].update(segment=[5, 4])),
     r"video 'v1' entry 1: segment end 4.0 < start 5.0 \(1 such prediction"),
])
def test_malformed_results_give_one_line_errors(tmp_path, obj, message):
    path = _write(tmp_path, obj)
    with pytest.raises(ResultsError, match=message) as info:
        read_results(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_reversed_segments_allowed_on_request(tmp_path, caplog):
    obj = _bad(lambda o: o["results"]["v1"][1].update(segment=[5, 4]))
    with caplog.at_level(logging.WARNING):
        det = read_results(_write(tmp_path, obj), allow_reversed=True)
    assert det.segments[1].tolist() == [5.0, 4.0]
    assert "end < start" in caplog.text


def test_file_errors_and_missing_metadata(tmp_path, caplog):
    with pytest.raises(ResultsError, match="file not found"):
        read_results(tmp_path / "none.json")
    with pytest.raises(ResultsError, match="invalid JSON"):
        read_results(_write(tmp_path, "{'single': quotes}"))
    with caplog.at_level(logging.WARNING):
        det = parse_results({"results": {"v": []}}, source="mem")
    assert len(det) == 0 and "missing key(s) ['version', 'external_data']" in caplog.text


def test_video_listed_twice_in_results_is_an_error(tmp_path):
    text = ('{"version": "1", "external_data": {}, "results": {'
            '"v": [{"label": "Zumba", "score": 0.5, "segment": [1, 2]}], "v": []}}')
    with pytest.raises(ResultsError, match="key 'v' appears twice"):
        read_results(_write(tmp_path, text))


def test_write_submission_and_from_arrays(tmp_path):
    from tags_tf.evaluation.submission import write_submission

    mapping = {"v1": [{"label": "Zumba", "score": 0.5, "segment": [1.0, 2.0]}]}
    write_submission(tmp_path / "a.json", mapping)
    full = json.loads((tmp_path / "a.json").read_text())
    assert full["results"] == mapping and "version" in full and "external_data" in full
    write_submission(tmp_path / "b.json", {"version": "x", "results": mapping})
    assert json.loads((tmp_path / "b.json").read_text())["version"] == "x"
    with pytest.raises(ResultsError, match=r"c.json: video 'v1' entry 0: missing key 'score'"):
        write_submission(tmp_path / "c.json", {"v1": [{"label": "A", "segment": [0, 1]}]})
    assert not (tmp_path / "c.json").exists()

    det = Detections.from_arrays(
        {"v1": {"segments": np.array([[0.5, 1.5], [0, 0]]), "scores": np.array([0.7, 0.0]),
                "classes": np.array([1, 0]), "count": 1},
         "v2": (np.array([[2.0, 3.0]]), np.array([0.1]), np.array([2]))}, CLASSES)
    assert det.video_ids.tolist() == ["v1", "v2"] and det.labels.tolist() == ["Bowling", "Zumba"]
    np.testing.assert_allclose(det.segments, [[0.5, 1.5], [2.0, 3.0]])


def test_from_arrays_keeps_the_arrays_values_and_checks_them_like_the_writer():
    third = np.array([[1 / 3, 2 / 3]])  # a file rounds it; the in-memory columns do not
    det = Detections.from_arrays({"v": (third, np.array([np.float32(0.3)]), np.array([0]))}, CLASSES)
    assert det.segments.dtype == np.float64 and det.segments.tolist() == third.tolist()
    assert det.scores.tolist() == [float(np.float32(0.3))]
    empty = Detections.from_arrays({"v": (np.zeros((0, 2)), np.zeros((0,)), np.zeros((0,)))}, CLASSES)
    assert len(empty) == 0 and Detections.from_arrays({}, CLASSES).segments.shape == (0, 2)
    with pytest.raises(ResultsError, match=r"Detections.from_arrays\('v'\): segment end < start"):
        Detections.from_arrays({"v": ([[2.0, 1.0]], [0.5], [0])}, CLASSES)
    with pytest.raises(ResultsError, match=r"Detections.from_arrays\('v'\): count 2 outside \[0, 1\]"):
        Detections.from_arrays({"v": {"segments": [[0.0, 1.0]], "scores": [0.5], "classes": [0], "count": 2}}, CLASSES)
