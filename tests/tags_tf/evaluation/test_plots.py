"""Tests for tags_tf.evaluation.plots: the false-positive breakdown (hand-made case) and the PNGs."""

import numpy as np
import pytest

from tags_tf.data.annotations import AnnotationSet, Instance, VideoAnnotation
from tags_tf.evaluation.metrics import evaluate_detections
from tags_tf.evaluation.plots import (
    FP_CATEGORIES,
    false_positive_breakdown,
    plot_false_positive_profile,
    plot_pr_curves,
    plot_timeline,
    precision_recall_curves,
    prediction_types,
    write_report_plots,
)
from tags_tf.evaluation.results_reader import parse_results


def _gt():
    videos = {
        "v1": VideoAnnotation("v1", "validation", 70.0, 30.0,
                              (Instance(0, 10, "A"), Instance(20, 30, "B"))),  # G = 2
        "v2": VideoAnnotation("v2", "validation", 60.0, 30.0, (Instance(0, 10, "A"),)),  # G = 1
    }
    return AnnotationSet(videos, ("A", "B"), "<test>")


def _pred():
    rows = {
        "v1": [("A", 0.9, 0, 10),    # TP (tIoU 1)
               ("A", 0.8, 0, 9),     # tIoU 0.9 with the A already matched: double detection
               ("B", 0.7, 0, 10),    # tIoU 1 with A, other label: wrong label
               ("A", 0.6, 20, 24),   # best GT is B (tIoU 0.4): confusion
               ("B", 0.5, 20, 24),   # best GT is B (tIoU 0.4), same label: localization
               ("A", 0.4, 50, 60)],  # tIoU 0 with everything: background
        "v2": [("A", 0.85, 40, 50),  # background
               ("A", 0.3, 0, 4)],    # tIoU 0.4 with A: localization
        "v3": [("A", 0.99, 0, 1)],   # no ground truth, G = 0: never selected
    }
    return parse_results({"version": "", "external_data": {}, "results": {
        v: [{"label": l, "score": s, "segment": [a, b]} for l, s, a, b in r]
        for v, r in rows.items()}})


def test_prediction_types_follow_alwassel_definitions():
    types, scored = prediction_types(_pred(), _gt(), (0.5,))
    names = [FP_CATEGORIES[t] for t in types[0]]
    assert names == ["true positive", "double detection", "wrong label", "confusion",
                     "localization", "background", "background", "localization", "background"]
    assert scored.all()
    # At tIoU 0.3 the 0.4-overlaps are "matches": v1's B[20,24] becomes a TP, A[20,24]
    # (best GT is B) becomes a wrong label, v2's A[0,4] a TP.
    types, _ = prediction_types(_pred(), _gt(), (0.3,))
    assert [FP_CATEGORIES[t] for t in types[0]][3:5] == ["wrong label", "true positive"]
    assert FP_CATEGORIES[types[0][7]] == "true positive"


def test_breakdown_hand_made_case():
    b = false_positive_breakdown(_pred(), _gt(), (0.5,), multiples=(1, 2, 3))
    # 1G: v1 keeps 2 (TP, double), v2 keeps 1 (background); v3 (G = 0) keeps none.
    np.testing.assert_allclose(b.shares[0], [1 / 3, 1 / 3, 0, 0, 0, 1 / 3])
    # 2G: v1 keeps 4 (TP, double, wrong label, confusion), v2 keeps 2 (background, loc.).
    np.testing.assert_allclose(b.shares[1], [1 / 6] * 6)
    # 3G: all 6 of v1 and both of v2: TP 1, double 1, wrong 1, loc. 2, confusion 1, bg 2.
    np.testing.assert_allclose(b.shares[2], np.array([1, 1, 1, 2, 1, 2]) / 8)
    assert b.num_selected.tolist() == [3, 6, 8]
    assert b.share("background").tolist() == pytest.approx([1 / 3, 1 / 6, 1 / 4])
    # Averaging over thresholds averages the per-threshold shares.
    two = false_positive_breakdown(_pred(), _gt(), (0.3, 0.5), multiples=(3,))
    at3 = false_positive_breakdown(_pred(), _gt(), (0.3,), multiples=(3,))
    np.testing.assert_allclose(two.shares[0], (at3.shares[0] + b.shares[2]) / 2)


def test_precision_recall_curves():
    m = evaluate_detections(_pred(), _gt(), tiou_thresholds=[0.5], keep_matches=True,
                            log_notes=False)
    recall, precision = precision_recall_curves(m.matches, "pooled")
    # Pooled ranking by score: 0.99 (v3 FP), 0.9 (v1 TP), 0.85 (v2 FP), 0.8, 0.7, ...; the
    # only TP is v1's A[0,10]; 3 ground truths in total.
    assert recall.shape == (1, 9) and recall[0, -1] == pytest.approx(1 / 3)
    assert precision[0, -1] == pytest.approx(1 / 9)
    grid, mean_prec = precision_recall_curves(m.matches, "mean", recall_points=5)
    # Class A (2 GTs): v3's FP (0.99) then v1's TP (0.9) -> precision 1/2 at recall 1/2,
    # nothing above; class B has no TP (precision 0). Mean over the 2 classes.
    np.testing.assert_allclose(grid[0], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(mean_prec[0], [0.25, 0.25, 0.25, 0, 0])
    with pytest.raises(ValueError, match="mode must be"):
        precision_recall_curves(m.matches, "median")


def _assert_png(path):
    import matplotlib.image as mpimg

    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    pixels = mpimg.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05  # not a blank canvas
    # More than a handful of distinct colours (bars, text, legend).
    assert len(np.unique(pixels[..., :3].reshape(-1, 3).round(2), axis=0)) > 8


def test_pngs_are_written_and_not_blank(tmp_path):
    det, gt = _pred(), _gt()
    m = evaluate_detections(det, gt, "thumos", keep_matches=True, log_notes=False)
    paths = [
        plot_pr_curves(m, tmp_path / "pr.png"),
        plot_pr_curves(m, tmp_path / "pr_mean.png", mode="mean"),
        plot_false_positive_profile(false_positive_breakdown(det, gt), tmp_path / "fp.png"),
        plot_timeline(gt.videos["v1"], det, tmp_path / "t" / "timeline.png", top_k=4),
    ]
    for path in paths:
        _assert_png(path)
    with pytest.raises(ValueError, match="keep_matches=True"):
        plot_pr_curves(evaluate_detections(det, gt, log_notes=False), tmp_path / "x.png")


def test_write_report_plots(tmp_path):
    det, gt = _pred(), _gt()
    m = evaluate_detections(det, gt, "anet", keep_matches=True, log_notes=False)
    written = write_report_plots(tmp_path / "report", m, det, gt)
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == ["false_positive_profile.png", "pr_curves.png", "timeline_v1.png",
                     "timeline_v2.png"]
    with pytest.raises(ValueError, match="not in the ground-truth subset"):
        write_report_plots(tmp_path / "r2", m, det, gt, videos=["v3"])
