"""Fault injection for ``python -m tags_tf.evaluate``: every bad predictions or
ground-truth file gives exit 2 and exactly one ``error:`` line naming the file and the
entry (never a traceback); bad ground-truth *entries* follow the annotation policy
(left out, with a ``note:``). ``BAD_PREDICTIONS`` / ``BAD_GROUND_TRUTH`` are the
corpus: (name, file text, expected message); add a row to extend it.
"""

import json

import pytest

from tags_tf.evaluate import main

GT = {"version": "1.3", "taxonomy": [], "database": {
    "v1": {"subset": "validation", "duration": 60.0, "annotations": [
        {"segment": [0.0, 10.0], "label": "A"}, {"segment": [20.0, 30.0], "label": "B"}]},
    "v2": {"subset": "validation", "duration": 40.0, "annotations": [{"segment": [5.0, 15.0], "label": "A"}]}}}


def _pred(v1_entry) -> str:
    """A predictions file whose first v1 entry is the given raw JSON text."""
    return ('{"version": "t", "external_data": {}, "results": {"v1": [' + v1_entry + '], '
            '"v2": [{"label": "A", "score": 0.7, "segment": [5.0, 15.0]}]}}')


BIG = "1" + "0" * 400  # a 400-digit integer: float() overflows

BAD_PREDICTIONS = [
    ("score_400_digits", _pred('{"label": "A", "score": ' + BIG + ', "segment": [0, 10]}'),
     "video 'v1' entry 0: 'score' must be a finite number, got 1000"),
    ("segment_400_digits", _pred('{"label": "A", "score": 0.5, "segment": [0, ' + BIG + ']}'),
     "video 'v1' entry 0: 'segment' must be a finite number"),
    ("negative_400_digits", _pred('{"label": "A", "score": 0.5, "segment": [-' + BIG + ', 1]}'),
     "'segment' must be a finite number"),
    ("segment_as_strings", _pred('{"label": "A", "score": 0.5, "segment": ["0.0", "10.0"]}'),
     "'segment' must be [start, end] numbers, got ['0.0', '10.0']"),
    ("score_as_string", _pred('{"label": "A", "score": "0.5", "segment": [0, 10]}'),
     "'score' must be a number, got '0.5'"),
    ("nested_100000_deep", "[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ("deep_inside_results", _pred('{"label": "A", "score": 0.5, "segment": ' + "[" * 100_000 + "]" * 100_000 + "}"),
     "JSON nested too deeply"),
    ("5000_digit_integer", _pred('{"label": "A", "score": 1' + "0" * 5000 + ', "segment": [0, 1]}'),
     "invalid JSON"),
    ("not_json", "{not json", "invalid JSON"),
    ("video_listed_twice", _pred('{"label": "A", "score": 0.5, "segment": [0, 10]}')[:-2]
     + ', "v1": []}}', "key 'v1' appears twice"),
]

BAD_GROUND_TRUTH = [
    ("gt_nested_100000_deep", "[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ("gt_not_json", json.dumps(GT)[:-2], "invalid JSON"),
    ("gt_key_twice_at_top", '{"version": 1, "version": 2, "database": {}}', "appears twice at the top level"),
]


@pytest.mark.parametrize("name, text, message", BAD_PREDICTIONS + BAD_GROUND_TRUTH,
                         ids=[c[0] for c in BAD_PREDICTIONS + BAD_GROUND_TRUTH])
def test_bad_file_is_one_line_exit_2(tmp_path, capsys, name, text, message):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(GT))
    pred.write_text(_pred('{"label": "A", "score": 0.5, "segment": [0, 10]}'))
    (gt if name.startswith("gt_") else pred).write_text(text)
    assert main(["--predictions", str(pred), "--ground-truth", str(gt), "--subset", "validation"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert message in err and (("gt.json" if name.startswith("gt_") else "pred.json") in err)
    assert len(err) < 400  # the 400-digit numbers are cut


def test_bad_ground_truth_entries_are_left_out_with_a_note(tmp_path, capsys):
    gt_obj = json.loads(json.dumps(GT))
    gt_obj["database"]["v1"]["annotations"][1]["segment"] = [30.0, 20.0]  # end < start: left out
    gt_obj["database"]["v3"] = {"subset": "validation", "duration": "long", "annotations": []}  # unusable
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(gt_obj))
    pred = tmp_path / "pred.json"
    pred.write_text(_pred('{"label": "A", "score": 0.9, "segment": [0, 10]}'))
    assert main(["--predictions", str(pred), "--ground-truth", str(gt), "--subset", "validation",
                 "--tiou", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "note: 1 ground-truth video(s) with an unusable entry were left out" in out and "'v3'" in out
    assert "note: 1 malformed ground-truth segment(s) were left out" in out
    # Only class A remains (B's one instance was the bad segment): both A instances found.
    assert "avg    1.000000" in out
