"""A per-snippet detection baseline, outside the neural model (numpy only).

What a temporal action detector should beat: a linear snippet classifier whose
actionness curve is thresholded into segments.

Training
    Multinomial logistic regression over ``K + 1`` classes per snippet (class ``K`` is
    background). A snippet's target is the class of the ground-truth segment that
    contains its centre (``start <= centre <= end``); when several do, the shortest one
    wins; background when none does. Features are standardised with the training
    mean / std. The objective is the mean (unweighted: no class balancing, so the
    probabilities stay calibrated to the snippet frequencies) cross-entropy plus
    ``l2 / 2 * ||weights||^2`` (the bias is not penalised). It is minimised by at most
    ``steps`` iterations of full-batch Nesterov accelerated gradient with adaptive
    restart and step ``1 / L``, ``L`` a bound on the Lipschitz constant of the gradient
    (from the ``(D + 1) x (D + 1)`` feature second moments): deterministic, no tuning.
    Cost: two ``(n, D) x (D, K + 1)`` products per step; 600 videos x 100 snippets,
    D = 128, K = 2 take about 25 ms a step on two cores (D = 32: about 10 ms).

Detection, per video with probabilities ``P`` (T, K + 1)
    * actionness ``a = 1 - P[:, K]``, smoothed by a centred moving average of
      ``max(1, round(smooth_fraction * T))`` snippets, truncated at the video edges (the
      mean is over the snippets inside the video, so the ends are not pulled to 0);
    * video class scores ``sum_t a_t P[t, :K] / sum_t a_t`` (the actionness-weighted mean
      of the class probabilities; the plain mean when ``a`` is all 0); the
      ``top_classes`` best are kept;
    * candidates: the runs of ``a_smooth > theta`` for every ``theta`` in
      ``thresholds``, de-duplicated; run ``[s, e]`` (inclusive snippet indices) is the
      segment ``[s * dur / T, (e + 1) * dur / T]`` seconds with score
      ``mean(a_smooth[s:e + 1]) * class_score`` (``score="mean"``) or, with
      ``score="contrast"``, that mean minus the mean of the ``ceil(0.25 * length)`` cells
      on each side (Eq. 7's outer-inner contrast, floored at 0), once per kept class;
    * sorted by score, at most ``max_detections`` per video.

The output is the detections format of :func:`tags_tf.evaluation.inference.detect_dataset`, so
:meth:`tags_tf.evaluation.evaluator.Evaluator.evaluate` scores it.

Long because it is the whole baseline in one place (its reader of shard videos, its
trainer and its detector), so that nothing of the model's code path is shared with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Training stops once every entry of the gradient (of the mean loss) is below this.
GRADIENT_TOL = 1e-4


@dataclass
class SnippetBaseline:
    """Fitted parameters of the snippet classifier.

    Attributes:
      mean, std: (D,) training feature statistics (``std`` is 1 for a constant feature).
      weights: (D, K + 1) on standardised features; column ``K`` is background.
      bias: (K + 1,).
      num_classes: K, the number of action classes.
    """

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    num_classes: int

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of snippets: (T, D) -> (T, K + 1)."""
        x = (np.asarray(features, np.float32) - self.mean) / self.std
        return softmax(x @ self.weights + self.bias)


# ---------------------------------------------------------------------------- targets


def snippet_targets(num_snippets: int, duration: float, segments: np.ndarray, labels: np.ndarray,
                    num_classes: int) -> np.ndarray:
    """Per-snippet class targets of one video.

    Args:
      num_snippets: T; snippet i covers ``[i * dur / T, (i + 1) * dur / T]``.
      duration: dur, seconds.
      segments: (N, 2) ground truth in seconds.
      labels: (N,) class ids in [0, K).
      num_classes: K.

    Returns:
      (T,) int64: the label of the shortest segment containing the snippet centre
      (bounds inclusive), or ``K`` (background) when none does.
    """
    centres = (np.arange(num_snippets, dtype=np.float64) + 0.5) * (duration / max(num_snippets, 1))
    segments = np.asarray(segments, np.float64).reshape(-1, 2)
    labels = np.asarray(labels, np.int64).reshape(-1)
    targets = np.full((num_snippets,), num_classes, np.int64)
    if len(segments) == 0 or num_snippets == 0:
        return targets
    inside = (segments[None, :, 0] <= centres[:, None]) & (centres[:, None] <= segments[None, :, 1])  # (T, N)
    lengths = np.where(inside, (segments[:, 1] - segments[:, 0])[None, :], np.inf)  # (T, N)
    hit = inside.any(axis=1)
    targets[hit] = labels[np.argmin(lengths[hit], axis=1)]  # first shortest on ties
    return targets


# ---------------------------------------------------------------------------- training


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax: (n, C) -> (n, C)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _stack_training_data(videos: Iterable[Mapping], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """All snippets of all videos: features (n, D) float32 and targets (n,) int64."""
    xs, ys = [], []
    for v in videos:
        feats = np.asarray(v["features"], np.float32)
        xs.append(feats)
        ys.append(snippet_targets(len(feats), float(v["duration"]), v["segments"], v["labels"], num_classes))
    if not xs:
        raise ValueError("fit_snippet_baseline: no training videos")
    return np.concatenate(xs, axis=0), np.concatenate(ys, axis=0)


def _lipschitz(x: np.ndarray, l2: float) -> float:
    """Upper bound of the Lipschitz constant of the loss gradient.

    The softmax cross-entropy Hessian is bounded by ``0.5 * X~^T X~ / n`` (x) I, with
    ``X~`` the features plus a column of ones; hence ``0.5 * lambda_max + l2``.
    """
    n, d = x.shape
    xt = np.concatenate([x, np.ones((n, 1), x.dtype)], axis=1).astype(np.float64)  # (n, D) -> (n, D + 1)
    lam = float(np.linalg.eigvalsh(xt.T @ xt / max(n, 1))[-1])
    return 0.5 * lam + l2


def _objective(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, l2: float) -> float:
    """Mean cross-entropy of targets y (n,) + ``0.5 * l2 * ||w||^2``."""
    p = softmax(x @ w + b)[np.arange(len(y)), y]  # (n, C) -> (n,)
    return -float(np.mean(np.log(np.maximum(p, 1e-12)))) + 0.5 * l2 * float(np.sum(w * w))


def _gradients(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray,
               l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`_objective` w.r.t. w (D, C) and b (C,)."""
    r = softmax(x @ w + b)  # (n, C); becomes (p - onehot(y)) / n in place
    r[np.arange(len(y)), y] -= 1.0
    r /= len(y)
    return x.T @ r + l2 * w, r.sum(axis=0)


def _minimise(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, l2: float,
              steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Nesterov accelerated gradient (step ``1 / L``) with gradient-based adaptive restart.

    The momentum restarts when the last update went uphill (``<g, w_new - w> > 0``,
    O'Donoghue & Candes 2015), which removes the oscillations of plain Nesterov on a
    strongly convex objective. Stops after ``steps`` gradients or once every gradient
    entry is below ``GRADIENT_TOL``.

    Returns:
      weights (D, C), bias (C,), and the number of gradient evaluations used.
    """
    step = 1.0 / _lipschitz(x, l2)
    w_prev, b_prev = w, b
    k = 0  # iterations since the last restart
    for taken in range(1, steps + 1):
        momentum = k / (k + 3.0)
        w_look, b_look = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        gw, gb = _gradients(x, y, w_look, b_look, l2)
        if max(float(np.abs(gw).max()), float(np.abs(gb).max())) < GRADIENT_TOL:
            return w_look, b_look, taken
        w_new, b_new = (w_look - step * gw).astype(np.float32), (b_look - step * gb).astype(np.float32)
        uphill = float(np.sum(gw * (w_new - w)) + np.sum(gb * (b_new - b))) > 0.0
        k = 0 if uphill else k + 1
        w_prev, b_prev, w, b = w, b, w_new, b_new
    return w, b, steps


def fit_snippet_baseline(videos: Iterable[Mapping], num_classes: int, l2: float = 1e-3,
                         steps: int = 300, seed: int = 0) -> SnippetBaseline:
    """Fits the snippet classifier (see the module docstring).

    Args:
      videos: mappings with ``features`` (T, D), ``duration`` seconds, ``segments``
        (N, 2) seconds and ``labels`` (N,) in [0, K).
      num_classes: K (background is class K).
      l2: weight of ``0.5 * ||weights||^2``.
      steps: Nesterov gradient iterations (0 leaves the initial weights).
      seed: seeds the small Gaussian initial weights (std 0.01). The objective is
        strictly convex, so the seed changes the result only through finite ``steps``.

    Returns:
      The fitted :class:`SnippetBaseline`.
    """
    x, y = _stack_training_data(videos, num_classes)
    mean = x.mean(axis=0).astype(np.float32)
    std = x.std(axis=0).astype(np.float32)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    x = (x - mean) / std
    c = num_classes + 1
    rng = np.random.default_rng(seed)
    w = (0.01 * rng.standard_normal((x.shape[1], c))).astype(np.float32)
    b = np.zeros((c,), np.float32)
    w, b, taken = _minimise(x, y, w, b, l2, steps)
    counts = np.bincount(y, minlength=c)
    log.info("snippet baseline: %d snippets, %d dims, background fraction %.3f, loss %.4f after %d steps",
             len(x), x.shape[1], counts[num_classes] / max(len(y), 1), _objective(x, y, w, b, l2), taken)
    return SnippetBaseline(mean=mean, std=std, weights=w, bias=b, num_classes=num_classes)


# ---------------------------------------------------------------------------- detection


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average, truncated at the edges: (T,) -> (T,).

    Snippet i averages ``values[i - (window - 1) // 2 : i + window // 2 + 1]`` clipped to
    the video.
    """
    values = np.asarray(values, np.float64)
    t = len(values)
    if window <= 1 or t == 0:
        return values.copy()
    csum = np.concatenate([[0.0], np.cumsum(values)])  # (T + 1,)
    idx = np.arange(t)
    lo = np.maximum(idx - (window - 1) // 2, 0)
    hi = np.minimum(idx + window // 2 + 1, t)
    return (csum[hi] - csum[lo]) / (hi - lo)


def smoothing_window(num_snippets: int, smooth_fraction: float) -> int:
    """``max(1, round(smooth_fraction * T))`` snippets."""
    return max(1, int(round(smooth_fraction * num_snippets)))


def runs_above(values: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Maximal runs ``[s, e]`` (inclusive indices) where ``values > threshold``."""
    mask = np.concatenate([[False], np.asarray(values) > threshold, [False]])  # (T + 2,)
    edges = np.flatnonzero(np.diff(mask.astype(np.int8)))  # starts, then ends + 1, alternating
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def candidate_runs(actionness: np.ndarray, thresholds: Sequence[float]) -> list[tuple[int, int]]:
    """Runs of ``actionness > theta`` over all thresholds, de-duplicated and sorted."""
    return sorted({run for theta in thresholds for run in runs_above(actionness, theta)})


def video_class_scores(probs: np.ndarray) -> np.ndarray:
    """Actionness-weighted mean of the class probabilities: (T, K + 1) -> (K,)."""
    action = probs[:, :-1]  # (T, K)
    a = 1.0 - probs[:, -1]  # (T,)
    total = float(a.sum())
    if total <= 0.0:
        return action.mean(axis=0)
    return (a[:, None] * action).sum(axis=0) / total


def run_scores(curve: np.ndarray, runs: Sequence[tuple[int, int]], score: str, delta: float) -> np.ndarray:
    """Each run's mean of ``curve`` ("mean"), or Eq. 7's outer-inner contrast floored at 0
    ("contrast", :func:`tags_tf.ops.outer_inner_contrast`, the decoder's)."""
    if not runs:
        return np.zeros((0,), np.float64)
    import tensorflow as tf  # deferred: fitting and reading the baseline stay TensorFlow-free

    from tags_tf import ops

    prefix = tf.constant(np.concatenate([[0.0], np.cumsum(curve, dtype=np.float64)]))
    start, end = (tf.constant(np.asarray(x, np.int32)) for x in zip(*runs))

    def span(a, b):
        return tf.gather(prefix, b) - tf.gather(prefix, a)

    if score == "contrast":
        return np.maximum(ops.outer_inner_contrast(span, start, end, len(curve), delta).numpy(), 0.0)
    return (span(start, end + 1) / tf.cast(end - start + 1, tf.float64)).numpy()


def detect_from_probabilities(probs: np.ndarray, duration: float, smooth_fraction: float = 0.04,
                              thresholds: Sequence[float] = DEFAULT_THRESHOLDS, top_classes: int = 2,
                              max_detections: int = 100, score: str = "mean",
                              contrast_delta: float = 0.25) -> dict[str, np.ndarray]:
    """Detections of one video from its snippet probabilities.

    ``score``: "mean" of the smoothed actionness over the run, or "contrast": that mean
    minus the mean over ``ceil(contrast_delta * length)`` cells on each side (clipped to
    the video), floored at 0 -- the outer-inner contrast TAGS' decoder can use too; the
    mean ranks a run's high-threshold core fragments above the whole run.

    Args:
      probs: (T, K + 1) snippet class probabilities, background last.
      duration: seconds.

    Returns:
      ``{"segments" (n, 2) float64 seconds, "scores" (n,) float64, "classes" (n,) int64}``,
      by descending score (ties keep run order, then class rank), n <= max_detections.
    """
    probs = np.asarray(probs, np.float64)
    t, k = probs.shape[0], probs.shape[1] - 1
    a_smooth = smooth(1.0 - probs[:, k], smoothing_window(t, smooth_fraction))
    class_scores = video_class_scores(probs) if t else np.zeros((k,))
    classes = np.argsort(-class_scores, kind="stable")[: max(0, min(top_classes, k))]
    runs = candidate_runs(a_smooth, thresholds)
    step = duration / max(t, 1)
    segs, scores, labels = [], [], []
    for (s, e), run_score in zip(runs, run_scores(a_smooth, runs, score, contrast_delta)):
        for c in classes:
            segs.append((s * step, (e + 1) * step))
            scores.append(run_score * float(class_scores[c]))
            labels.append(int(c))
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:max_detections]
    return {
        "segments": np.asarray(segs, np.float64).reshape(-1, 2)[order],
        "scores": np.asarray(scores, np.float64)[order],
        "classes": np.asarray(labels, np.int64)[order],
    }


def detect_snippet_baseline(model: SnippetBaseline, videos: Iterable[Mapping], smooth_fraction: float = 0.04,
                            thresholds: Sequence[float] = DEFAULT_THRESHOLDS, top_classes: int = 2,
                            max_detections: int = 100, score: str = "mean") -> dict:
    """Runs the baseline over videos (mappings with ``video_id``, ``features``, ``duration``).
    ``score``: see :func:`detect_from_probabilities`.

    Returns:
      ``{video_id: {"segments" (n, 2) float64 s, "scores" (n,) float64, "classes" (n,) int64}}``,
      the format of :func:`tags_tf.evaluation.inference.detect_dataset`.
    """
    detections = {}
    for v in videos:
        probs = model.probabilities(v["features"])
        detections[str(v["video_id"])] = detect_from_probabilities(
            probs, float(v["duration"]), smooth_fraction, thresholds, top_classes, max_detections, score)
    return detections


# ---------------------------------------------------------------------------- shards


def read_shard_videos(shard_dir: str, subset: str) -> list[dict]:
    """Reads the ``{shard_dir}/{subset}-*.tfrecord[.gz]`` shards into video mappings.

    Returns:
      ``[{"video_id": str, "features": (T, D) float32, "duration": float,
      "segments": (N, 2) float64 s, "labels": (N,) int64}]`` in shard order.

    Raises:
      tags_tf.data.input.InputError when no shard matches.
    """
    import tensorflow as tf  # lazy: the rest of the module is numpy only

    from tags_tf.data import features as F
    from tags_tf.data.input import list_files, subset_pattern

    videos = []
    for path in list_files(subset_pattern(shard_dir, subset)):
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
            ex = F.example_to_numpy(record)
            videos.append({
                "video_id": ex[F.VIDEO_ID],
                "features": np.asarray(ex[F.FEATURES], np.float32),
                "duration": float(ex[F.DURATION]),
                "segments": np.asarray(ex["segments"], np.float64).reshape(-1, 2),
                "labels": np.asarray(ex["labels"], np.int64),
            })
    log.info("read %d %s videos from %s", len(videos), subset, shard_dir)
    return videos
