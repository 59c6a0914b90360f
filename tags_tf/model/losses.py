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
output dict. The readings of the paper's printed equations are listed in
docs/design.md.

Eq. 5-6 and the sum of the four are here; Eq. 7-9 in :mod:`tags_tf.model.promotion`;
what they share in :mod:`tags_tf.model.loss_base`.
"""

from __future__ import annotations

from typing import Mapping

import keras
import tensorflow as tf

from tags_tf.config import BOUNDARY_REGIONS, LossConfig, TagsConfig
from tags_tf.model.loss_base import WeightedLoss, band_kernel, erode, safe_l2
from tags_tf.model.promotion import ConsistencyLoss, PredictionPromotionLoss

_LOSS = LossConfig()  # the defaults (one definition: tags_tf.config)


@keras.saving.register_keras_serializable(package="tags_tf")
class ClassificationLoss(WeightedLoss):
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
        lambda1: float = _LOSS.lambda1,
        gamma: float = _LOSS.focal_gamma,
        alpha: float = _LOSS.alpha,
        hard_negative_ratio: float = _LOSS.hard_negative_ratio,
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
class MaskLoss(WeightedLoss):
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
    ``(m - g) / T`` (docs/design.md).

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
        lambda2: float = _LOSS.lambda2,
        erosion_kernel: int = _LOSS.erosion_kernel,
        epsilon: float = _LOSS.epsilon,
        bce: float = 0.0,  # Eq. 6 as printed; the configs' loss.mask_bce adds the BCE term
        boundary: str = _LOSS.boundary,
        boundary_width: float = _LOSS.boundary_width,
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
        l2 = safe_l2(m - g) / tf.maximum(gt_len, 1.0)
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
class BackgroundMaskLoss(WeightedLoss):
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
