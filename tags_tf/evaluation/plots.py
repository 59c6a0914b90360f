"""Diagnostic plots (PNG, matplotlib Agg backend) and the false-positive breakdown.

* :func:`plot_timeline`: one video, ground truth vs its top detections.
* :func:`precision_recall_curves` / :func:`plot_pr_curves`: precision/recall per tIoU
  threshold, all classes pooled (one ranking of every prediction, recall over every
  ground truth) or the mean of the per-class interpolated curves.
* :func:`false_positive_breakdown` / :func:`plot_false_positive_profile`: the false
  positive profile of TAGS Fig. 5, with the error types of Alwassel et al., "Diagnosing
  Error in Temporal Action Detectors" (ECCV 2018).

The breakdown is plain numpy (no matplotlib); matplotlib is imported inside the plotting
functions, with the Agg backend, so importing this module stays cheap.

Long because it holds one function per plot, plus the false-positive breakdown they
draw.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from tags_tf.data.annotations import AnnotationSet, VideoAnnotation
from tags_tf.evaluation.matching import Matches, segment_iou
from tags_tf.evaluation.metrics import DetectionMetrics, evaluate_detections
from tags_tf.evaluation.detections import Detections

logger = logging.getLogger(__name__)

# Error types of Alwassel et al. (2018), Sec. 4, in stacking order.
FP_CATEGORIES = ("true positive", "double detection", "wrong label", "localization",
                 "confusion", "background")
FP_COLORS = ("#33a02c", "#b2df8a", "#1f78b4", "#fb9a99", "#e31a1c", "#a6cee3")
MIN_TIOU = 0.1  # below this tIoU with every ground truth, a false positive is "background"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# ---- false-positive profile -------------------------------------------------------------

@dataclass(frozen=True)
class FalsePositiveBreakdown:
    """Shares of each prediction type among the top-kG predictions of every video.

    Attributes (K multiples, 6 categories):
      multiples: (K,) k of "top-kG" (G = number of ground truths of the video).
      categories: FP_CATEGORIES.
      shares: (K, 6) fraction of the selected predictions in each category, averaged
        over ``tiou_thresholds`` (each row sums to 1, or is 0 with nothing selected).
      num_selected: (K,) number of predictions selected.
      tiou_thresholds: (T,) thresholds the shares are averaged over.
    """

    multiples: np.ndarray
    categories: tuple[str, ...]
    shares: np.ndarray
    num_selected: np.ndarray
    tiou_thresholds: np.ndarray

    def share(self, category: str) -> np.ndarray:
        """(K,) share of one category."""
        return self.shares[:, self.categories.index(category)]


def prediction_types(detections: Detections, ground_truth: AnnotationSet,
                     tiou_thresholds: Sequence[float] = (0.5,),
                     metrics: DetectionMetrics | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Category of every prediction at every threshold (Alwassel et al. definitions).

    A prediction is a true positive when the official matching matches it. A false
    positive is classified by the ground truth of its video with the highest tIoU, over
    all classes: tIoU >= thr -> "double detection" if that ground truth has the
    prediction's label, else "wrong label"; MIN_TIOU <= tIoU < thr -> "localization"
    (same label) or "confusion" (other label); otherwise (also without any ground truth
    in the video) "background".

    ``metrics`` (``evaluate_detections(detections, ground_truth, keep_matches=True)``)
    reuses an existing matching; its thresholds then replace ``tiou_thresholds``.

    Returns:
      types: (T, N) int index into FP_CATEGORIES, -1 for predictions whose label is not a
        ground-truth class (they are not scored).
      scored: (N,) bool, the rows with a known label.
    """
    if metrics is None or metrics.matches is None:
        metrics = evaluate_detections(detections, ground_truth, keep_matches=True,
                                      tiou_thresholds=np.asarray(tiou_thresholds, dtype=np.float64),
                                      log_notes=False)
    thr = np.asarray(metrics.tiou_thresholds, dtype=np.float64).reshape(-1)
    matches = metrics.matches
    n = len(detections)
    types = np.full((thr.size, n), -1, dtype=np.int64)
    scored = np.zeros(n, dtype=bool)
    scored[matches.order] = True
    tp = np.zeros((thr.size, n), dtype=bool)
    tp[:, matches.order] = matches.tp

    # Best tIoU of every prediction over all ground truths of its video.
    gt_video, gt_label, gt_seg = [], [], []
    for vid, ann in ground_truth.videos.items():
        for inst in ann.instances:
            gt_video.append(vid)
            gt_label.append(inst.label)
            gt_seg.append((inst.start, inst.end))
    gt_order = np.argsort(np.array(gt_video, dtype=object), kind="stable")
    sorted_vids = [gt_video[i] for i in gt_order]
    first = {}
    for pos, vid in enumerate(sorted_vids):
        first.setdefault(vid, pos)
    counts = {vid: 0 for vid in first}
    for vid in sorted_vids:
        counts[vid] += 1
    vids = detections.video_ids.tolist()
    lo = np.array([first.get(v, 0) for v in vids], dtype=np.int64)
    cnt = np.array([counts.get(v, 0) for v in vids], dtype=np.int64)
    pair_pred = np.repeat(np.arange(n), cnt)
    pair_gt = gt_order[np.repeat(lo, cnt) + np.arange(pair_pred.size)
                       - np.repeat(np.cumsum(cnt) - cnt, cnt)]
    seg = detections.segments
    gseg = np.array(gt_seg, dtype=np.float64).reshape(-1, 2)
    inter = (np.minimum(seg[pair_pred, 1], gseg[pair_gt, 1])
             - np.maximum(seg[pair_pred, 0], gseg[pair_gt, 0])).clip(0)
    union = (gseg[pair_gt, 1] - gseg[pair_gt, 0]) + (seg[pair_pred, 1] - seg[pair_pred, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(inter / union, nan=0.0)
    # Highest tIoU per prediction (first ground truth on ties, like argmax).
    best_iou = np.zeros(n)
    best_gt = np.full(n, -1, dtype=np.int64)
    if pair_pred.size:
        by = np.lexsort((np.arange(pair_pred.size), -iou, pair_pred))
        head = np.ones(by.size, dtype=bool)
        head[1:] = pair_pred[by][1:] != pair_pred[by][:-1]
        top = by[head]
        best_iou[pair_pred[top]] = iou[top]
        best_gt[pair_pred[top]] = pair_gt[top]
    labels = detections.labels
    gt_label_arr = np.array(gt_label, dtype=object)
    same = np.zeros(n, dtype=bool)
    has_gt = best_gt >= 0
    same[has_gt] = gt_label_arr[best_gt[has_gt]] == labels[has_gt]
    for t, th in enumerate(thr):
        kind = np.full(n, FP_CATEGORIES.index("background"))
        high = best_iou >= th
        mid = (best_iou >= MIN_TIOU) & ~high
        kind[high & same] = FP_CATEGORIES.index("double detection")
        kind[high & ~same] = FP_CATEGORIES.index("wrong label")
        kind[mid & same] = FP_CATEGORIES.index("localization")
        kind[mid & ~same] = FP_CATEGORIES.index("confusion")
        kind[tp[t]] = FP_CATEGORIES.index("true positive")
        types[t] = np.where(scored, kind, -1)
    return types, scored


def false_positive_breakdown(detections: Detections, ground_truth: AnnotationSet,
                             tiou_thresholds: Sequence[float] = (0.5,),
                             multiples: Iterable[int] = range(1, 11),
                             metrics: DetectionMetrics | None = None) -> FalsePositiveBreakdown:
    """False-positive profile over the top-kG predictions of every video (TAGS Fig. 5).

    For each k, every video keeps its ``k * G`` highest-scoring scored predictions
    (G = its number of ground truths; videos without ground truth contribute none), and
    the shares of the categories of :func:`prediction_types` are averaged over
    ``tiou_thresholds`` (Alwassel et al. average over the ActivityNet thresholds).
    ``metrics``: see :func:`prediction_types`.
    """
    ks = np.asarray(list(multiples), dtype=np.int64)
    types, scored = prediction_types(detections, ground_truth, tiou_thresholds, metrics)
    thr = np.asarray(metrics.tiou_thresholds if metrics is not None and metrics.matches is not None
                     else tiou_thresholds, dtype=np.float64).reshape(-1)
    # Rank of every prediction inside its video by descending score.
    vid_index = {v: i for i, v in enumerate(ground_truth.videos)}
    vid = np.array([vid_index.get(v, -1) for v in detections.video_ids.tolist()], dtype=np.int64)
    order = np.lexsort((-detections.scores, vid))
    start = np.searchsorted(vid[order], vid[order], side="left")
    rank = np.empty(len(detections), dtype=np.int64)
    rank[order] = np.arange(len(detections)) - start
    g_per_video = np.array([len(a.instances) for a in ground_truth.videos.values()], dtype=np.int64)
    g = np.where(vid >= 0, g_per_video[np.maximum(vid, 0)], 0)
    shares = np.zeros((ks.size, len(FP_CATEGORIES)))
    num = np.zeros(ks.size, dtype=np.int64)
    for i, k in enumerate(ks):
        keep = scored & (rank < k * g)
        num[i] = int(keep.sum())
        if num[i]:
            for t in range(thr.size):
                shares[i] += np.bincount(types[t, keep], minlength=len(FP_CATEGORIES)) / num[i]
            shares[i] /= thr.size
    return FalsePositiveBreakdown(ks, FP_CATEGORIES, shares, num, thr)


def plot_false_positive_profile(breakdown: FalsePositiveBreakdown, path: str | os.PathLike,
                                title: str = "False positive profile") -> str:
    """Stacked bars of the category shares (%) for top-1G ... top-KG. Returns the path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    x = np.arange(breakdown.multiples.size)
    bottom = np.zeros(x.size)
    for c, (name, color) in enumerate(zip(breakdown.categories, FP_COLORS)):
        values = 100 * breakdown.shares[:, c]
        ax.bar(x, values, 0.8, bottom=bottom, color=color, label=name, edgecolor="white",
               linewidth=0.5)
        bottom += values
    ax.set_xticks(x, [f"{k}G" for k in breakdown.multiples])
    ax.set_xlabel("top predictions per video (G = ground-truth instances of the video)")
    ax.set_ylabel("share of predictions (%)")
    ax.set_ylim(0, 100)
    thr = breakdown.tiou_thresholds
    at = f"tIoU {thr[0]:.2f}" if thr.size == 1 else f"avg over tIoU {thr[0]:.2f}-{thr[-1]:.2f}"
    ax.set_title(f"{title} ({at})")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


# ---- precision / recall -------------------------------------------------------------------

def precision_recall_curves(matches: Matches, mode: str = "pooled",
                            recall_points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Precision/recall per threshold from :class:`~tags_tf.evaluation.matching.Matches`.

    Args:
      matches: from ``evaluate_detections(..., keep_matches=True).matches``.
      mode: "pooled" ranks every prediction by score (all classes together), recall over
        all ground truths; "mean" averages the per-class interpolated precision on a
        recall grid (classes present in the ground truth).
      recall_points: grid size for "mean".
    Returns:
      recall, precision: (T, N) arrays (N = predictions for "pooled", grid for "mean").
    """
    tp = matches.tp
    num_t = tp.shape[0]
    if mode == "pooled":
        order = np.argsort(-matches.scores, kind="stable")
        tp_cum = np.cumsum(tp[:, order], axis=1).astype(np.float64)  # (T, P)
        ranks = np.arange(1, order.size + 1, dtype=np.float64)
        return tp_cum / max(int(matches.npos.sum()), 1), tp_cum / ranks
    if mode != "mean":
        raise ValueError(f"mode must be 'pooled' or 'mean', got {mode!r}")
    grid = np.linspace(0.0, 1.0, recall_points)
    total = np.zeros((num_t, grid.size))
    classes = np.flatnonzero(matches.npos > 0)
    starts = np.searchsorted(matches.pred_class, np.arange(matches.npos.size + 1))
    for c in classes:
        s, e = starts[c], starts[c + 1]
        if s == e:
            continue
        tp_cum = np.cumsum(tp[:, s:e], axis=1).astype(np.float64)
        recall = tp_cum / matches.npos[c]
        precision = tp_cum / np.arange(1, e - s + 1)
        envelope = np.flip(np.maximum.accumulate(np.flip(precision, -1), axis=-1), -1)
        for t in range(num_t):
            # Interpolated precision at r = max precision at recall >= r.
            idx = np.searchsorted(recall[t], grid, side="left")
            ok = idx < recall.shape[1]
            total[t, ok] += envelope[t, idx[ok]]
    return np.broadcast_to(grid, total.shape).copy(), total / max(classes.size, 1)


def plot_pr_curves(metrics: DetectionMetrics, path: str | os.PathLike, mode: str = "pooled") -> str:
    """One precision/recall curve per tIoU threshold. Needs ``keep_matches=True``."""
    if metrics.matches is None:
        raise ValueError("plot_pr_curves needs evaluate_detections(..., keep_matches=True)")
    recall, precision = precision_recall_curves(metrics.matches, mode)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.8))
    cmap = plt.get_cmap("viridis")
    num_t = len(metrics.tiou_thresholds)
    for t, thr in enumerate(metrics.tiou_thresholds):
        ax.plot(recall[t], precision[t], color=cmap(t / max(num_t - 1, 1)), lw=1.5,
                label=f"tIoU {thr:.2f} (mAP {100 * metrics.mAP[t]:.1f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    what = "all classes pooled" if mode == "pooled" else "mean over classes"
    ax.set_title(f"Precision-recall ({what}); average mAP {100 * metrics.average_mAP:.2f}")
    ax.grid(True, ls=":", lw=0.6)
    ax.legend(fontsize=7, loc="upper right", ncol=1 if num_t <= 6 else 2)
    return _save(fig, path)


# ---- timeline -----------------------------------------------------------------------------

def plot_timeline(video: VideoAnnotation, detections: Detections, path: str | os.PathLike,
                  top_k: int = 10) -> str:
    """Ground truth (top row) vs the ``top_k`` highest-scoring detections of one video.

    Each detection is a row, labelled with its class, score and best tIoU with a ground
    truth of the same class; colours are per class (shared with the ground truth row) and
    opacity grows with the score. The dashed line marks the video duration.
    """
    det = detections.for_video(video.video_id)
    order = np.argsort(-det.scores, kind="stable")[:top_k]
    labels = sorted({i.label for i in video.instances} | set(det.labels[order].tolist()))
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    color = {name: cmap(i % cmap.N) for i, name in enumerate(labels)}
    rows = 1 + order.size
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.32 * rows))
    for inst in video.instances:
        ax.barh(0, max(inst.end - inst.start, 1e-3), left=inst.start, height=0.7,
                color=color[inst.label], edgecolor="black", lw=0.8)
        ax.text((inst.start + inst.end) / 2, 0, inst.label[:20], ha="center", va="center",
                fontsize=7, color="white", clip_on=True)
    texts = ["ground truth"]
    for r, i in enumerate(order.tolist(), start=1):
        start, end = det.segments[i]
        label = det.labels[i]
        same = [(g.start, g.end) for g in video.instances if g.label == label]
        match = "no GT of this class"
        if same:
            iou = segment_iou([[start, end]], same)[0]
            match = f"tIoU {float(np.nan_to_num(iou).max()):.2f}"
        ax.barh(r, max(end - start, 1e-3), left=start, height=0.6, color=color[label],
                alpha=0.35 + 0.65 * float(np.clip(det.scores[i], 0, 1)))
        texts.append(f"{label[:22]}  {det.scores[i]:.2f}  {match}")
    ax.set_yticks(np.arange(rows), texts, fontsize=7)
    ax.invert_yaxis()
    ax.axhline(0.5, color="gray", lw=0.6)
    limit = video.duration or max([i.end for i in video.instances] + [1.0])
    ax.set_xlim(0, max(limit, float(det.segments[order, 1].max()) if order.size else 0))
    if video.duration:
        ax.axvline(video.duration, color="black", ls="--", lw=0.8)
    ax.set_xlabel("time (s)")
    gt_names = ", ".join(sorted({i.label for i in video.instances})) or "no action"
    ax.set_title(f"{video.video_id}: {len(video.instances)} ground truth ({gt_names}), "
                 f"top {order.size} of {len(det)} detections", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


# ---- everything for the CLI --------------------------------------------------------------

def write_report_plots(out_dir: str | os.PathLike, metrics: DetectionMetrics,
                       detections: Detections, ground_truth: AnnotationSet,
                       videos: Sequence[str] | None = None, num_videos: int = 3) -> list[str]:
    """PR curves, the false-positive profile and a few timelines into ``out_dir``.

    ``videos`` defaults to the first ``num_videos`` ground-truth videos with predictions.
    Returns the written paths.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    written = [plot_pr_curves(metrics, os.path.join(out_dir, "pr_curves.png"))]
    breakdown = false_positive_breakdown(detections, ground_truth, metrics=metrics)
    written.append(plot_false_positive_profile(breakdown,
                                               os.path.join(out_dir, "false_positive_profile.png")))
    if videos is None:
        with_preds = set(detections.video_ids.tolist())
        videos = [v for v in ground_truth.videos if v in with_preds][:num_videos]
    for vid in videos:
        if vid not in ground_truth.videos:
            raise ValueError(f"--plot-videos: video {vid!r} is not in the ground-truth subset")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in vid)
        written.append(plot_timeline(ground_truth.videos[vid], detections,
                                     os.path.join(out_dir, f"timeline_{safe}.png")))
    return written
