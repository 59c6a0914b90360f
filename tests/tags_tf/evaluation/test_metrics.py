"""Tests for tags_tf.evaluation.metrics: hand-computed cases, reference-loop cross-check, the oracle."""

import re

import numpy as np
import pytest

from tags_tf.data.annotation_files import load_annotations

from tags_tf.data.annotations import AnnotationSet, Instance, VideoAnnotation
from tags_tf.evaluation.matching import interpolated_average_precision, segment_iou
from tags_tf.evaluation.metrics import evaluate_detections, tiou_thresholds_for
from tags_tf.evaluation.results_reader import read_results


def make_gt(rows):
    """rows: (video, label, start, end) -> AnnotationSet (all in subset 'validation')."""
    videos = {}
    for vid, label, start, end in rows:
        videos.setdefault(vid, []).append(Instance(float(start), float(end), label))
    anns = {v: VideoAnnotation(v, "validation", 100.0, None, tuple(i)) for v, i in videos.items()}
    return AnnotationSet(anns, tuple(sorted({r[1] for r in rows})), "<test>")


def make_pred(rows):
    """rows: (video, label, start, end, score) -> submission dict."""
    results = {}
    for vid, label, start, end, score in rows:
        results.setdefault(vid, []).append({"label": label, "score": score, "segment": [start, end]})
    return {"version": "t", "results": results, "external_data": {}}


def test_hand_computed_two_videos_two_classes():
    gt = make_gt([("v1", "A", 0, 10), ("v1", "A", 20, 30), ("v1", "B", 40, 50),
                  ("v2", "A", 0, 10), ("v2", "B", 5, 15)])
    pred = make_pred([
        ("v1", "A", 0, 10, 0.9),   # tIoU 1.0 with v1/A[0,10]: TP, TP
        ("v1", "A", 1, 10, 0.8),   # best GT v1/A[0,10] (0.9) already taken, next 0.0: FP, FP
        ("v2", "A", 0, 5, 0.7),    # tIoU 5/10 = 0.5: TP at 0.5, FP at 0.75
        ("v1", "A", 20, 28, 0.6),  # tIoU 8/10 = 0.8: TP, TP
        ("v2", "B", 5, 15, 0.5),   # tIoU 1.0: TP, TP
        ("v3", "B", 0, 1, 0.95),   # video absent from the GT: FP, FP (counted)
        ("v1", "B", 45, 55, 0.4),  # tIoU 5/15 = 0.33: FP, FP
        ("v1", "C", 0, 10, 0.99),  # label not in the GT: ignored (counted)
    ])
    m = evaluate_detections(pred, gt, tiou_thresholds=[0.5, 0.75], keep_matches=True)
    # Class A (npos 3), thr 0.5: TP FP TP TP -> precision 1, 1/2, 2/3, 3/4; recall 1/3, 1/3,
    # 2/3, 1; envelope 1, 3/4, 3/4, 3/4 -> AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6.
    # thr 0.75: TP FP FP TP -> precision 1, 1/2, 1/3, 1/2; recall 1/3, 1/3, 1/3, 2/3
    # -> AP = 1/3 * 1 + 1/3 * 1/2 = 1/2.
    # Class B (npos 2), both thresholds: FP(v3) TP FP -> precision 0, 1/2, 1/3; recall 0,
    # 1/2, 1/2 -> AP = 1/2 * 1/2 = 1/4.
    np.testing.assert_allclose(m.ap, [[5 / 6, 1 / 4], [1 / 2, 1 / 4]], atol=1e-12)
    np.testing.assert_allclose(m.mAP, [(5 / 6 + 1 / 4) / 2, (1 / 2 + 1 / 4) / 2], atol=1e-12)
    assert m.average_mAP == pytest.approx((13 / 24 + 3 / 8) / 2, abs=1e-12)
    assert m.class_names == ("A", "B")
    assert (m.num_predictions, m.unknown_label_predictions, m.unknown_labels) == (7, 1, ("C",))
    assert (m.absent_video_predictions, m.absent_videos) == (1, 1)
    assert any("not in the ground-truth subset" in n for n in m.notes())
    # Matches report rows of the parsed file (rows grouped by video: v1 has rows 0-4, of
    # which row 4 is the ignored "C" prediction).
    assert sorted(m.matches.order.tolist()) == [0, 1, 2, 3, 5, 6, 7]
    assert m.matches.tp.sum(axis=1).tolist() == [4, 3]


def test_duplicates():
    gt = make_gt([("v1", "A", 0, 10), ("v1", "A", 0, 10), ("v1", "A", 50, 60)])
    # Two identical GTs and three identical predictions: two TPs, then an FP.
    pred = make_pred([("v1", "A", 0, 10, 0.9), ("v1", "A", 0, 10, 0.8), ("v1", "A", 0, 10, 0.7)])
    m = evaluate_detections(pred, gt, tiou_thresholds=[0.5])
    # precision 1, 1, 2/3; recall 1/3, 2/3, 2/3 -> AP = 2/3.
    assert m.ap[0, 0] == pytest.approx(2 / 3, abs=1e-12)
    assert m.matches is None


def test_zero_length_ground_truth_matches_like_the_reference():
    gt = make_gt([("v1", "A", 5, 5), ("v1", "A", 20, 30)])
    pred = make_pred([
        ("v1", "A", 4, 6, 0.9),    # tIoU 0/2 = 0 with the zero-length GT: FP
        ("v1", "A", 7, 7, 0.8),    # zero length vs zero length: 0/0 = NaN tIoU. The reference
                                   # tests `tiou < thr` (False for NaN) and so matches it: TP.
        ("v1", "A", 20, 30, 0.7),  # TP
    ])
    m = evaluate_detections(pred, gt, tiou_thresholds=[0.5, 0.95])
    # FP TP TP: precision 0, 1/2, 2/3; recall 0, 1/2, 1 -> AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3.
    np.testing.assert_allclose(m.ap[:, 0], [2 / 3, 2 / 3], atol=1e-12)
    assert np.isnan(segment_iou([[7, 7]], [[5, 5]])[0, 0])


def test_score_ties_put_the_later_prediction_first():
    # The reference sorts with argsort()[::-1]: equal scores -> later file row first.
    gt = make_gt([("v1", "A", 0, 10)])
    pred = make_pred([("v1", "A", 0, 10, 0.5), ("v1", "A", 0, 6, 0.5)])
    m = evaluate_detections(pred, gt, tiou_thresholds=[0.7])
    # Order: [0,6] (tIoU 0.6, FP at 0.7), then [0,10] (TP) -> precision 0, 1/2 -> AP 1/2.
    assert m.ap[0, 0] == pytest.approx(0.5, abs=1e-12)


def test_v_prefix_and_empty_predictions():
    gt = make_gt([("abc", "A", 0, 10)])
    m = evaluate_detections(make_pred([("v_abc", "A", 0, 10, 0.5)]), gt)
    assert m.remapped_video_ids == 1 and m.average_mAP == pytest.approx(1.0)
    empty = evaluate_detections({"version": "", "results": {}, "external_data": {}}, gt, "thumos")
    assert empty.average_mAP == 0.0 and empty.mAP.shape == (5,)


def test_interpolated_average_precision_and_thresholds():
    # precision 1, 0.5, 2/3 with recall 0.5, 0.5, 1.0 -> envelope 1, 2/3, 2/3 -> 0.5 + 1/3.
    assert interpolated_average_precision([1, 0.5, 2 / 3], [0.5, 0.5, 1.0]) == pytest.approx(
        0.5 + 1 / 3)
    assert interpolated_average_precision([], []) == 0.0
    np.testing.assert_allclose(tiou_thresholds_for("anet"), np.arange(10) * 0.05 + 0.5)
    np.testing.assert_allclose(tiou_thresholds_for("THUMOS"), [0.3, 0.4, 0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="unknown protocol"):
        tiou_thresholds_for("coco")


def _reference_ap(gt_rows, pred_rows, thresholds):
    """Straight loop over predictions, following the official algorithm step by step."""
    classes = sorted({g[1] for g in gt_rows})
    ap = np.zeros((len(thresholds), len(classes)))
    for ci, c in enumerate(classes):
        gts = [g for g in gt_rows if g[1] == c]
        preds = [p for p in pred_rows if p[1] == c]
        if not preds:
            continue
        # Ascending stable sort reversed, like the reference's argsort()[::-1].
        order = np.argsort([p[4] for p in preds], kind="stable")[::-1]
        lock = np.zeros((len(thresholds), len(gts)), dtype=bool)
        tp = np.zeros((len(thresholds), len(preds)))
        for rank, i in enumerate(order):
            vid, _, s, e, _ = preds[i]
            idx = [j for j, g in enumerate(gts) if g[0] == vid]
            if not idx:
                continue
            ious = segment_iou([[s, e]], [[gts[j][2], gts[j][3]] for j in idx])[0]
            tries = np.argsort(ious, kind="stable")[::-1]
            for t, thr in enumerate(thresholds):
                for k in tries:
                    if ious[k] < thr:
                        break
                    if lock[t, idx[k]]:
                        continue
                    lock[t, idx[k]] = True
                    tp[t, rank] = 1
                    break
        for t in range(len(thresholds)):
            tpc = np.cumsum(tp[t])
            fpc = np.cumsum(1 - tp[t])
            rec, prec = tpc / len(gts), tpc / (tpc + fpc)
            mprec = np.concatenate([[0], prec, [0]])
            mrec = np.concatenate([[0], rec, [1]])
            for i in range(len(mprec) - 2, -1, -1):
                mprec[i] = max(mprec[i], mprec[i + 1])
            steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
            ap[t, ci] = np.sum((mrec[steps] - mrec[steps - 1]) * mprec[steps])
    return ap


@pytest.mark.parametrize("seed, num_gt, num_pred", [(s, 14, 60) for s in range(6)]
                         + [(s, 40, 150) for s in range(6, 9)])
def test_matches_reference_loop_on_random_cases_with_ties(seed, num_gt, num_pred):
    rng = np.random.default_rng(seed)
    videos, labels = ["a", "b", "c", "d"], ["X", "Y", "Z"]
    gt_rows = []
    for _ in range(num_gt):
        s = float(rng.integers(0, 20))
        gt_rows.append((str(rng.choice(videos[:3])), str(rng.choice(labels)), s,
                        s + float(rng.integers(0, 6))))  # some zero-length GTs
    pred_rows = []
    for _ in range(num_pred):
        s = float(rng.integers(0, 22))
        pred_rows.append((str(rng.choice(videos)), str(rng.choice(labels)), s,
                          s + float(rng.integers(0, 7)), round(float(rng.random()), 1)))  # ties
    # The file groups rows by video; score ties are broken by that file order.
    first_seen = {}
    for row in pred_rows:
        first_seen.setdefault(row[0], len(first_seen))
    pred_rows.sort(key=lambda row: first_seen[row[0]])
    thresholds = tiou_thresholds_for("thumos")
    m = evaluate_detections(make_pred(pred_rows), make_gt(gt_rows), tiou_thresholds=thresholds)
    expected = _reference_ap(gt_rows, pred_rows, thresholds)
    np.testing.assert_allclose(m.ap, expected, atol=1e-12)


def _expected_numbers(text, name):
    block = text.split(f"## {name}")[1].split("##")[0]
    per_tiou = [float(x) for x in re.search(r"mAP per tIoU:([\d. ]+)", block).group(1).split()]
    average = float(re.search(r"average mAP: ([\d.]+)", block).group(1))
    return per_tiou, average


@pytest.mark.parametrize("name, gt_path, subset, protocol", [
    ("anet_val_seed1.json", "datasets/activitynet13/activity_net.v1-3.reconstructed.json",
     "validation", "anet"),
    ("thumos_test_seed1.json", "datasets/thumos14/thumos14.json", "test", "thumos"),
])
def test_reproduces_official_oracle(shared, name, gt_path, subset, protocol):
    oracle = shared / "eval_oracle"
    per_tiou, average = _expected_numbers((oracle / "EXPECTED.md").read_text(), name)
    gt = load_annotations(shared / gt_path, subset=subset)
    # The THUMOS oracle holds one prediction with end < start, which the reference accepts.
    det = read_results(oracle / name, allow_reversed=True)
    m = evaluate_detections(det, gt, protocol)
    # EXPECTED.md prints 6 decimals: agreement to rounding (<= 5e-7) means 1e-6.
    np.testing.assert_allclose(m.mAP, per_tiou, atol=5.000001e-7)
    assert m.average_mAP == pytest.approx(average, abs=5.000001e-7)
    assert m.unknown_label_predictions == 0 and m.absent_video_predictions == 0


def test_official_sample_scores_one(shared):
    gt = load_annotations(shared / "datasets/activitynet13/activity_net.v1-3.reconstructed.json",
                          subset="validation")
    det = read_results(shared / "datasets/activitynet13/official_samples/sample_detection_prediction.json")
    m = evaluate_detections(det, gt, "anet")
    np.testing.assert_allclose(m.mAP, np.ones(10), atol=1e-12)


def test_snake_case_aliases():
    gt = make_gt([("v1", "A", 0, 10)])
    m = evaluate_detections(make_pred([("v1", "A", 0, 10, 0.5)]), gt, "thumos")
    assert m.average_map == m.average_mAP == 1.0
    assert m.map_per_tiou is m.mAP
    assert m.to_dict()["per_class_ap"] == {"A": [1.0] * 5}
