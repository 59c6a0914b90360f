"""The four TAGS training losses (paper Sec. 3.3, Eq. 5-9) on one temporal scale.

Every loss is a serializable ``keras.losses.Loss`` whose ``__call__`` takes the
tensors of ONE scale plus a ``(B, T)`` float ``sample_weight`` and returns a scalar
``sum(loss * w) / max(sum(w), 1)``. That normalisation keeps every loss finite (and
zero) on a video with no action and on an all-padding batch. Shapes (``K`` action
classes, class ``K`` = background, ``T`` snippets; see tags_tf/model/tags_model.py):

    ClassificationLoss()(cls_target (B,T) int, cls_logits (B,T,K+1), sample_weight=valid)
    MaskLoss()(mask_target (B,T,T), mask_logits (B,T,T), sample_weight=fg*valid)
    PredictionPromotionLoss(thresholds)(mask_target, mask_logits, sample_weight=fg*valid)
    ConsistencyLoss()(cls_logits, mask_logits, cons_cls, cons_mask, sample_weight=valid)

``call()`` returns the unreduced per-snippet loss ``(B, T)`` (per-video ``(B,)`` for
the consistency loss); ``reduction=None`` makes ``__call__`` return it multiplied by
the weight. ``total_loss`` / ``TagsLoss`` sum the four over all scales of a model
output dict. The readings of the paper's printed equations are listed in README
"Design notes".

Long because it holds the paper's four losses (Eq. 5-9) and Eq. 7's contrast; each is
one class that tests pin to hand-computed values.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import tensorflow as tf

from tags_tf.config import LossConfig, TagsConfig
from tags_tf import ops
from tags_tf.ops import above

_REDUCTIONS = ("mean_with_sample_weight", None, "none")


def masked_mean(values: tf.Tensor, weight: tf.Tensor | None) -> tf.Tensor:
    """``sum(values * weight) / max(sum(weight), 1)``; ``weight=None`` means all ones."""
    values = tf.convert_to_tensor(values, tf.float32)
    if weight is None:
        weight = tf.ones_like(values)
    weight = tf.cast(weight, values.dtype)
    total = tf.reduce_sum(values * weight)
    return total / tf.maximum(tf.reduce_sum(weight), 1.0)


def _safe_l2(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """L2 norm over ``axis`` whose gradient is 0 (not NaN) where the norm is 0."""
    sq = tf.reduce_sum(tf.square(x), axis=axis)
    positive = sq > 0.0
    safe_sq = tf.where(positive, sq, tf.ones_like(sq))
    return tf.where(positive, tf.sqrt(safe_sq), tf.zeros_like(sq))


def erode(x: tf.Tensor, kernel: int) -> tf.Tensor:
    """Morphological erosion Phi along the last axis: a sliding minimum of width ``kernel``.

    ``x`` is ``(..., T)``. Implemented as ``-max_pool1d(-x)`` with stride 1 and 'SAME'
    padding; TF's max pool ignores the padded cells, so the window is clipped at the
    video borders and a mask touching a border is not eroded there.
    """
    if kernel <= 1:
        return x
    shape = tf.shape(x)
    flat = tf.reshape(x, [-1, shape[-1], 1])  # (..., T) -> (N, T, 1) for pool1d (NWC)
    pooled = tf.nn.max_pool1d(-flat, ksize=kernel, strides=1, padding="SAME")
    return tf.reshape(-pooled, shape)  # (N, T, 1) -> (..., T)


BOUNDARY_REGIONS = ("interior", "band")


def band_kernel(width: float, num_snippets: int | None) -> int:
    """Erosion kernel ``2 d + 1`` of a boundary band ``d = max(1, round(width * T))`` cells wide."""
    if num_snippets is None:
        raise ValueError("the boundary band needs a static number of snippets T")
    return 2 * max(1, int(round(width * num_snippets))) + 1


class _WeightedLoss(keras.losses.Loss):
    """Base: masked-mean reduction over a ``(B, T)`` (or ``(B,)``) sample weight."""

    def __init__(self, name=None, reduction="mean_with_sample_weight", dtype=None, **kwargs):
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r} "
                "(the loss is always normalised by max(sum(sample_weight), 1))"
            )
        super().__init__(name=name, reduction=reduction, dtype=dtype, **kwargs)

    def _reduce(self, per: tf.Tensor, sample_weight) -> tf.Tensor:
        if self.reduction in (None, "none"):
            if sample_weight is None:
                return per
            return per * tf.cast(sample_weight, per.dtype)
        return masked_mean(per, sample_weight)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self.name):
            per = self.call(y_true, y_pred, sample_weight=sample_weight)
            return self._reduce(per, sample_weight)


@keras.saving.register_keras_serializable(package="tags_tf")
class ClassificationLoss(_WeightedLoss):
    """Eq. 5: ``lambda1 * focal + (1 - lambda1) * class-balanced logistic regression``.

    Per snippet with target ``y`` in ``[0, K]`` and logits ``z`` (K+1):
    ``FL = -(1 - p_y)^gamma log p_y`` with ``p = softmax(z)``, and with ``r = sigmoid(z)``
    ``LR = -log r_y - alpha / |N| * sum_{k in N} log(1 - r_k)`` where ``N`` are the
    ``max(1, round(hard_negative_ratio * K))`` classes ``k != y`` with the largest
    ``r_k`` (picked on stop-gradient logits).

    ``y_true``: ``(B, T)`` int class ids; ``y_pred``: ``(B, T, K+1)`` logits;
    ``sample_weight``: ``(B, T)`` (``valid``). ``call`` returns ``(B, T)``.
    """

    def __init__(
        self,
        lambda1: float = 0.4,
        gamma: float = 2.0,
        alpha: float = 10.0,
        hard_negative_ratio: float = 0.1,
        name: str = "cls_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.lambda1 = float(lambda1)
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.hard_negative_ratio = float(hard_negative_ratio)

    def num_hard_negatives(self, num_classes: int) -> int:
        """|N| for ``num_classes`` (K) action classes (at most K: the classes other than y)."""
        return min(num_classes, max(1, int(round(self.hard_negative_ratio * num_classes))))

    def call(self, y_true, y_pred, sample_weight=None):
        logits = tf.cast(y_pred, tf.float32)  # (B, T, K+1)
        num_out = logits.shape[-1]
        if num_out is None or num_out < 2:
            raise ValueError(f"ClassificationLoss: cls_logits must be (B, T, K+1) with K >= 1, got {logits.shape}")
        num_classes = num_out - 1
        target = tf.clip_by_value(tf.cast(y_true, tf.int32), 0, num_classes)  # padding may hold junk
        onehot = tf.one_hot(target, num_out, dtype=tf.float32)  # (B, T, K+1)

        # Focal term from log-softmax (same value as keras categorical_focal_crossentropy
        # with alpha=1, minus its probability clipping).
        log_p_y = tf.reduce_sum(onehot * tf.nn.log_softmax(logits, axis=-1), axis=-1)  # (B, T)
        one_minus_p = tf.maximum(-tf.math.expm1(log_p_y), 1e-12)  # 1 - p_y, floor keeps grad finite
        focal = -tf.pow(one_minus_p, self.gamma) * log_p_y

        # Class-balanced logistic regression with hard negatives.
        log_r_y = tf.reduce_sum(onehot * tf.math.log_sigmoid(logits), axis=-1)  # (B, T)
        n_neg = self.num_hard_negatives(num_classes)
        lowest = tf.fill(tf.shape(logits), logits.dtype.min)
        candidates = tf.where(onehot > 0, lowest, tf.stop_gradient(logits))  # exclude y
        neg_idx = tf.math.top_k(candidates, k=n_neg).indices  # (B, T, |N|); sigmoid is monotone
        neg_logits = tf.gather(logits, neg_idx, batch_dims=2)  # (B, T, |N|)
        log_one_minus_r = tf.math.log_sigmoid(-neg_logits)  # log(1 - sigmoid(z))
        logistic = -log_r_y - self.alpha / n_neg * tf.reduce_sum(log_one_minus_r, axis=-1)

        return self.lambda1 * focal + (1.0 - self.lambda1) * logistic

    def get_config(self):
        config = super().get_config()
        config.update(
            lambda1=self.lambda1,
            gamma=self.gamma,
            alpha=self.alpha,
            hard_negative_ratio=self.hard_negative_ratio,
        )
        return config


@keras.saving.register_keras_serializable(package="tags_tf")
class MaskLoss(_WeightedLoss):
    """Eq. 6: boundary-IoU (or normalised L2 without overlap) + ``lambda2`` * dice.

    Per snippet row with ``m = sigmoid(logits)`` and target ``g`` (both ``(T,)``) and
    erosion ``Phi`` (kernel ``erosion_kernel``):
    ``I = sum(Phi(m) Phi(g))``, ``U = sum(Phi(m) + Phi(g) - Phi(m) Phi(g))``; if the
    eroded hard prediction ``Phi(m >= 0.5)`` overlaps ``Phi(g)`` then
    ``L_b = 1 - I / (U + eps)``, else ``L_b = ||m - g||_2 / max(sum(g), 1)``.
    Dice (V-Net): ``L_d = 1 - 2 sum(m g) / (sum(m^2) + sum(g^2) + eps)``.
    ``L_m = L_b + lambda2 * L_d + bce * mean_k BCE(m_k, g_k)``.

    The BCE term (``bce``, default 0 here; ``loss.mask_bce`` = 1 in the configs) is not
    in the paper's Eq. 6; the authors' code trains its mask branch with a BCE plus dice.
    Eq. 6 acts on ``sigmoid(logits)`` only, so a logit that saturates on the wrong side
    gets no gradient and stays wrong: on the demo at lr 3e-3, 20 % of the foreground
    mask entries at scale 2 ended wrong with |logit| > 10. The BCE's gradient there is
    ``(m - g) / T`` (README "Design notes").

    ``Phi`` is the region the "boundary IoU" is taken on. ``boundary="interior"`` (the
    literal reading of the printed Eq. 6): the eroded mask, kernel ``erosion_kernel``
    whatever T is. ``boundary="band"`` (Boundary IoU, Cheng et al. 2021, which the paper
    cites): the band ``x - erode(x)`` of the cells within ``d = max(1, round(
    boundary_width * T))`` of a boundary, inside the mask; a border of the video is not
    a boundary (the erosion window is clipped there).

    ``y_true``: ``(B, T, T)`` mask targets; ``y_pred``: ``(B, T, T)`` logits (axis 1 =
    predicting snippet, axis 2 = masked position); ``sample_weight``: ``(B, T)``
    (``fg * valid``: background snippets have no instance mask). ``call`` -> ``(B, T)``.
    """

    def __init__(
        self,
        lambda2: float = 0.4,
        erosion_kernel: int = 7,
        epsilon: float = 3.354626279025119e-04,
        bce: float = 0.0,
        boundary: str = "interior",
        boundary_width: float = 0.05,
        name: str = "mask_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if boundary not in BOUNDARY_REGIONS:
            raise ValueError(f"MaskLoss: boundary must be one of {BOUNDARY_REGIONS}, got {boundary!r}")
        self.bce = float(bce)
        self.lambda2 = float(lambda2)
        self.erosion_kernel = int(erosion_kernel)
        self.epsilon = float(epsilon)
        self.boundary = boundary
        self.boundary_width = float(boundary_width)

    def region(self, x: tf.Tensor) -> tf.Tensor:
        """The region of ``x`` (..., T) whose IoU Eq. 6 takes (see the class docstring)."""
        if self.boundary == "interior":
            return erode(x, self.erosion_kernel)
        return x - erode(x, band_kernel(self.boundary_width, x.shape[-1]))

    def call(self, y_true, y_pred, sample_weight=None):
        m = tf.sigmoid(tf.cast(y_pred, tf.float32))  # (B, T, T)
        g = tf.cast(y_true, tf.float32)  # (B, T, T)
        eps = self.epsilon

        phi_m = self.region(m)
        phi_g = self.region(g)
        inter = tf.reduce_sum(phi_m * phi_g, axis=-1)  # (B, T)
        union = tf.reduce_sum(phi_m + phi_g - phi_m * phi_g, axis=-1)
        biou = 1.0 - inter / (union + eps)

        hard = tf.stop_gradient(tf.cast(m >= 0.5, tf.float32))
        overlap = tf.reduce_any(self.region(hard) * phi_g > 0.0, axis=-1)  # (B, T)
        gt_len = tf.reduce_sum(g, axis=-1)
        l2 = _safe_l2(m - g) / tf.maximum(gt_len, 1.0)
        boundary = tf.where(overlap, biou, l2)

        dice = 1.0 - 2.0 * tf.reduce_sum(m * g, axis=-1) / (
            tf.reduce_sum(tf.square(m), axis=-1) + tf.reduce_sum(tf.square(g), axis=-1) + eps
        )
        loss = boundary + self.lambda2 * dice
        if self.bce:
            xent = tf.nn.sigmoid_cross_entropy_with_logits(labels=g, logits=tf.cast(y_pred, tf.float32))
            loss += self.bce * tf.reduce_mean(xent, axis=-1)  # (B, T, T) -> (B, T)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(lambda2=self.lambda2, erosion_kernel=self.erosion_kernel, epsilon=self.epsilon, bce=self.bce,
                      boundary=self.boundary, boundary_width=self.boundary_width)
        return config


@keras.saving.register_keras_serializable(package="tags_tf")
class BackgroundMaskLoss(_WeightedLoss):
    """Background rows: their mask target is all zero, ``mean_k BCE(m_k, 0) = mean_k
    softplus(z_k)`` per row (not in the paper, which trains foreground rows only).

    Without it the rows of background snippets are never trained, yet a background
    snippet that the classifier ranks high is decoded like any other, from an arbitrary
    mask. Eq. 6 itself has no gradient on an empty target except through its L2
    fallback (IoU and dice are then constant), so the BCE is used.

    ``y_pred``: ``(B, T, T)`` logits; ``sample_weight``: ``(B, T)`` (``(1 - fg) * valid``);
    ``y_true`` is ignored (pass the mask target or None). ``call`` -> ``(B, T)``.
    """

    def __init__(self, name: str = "background_mask_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred, sample_weight=None):
        return tf.reduce_mean(tf.nn.softplus(tf.cast(y_pred, tf.float32)), axis=-1)  # (B, T, T) -> (B, T)


def binarisation_contrast(m, thresholds: Sequence[float] | tf.Tensor, delta: float = 0.25) -> tf.Tensor:
    """Eq. 7 outer-inner-contrast score ``R(pi[j])`` of every binarisation of ``m``.

    Args:
      m: ``(..., T)`` mask probabilities in [0, 1].
      thresholds: ``(J,)`` thresholds; position ``r`` is foreground when ``m[r] > theta``
        (``tags_tf.ops.above``, as the decoder).
      delta: outer margin ratio; a run of length ``l`` looks ``ceil(delta * l)`` cells out.

    Returns:
      ``(..., J)`` float32: the mean over all maximal runs (foreground and background)
      of ``inside - outside``, with ``u = m`` on foreground runs and ``1 - m`` on
      background runs; outer windows are clipped to the video and averaged over the
      cells that remain (``outside = 0`` when none remain).

    Vectorised over runs, not cells: ``tf.where`` lists every run start of every (row,
    threshold) in row-major order, so a run ends where the next start of the same
    (row, threshold) begins; window sums come from per-row prefix sums read by flat
    gathers, and a segment sum averages the runs. Only one pass over the
    ``(N, J, T)`` binarisation remains (5x faster at ActivityNet size than listing the
    R first starts of every row with top_k). No gradient is meant to flow here.
    """
    m = tf.cast(tf.convert_to_tensor(m), tf.float32)
    th = tf.reshape(tf.cast(tf.convert_to_tensor(thresholds), tf.float32), [-1])  # (J,)
    lead_shape = tf.shape(m)[:-1]
    t_len = tf.shape(m)[-1]
    num_th = tf.shape(th)[0]
    rows = tf.reshape(m, [-1, t_len])  # (..., T) -> (N, T)

    binar = above(rows[:, None, :], th[None, :, None])  # (N, J, T)
    change = tf.not_equal(binar[..., 1:], binar[..., :-1])  # (N, J, T-1)
    is_start = tf.concat([tf.ones_like(binar[..., :1]), change], axis=-1)  # (N, J, T)
    start_at = tf.cast(tf.where(is_start), tf.int32)  # (G, 3): (n, j, s) of every run, row-major
    group = start_at[:, 0] * num_th + start_at[:, 1]  # (G,) ascending; every group has a run
    s = start_at[:, 2]
    next_group = tf.concat([group, [-1]], axis=0)[1:]  # (G,); -1 after the last run
    next_start = tf.concat([s, [t_len]], axis=0)[1:]
    e = tf.where(tf.equal(next_group, group), next_start, t_len) - 1  # inclusive end
    n_of = start_at[:, 0]
    z = above(tf.gather(tf.reshape(rows, [-1]), n_of * t_len + s), tf.gather(th, start_at[:, 1]))  # run value

    prefix = tf.concat([tf.zeros_like(rows[:, :1]), tf.cumsum(rows, axis=-1)], axis=-1)  # (N, T+1)
    flat_prefix = tf.reshape(prefix, [-1])
    base = n_of * (t_len + 1)  # (G,) row offsets into the flat prefix sums

    def span_u(a, b):  # sum of u over [a, b): m on foreground runs, 1 - m on background runs
        sum_m = tf.gather(flat_prefix, b + base) - tf.gather(flat_prefix, a + base)
        return tf.where(z, sum_m, tf.cast(b - a, tf.float32) - sum_m)

    score = ops.outer_inner_contrast(span_u, s, e, t_len, delta)  # (G,)
    num_groups = tf.shape(rows)[0] * num_th
    total = tf.math.unsorted_segment_sum(score, group, num_groups)  # (N*J,)
    runs = tf.math.unsorted_segment_sum(tf.ones_like(score), group, num_groups)  # (N*J,), >= 1
    r = tf.reshape(total / tf.maximum(runs, 1.0), tf.stack([-1, num_th]))  # (N, J)
    return tf.reshape(r, tf.concat([lead_shape, [num_th]], axis=0))  # (N, J) -> (..., J)


@keras.saving.register_keras_serializable(package="tags_tf")
class PredictionPromotionLoss(_WeightedLoss):
    """Eq. 7-8: ``L_pp = (1 - R(pi[j*]))^beta * ||m - g||_2`` per foreground snippet.

    ``R`` (``binarisation_contrast``) scores the binarisation of ``m = sigmoid(logits)``
    at each threshold; ``j* = argmax_j R``. ``R`` is a selection score and weight, so it
    is computed under ``stop_gradient``, and only on rows with ``sample_weight > 0``
    (gathered first; the rest get ``R = 0`` and are weighted out).

    ``y_true``: ``(B, T, T)``; ``y_pred``: ``(B, T, T)`` logits; ``sample_weight``:
    ``(B, T)`` (``fg * valid``). ``call`` -> ``(B, T)``, never negative.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = tuple(round(0.1 + 0.05 * i, 2) for i in range(17)),
        delta: float = 0.25,
        beta: float = 2.0,
        name: str = "pp_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds:
            raise ValueError("PredictionPromotionLoss: thresholds must not be empty")
        self.delta = float(delta)
        self.beta = float(beta)

    def best_contrast(self, m: tf.Tensor, sample_weight=None) -> tf.Tensor:
        """``R(pi[j*])`` per row of ``m`` (B, T, T) -> (B, T); 0 where the weight is 0."""
        m = tf.stop_gradient(m)
        shape = tf.shape(m)
        rows = tf.reshape(m, [-1, shape[-1]])  # (B, T, T) -> (B*T, T)
        if sample_weight is None:
            best = tf.reduce_max(binarisation_contrast(rows, self.thresholds, self.delta), axis=-1)
            return tf.reshape(best, shape[:-1])  # (B*T,) -> (B, T)
        w = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])  # (B, T) -> (B*T,)
        idx = tf.where(w > 0)  # (N, 1), N may be 0
        picked = tf.gather_nd(rows, idx)  # (N, T)
        best = tf.reduce_max(binarisation_contrast(picked, self.thresholds, self.delta), axis=-1)  # (N,)
        full = tf.scatter_nd(idx, best, tf.shape(w, out_type=tf.int64))  # (B*T,)
        return tf.reshape(full, shape[:-1])  # (B*T,) -> (B, T)

    def call(self, y_true, y_pred, sample_weight=None):
        m = tf.sigmoid(tf.cast(y_pred, tf.float32))  # (B, T, T)
        g = tf.cast(y_true, tf.float32)
        best = self.best_contrast(m, sample_weight)  # (B, T), no gradient
        factor = tf.pow(tf.maximum(1.0 - best, 0.0), self.beta)
        return factor * _safe_l2(m - g)

    def get_config(self):
        config = super().get_config()
        config.update(thresholds=list(self.thresholds), delta=self.delta, beta=self.beta)
        return config


def _masked_top_k(x: tf.Tensor, valid: tf.Tensor, k: int) -> tf.Tensor:
    """Top-``k`` values (descending) of ``x`` (B, T) over valid cells; padded picks -> 0."""
    lowest = tf.fill(tf.shape(x), x.dtype.min)
    top = tf.math.top_k(tf.where(valid, x, lowest), k=k)
    picked_valid = tf.gather(valid, top.indices, batch_dims=1)  # (B, k)
    return tf.where(picked_valid, top.values, tf.zeros_like(top.values))


@keras.saving.register_keras_serializable(package="tags_tf")
class ConsistencyLoss(_WeightedLoss):
    """Eq. 9: ``L_fc = 1 - cosine(F_clf, F_mask)`` per video.

    ``P = softmax(cls_logits)``, ``M = sigmoid(mask_logits)``,
    ``F_clf = topk_T(max_{k<K}(stopgrad(P > theta_p) * E_p)[..., k])`` and
    ``F_mask = topk_T(sigmoid(max_pos(E_m * stopgrad(M > theta_m))))``: the ``k =
    min(topk, T)`` largest values over snippets, sorted descending. Gradients flow
    into ``E_p`` and ``E_m`` only. Padded snippets (``sample_weight == 0``) are kept
    out of the top-k and of the mask max; a video counts if it has a valid snippet.

    Call as ``loss(cls_logits (B,T,K+1), mask_logits (B,T,T), cons_cls (B,T,K+1),
    cons_mask (B,T,T), sample_weight=valid (B,T))``; ``call`` returns ``(B,)``. It has
    no ``y_true``, so it is not meant for ``model.compile(loss=...)``.
    """

    def __init__(
        self,
        theta_p: float = 0.3,
        theta_m: float = 0.5,
        topk: int = 40,
        name: str = "fc_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.theta_p = float(theta_p)
        self.theta_m = float(theta_m)
        self.topk = int(topk)
        if self.topk < 1:
            raise ValueError(f"ConsistencyLoss: topk must be >= 1, got {topk}")

    def __call__(self, cls_logits, mask_logits, cons_cls, cons_mask, sample_weight=None):
        with tf.name_scope(self.name):
            per = self.call(cls_logits, mask_logits, cons_cls, cons_mask, sample_weight=sample_weight)
            video_w = None
            if sample_weight is not None:
                video_w = tf.cast(tf.reduce_any(tf.cast(sample_weight, tf.float32) > 0, axis=-1), tf.float32)
            return self._reduce(per, video_w)

    def call(self, cls_logits, mask_logits, cons_cls, cons_mask, sample_weight=None):
        cls_logits = tf.cast(cls_logits, tf.float32)  # (B, T, K+1)
        e_p = tf.cast(cons_cls, tf.float32)  # (B, T, K+1)
        e_m = tf.cast(cons_mask, tf.float32)  # (B, T, T)
        mask_logits = tf.cast(mask_logits, tf.float32)  # (B, T, T)
        if sample_weight is None:
            valid = tf.ones(tf.shape(cls_logits)[:2], tf.bool)
        else:
            valid = tf.cast(sample_weight, tf.float32) > 0  # (B, T)
        t_len = cls_logits.shape[1]
        k = min(self.topk, t_len) if t_len is not None else tf.minimum(self.topk, tf.shape(cls_logits)[1])

        p_bin = tf.stop_gradient(tf.cast(above(tf.nn.softmax(cls_logits, axis=-1), self.theta_p), tf.float32))
        f_clf = tf.reduce_max((p_bin * e_p)[..., :-1], axis=-1)  # (B, T), foreground classes only
        m_bin = tf.stop_gradient(tf.cast(above(tf.sigmoid(mask_logits), self.theta_m), tf.float32))
        m_bin = m_bin * tf.cast(valid, tf.float32)[:, None, :]  # drop padded positions
        f_mask = tf.sigmoid(tf.reduce_max(e_m * m_bin, axis=-1))  # (B, T): 1-D max pool over positions

        f_clf = tf.math.l2_normalize(_masked_top_k(f_clf, valid, k), axis=-1)  # (B, k)
        f_mask = tf.math.l2_normalize(_masked_top_k(f_mask, valid, k), axis=-1)
        return 1.0 - tf.reduce_sum(f_clf * f_mask, axis=-1)  # (B,)

    def get_config(self):
        config = super().get_config()
        config.update(theta_p=self.theta_p, theta_m=self.theta_m, topk=self.topk)
        return config


class TagsLoss:
    """The overall objective ``L = sum_s (w_c L_c + w_m L_m + w_pp L_pp + w_fc L_fc)``.

    Built from ``cfg.loss`` and ``cfg.postprocess.mask_thresholds``. With
    ``mask_weight == 0`` the promotion loss is skipped too, so the "w/o mask branch"
    ablation puts no loss on the mask logits (the consistency loss only trains E_p and
    E_m). A loss whose weight is 0 is not computed and reported as 0.
    """

    def __init__(self, cfg: TagsConfig):
        self.scales = tuple(cfg.model.scales)
        self.weights: LossConfig = cfg.loss
        lc = cfg.loss
        self.cls = ClassificationLoss(lc.lambda1, lc.focal_gamma, lc.alpha, lc.hard_negative_ratio)
        self.mask = MaskLoss(lc.lambda2, lc.erosion_kernel, lc.epsilon, lc.mask_bce, lc.boundary, lc.boundary_width)
        self.background = BackgroundMaskLoss()
        self.pp = PredictionPromotionLoss(cfg.postprocess.mask_thresholds, lc.delta, lc.beta)
        self.fc = ConsistencyLoss(lc.theta_p, lc.theta_m, lc.topk)

    def __call__(self, outputs: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        w = self.weights
        use_mask = w.mask_weight != 0
        use_pp = use_mask and w.pp_weight != 0
        sums = {key: tf.constant(0.0) for key in ("cls", "mask", "pp", "fc")}
        for s in self.scales:
            try:
                cls_logits = outputs[f"cls_logits_s{s}"]
                mask_logits = outputs[f"mask_logits_s{s}"]
                valid = tf.cast(targets[f"valid_s{s}"], tf.float32)  # (B, T)
                fg_valid = tf.cast(targets[f"fg_s{s}"], tf.float32) * valid
                if w.cls_weight != 0:
                    sums["cls"] += self.cls(targets[f"cls_target_s{s}"], cls_logits, sample_weight=valid)
                if use_mask:
                    sums["mask"] += self.mask(targets[f"mask_target_s{s}"], mask_logits, sample_weight=fg_valid)
                    if w.mask_background:
                        bg_valid = valid - fg_valid
                        sums["mask"] += w.mask_background * self.background(None, mask_logits, sample_weight=bg_valid)
                if use_pp:
                    sums["pp"] += self.pp(targets[f"mask_target_s{s}"], mask_logits, sample_weight=fg_valid)
                if w.fc_weight != 0:
                    sums["fc"] += self.fc(
                        cls_logits, mask_logits, outputs[f"cons_cls_s{s}"], outputs[f"cons_mask_s{s}"], valid
                    )
            except KeyError as e:
                raise KeyError(
                    f"total_loss: missing {e.args[0]!r} for scale {s}; expected model outputs "
                    "cls_logits_s{s}/mask_logits_s{s}/cons_cls_s{s}/cons_mask_s{s} and targets "
                    "cls_target_s{s}/mask_target_s{s}/fg_s{s}/valid_s{s}"
                ) from None
        sums["total"] = (
            w.cls_weight * sums["cls"]
            + (w.mask_weight * sums["mask"] if use_mask else 0.0)
            + (w.pp_weight * sums["pp"] if use_pp else 0.0)
            + w.fc_weight * sums["fc"]
        )
        return sums


def total_loss(outputs: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor], cfg: TagsConfig) -> dict[str, tf.Tensor]:
    """``{"cls", "mask", "pp", "fc", "total"}`` scalars, each summed over ``cfg.model.scales``."""
    return TagsLoss(cfg)(outputs, targets)
