"""Tests for tags_tf/model/losses.py: hand-computed golden values, edge cases, tracing."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tags_tf.config import get_config
from tags_tf.model.loss_base import erode
from tags_tf.model.losses import ClassificationLoss, MaskLoss, TagsLoss, total_loss
from tags_tf.model.promotion import ConsistencyLoss, PredictionPromotionLoss, binarisation_contrast

LN4 = math.log(4.0)  # sigmoid(ln 4) = 0.8, sigmoid(-ln 4) = 0.2


def _softplus(x):
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------- classification (Eq. 5)


def test_classification_golden_k2():
    # K = 2 (class 2 = background), |N| = max(1, round(0.1 * 2)) = 1.
    # Snippet A: z = [0, 0, 0], y = 0. p_y = 1/3, FL = (2/3)^2 * ln 3 = 0.488272.
    #   r = 0.5 everywhere: LR = -ln 0.5 + 10 * (-ln 0.5) = 11 ln 2 = 7.624619.
    #   L_A = 0.4 * 0.488272 + 0.6 * 7.624619 = 4.770080.
    # Snippet B: z = [1, -1, 2], y = 2. p_y = e^2 / (e + e^-1 + e^2) = 7.389056 / 10.475217
    #   = 0.705385; FL = (0.294615)^2 * 0.348996 = 0.030292.
    #   LR = softplus(-2) + 10 * softplus(1) (hardest negative is class 0, z = 1)
    #      = 0.126928 + 13.132617 = 13.259545; L_B = 0.012117 + 7.955727 = 7.967844.
    # Mean over the two valid snippets (the third is padding): 6.368962.
    logits = tf.constant([[[0.0, 0.0, 0.0], [1.0, -1.0, 2.0], [50.0, -50.0, 0.0]]])
    target = tf.constant([[0, 2, 1]])
    valid = tf.constant([[1.0, 1.0, 0.0]])
    loss = ClassificationLoss()
    per = ClassificationLoss(reduction=None)(target, logits, sample_weight=valid)
    np.testing.assert_allclose(per.numpy(), [[4.770080, 7.967844, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(loss(target, logits, sample_weight=valid).numpy(), 6.368962, rtol=1e-5)


def test_classification_golden_k3_two_hard_negatives():
    # K = 3, ratio 0.67 -> |N| = round(2.01) = 2. z = [0, 3, -2, 1], y = 1.
    # Negatives {0, 2, 3} with z {0, -2, 1}: the two hardest are class 3 (z=1) and class 0 (z=0).
    # LR = softplus(-3) + 10/2 * (softplus(1) + softplus(0)) = 0.048587 + 5 * 2.006409 = 10.080632.
    # p_y = e^3 / (1 + e^3 + e^-2 + e) = 20.085537 / 23.939154 = 0.839025,
    # FL = (0.160975)^2 * 0.175504 = 0.004548. L = 0.4 * 0.004548 + 0.6 * 10.080632 = 6.050198.
    logits = tf.constant([[[0.0, 3.0, -2.0, 1.0]]])
    loss = ClassificationLoss(hard_negative_ratio=0.67)
    assert loss.num_hard_negatives(3) == 2
    expected = 0.4 * (1 - 0.839025) ** 2 * -math.log(0.839025) + 0.6 * (
        _softplus(-3) + 5 * (_softplus(1) + _softplus(0))
    )
    np.testing.assert_allclose(expected, 6.050198, rtol=1e-5)
    np.testing.assert_allclose(loss(tf.constant([[1]]), logits).numpy(), 6.050198, rtol=1e-5)


def test_classification_focal_part_matches_keras():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 4)).astype(np.float32) * 3
    target = rng.integers(0, 4, size=(2, 5))
    ours = ClassificationLoss(lambda1=1.0, reduction=None)(target, logits)
    ref = keras.losses.categorical_focal_crossentropy(
        tf.one_hot(target, 4), logits, alpha=1.0, gamma=2.0, from_logits=True
    )
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4, atol=1e-6)


def test_classification_gradient_only_to_target_and_hard_negatives():
    # Logistic part only (lambda1 = 0), K = 4 with ratio 0.5 -> |N| = 2.
    logits = tf.Variable([[[0.5, 2.0, -1.0, 1.0, -3.0]]])
    with tf.GradientTape() as tape:
        loss = ClassificationLoss(lambda1=0.0, hard_negative_ratio=0.5)(tf.constant([[0]]), logits)
    grad = tape.gradient(loss, logits).numpy()[0, 0]
    # y = 0; hardest negatives: classes 1 (z=2) and 3 (z=1); classes 2 and 4 get no gradient.
    assert grad[0] < 0 and grad[1] > 0 and grad[3] > 0
    assert grad[2] == 0.0 and grad[4] == 0.0


# ---------------------------------------------------------------- mask (Eq. 6)


def test_erosion_clips_window_at_borders():
    x = tf.constant([[1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    # Kernel 3: min over [i-1, i+1] clipped to the video; the border cells stay 1.
    np.testing.assert_array_equal(erode(x, 3).numpy(), [[1, 1, 0, 0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(erode(tf.ones([2, 3, 10]), 7).numpy(), np.ones([2, 3, 10]))


def _mask_rows():
    # T = 8, g = [0,1,1,1,1,0,0,0] (c = 4) for both foreground rows.
    g = [0, 1, 1, 1, 1, 0, 0, 0]
    over = [-LN4, LN4, LN4, LN4, LN4, -LN4, -LN4, -LN4]  # m = [.2,.8,.8,.8,.8,.2,.2,.2]
    apart = [LN4, LN4, -LN4, -LN4, -LN4, -LN4, LN4, LN4]  # m = [.8,.8,.2,.2,.2,.2,.8,.8]
    zeros = [0.0] * 8
    logits = tf.constant([[over, apart] + [zeros] * 6])  # (1, 8, 8)
    target = tf.constant([[g, g] + [[0] * 8] * 6], tf.float32)
    fg = tf.constant([[1.0, 1.0] + [0.0] * 6])
    return target, logits, fg


def test_mask_loss_golden_overlap_and_fallback():
    # Erosion kernel 3, eps = 1e-6, lambda2 = 0.4.
    # Row 0 (overlap): Phi(g) = [0,0,1,1,0,0,0,0], Phi(m) = [.2,.2,.8,.8,.2,.2,.2,.2];
    #   hard m = g, so the eroded masks overlap. I = .8 + .8 = 1.6,
    #   U = sum Phi(m) + sum Phi(g) - I = 2.8 + 2 - 1.6 = 3.2 -> L_b = 1 - 1.6/3.2 = 0.5.
    #   Dice: sum(mg) = 3.2, sum m^2 = 4*.64 + 4*.04 = 2.72, sum g^2 = 4
    #   -> L_d = 1 - 6.4/6.72 = 0.047619. L_m = 0.5 + 0.4 * 0.047619 = 0.519048.
    # Row 1 (fallback): hard m = [1,1,0,0,0,0,1,1], Phi = [1,0,0,0,0,0,0,1] misses Phi(g)
    #   -> L_b = ||m - g|| / c = sqrt(6 * .64 + 2 * .04) / 4 = sqrt(3.92) / 4 = 0.494975.
    #   Dice: sum(mg) = .8 + .2 + .2 + .2 = 1.4 -> L_d = 1 - 2.8/6.72 = 0.583333.
    #   L_m = 0.494975 + 0.4 * 0.583333 = 0.728308.
    # Background rows have weight 0. Mean = (0.519048 + 0.728308) / 2 = 0.623678.
    target, logits, fg = _mask_rows()
    loss = MaskLoss(erosion_kernel=3, epsilon=1e-6)
    per = MaskLoss(erosion_kernel=3, epsilon=1e-6, reduction=None)(target, logits, sample_weight=fg)
    np.testing.assert_allclose(per.numpy()[0, :2], [0.519048, 0.728308], rtol=1e-5)
    np.testing.assert_array_equal(per.numpy()[0, 2:], 0.0)
    np.testing.assert_allclose(loss(target, logits, sample_weight=fg).numpy(), 0.623678, rtol=1e-5)


def test_mask_loss_bce_term_golden():
    # bce = 0.5 adds 0.5 * mean_k BCE(m_k, g_k) to each row of the golden case above.
    # Row 0: every m_k is on the right side at 0.8 -> BCE = -ln .8 = 0.223144 everywhere.
    # Row 1: 6 entries wrong at 0.8 (-ln .2 = 1.609438), 2 right (0.223144)
    #   -> mean = (6 * 1.609438 + 2 * 0.223144) / 8 = 1.262864.
    target, logits, fg = _mask_rows()
    per = MaskLoss(erosion_kernel=3, epsilon=1e-6, bce=0.5, reduction=None)(target, logits, sample_weight=fg)
    np.testing.assert_allclose(
        per.numpy()[0, :2], [0.519048 + 0.5 * 0.223144, 0.728308 + 0.5 * 1.262864], rtol=1e-5
    )
    np.testing.assert_array_equal(per.numpy()[0, 2:], 0.0)


def test_mask_loss_bce_term_keeps_gradient_on_saturated_wrong_entries():
    # Eq. 6 works on sigmoid(m): a logit saturated on the wrong side gets no gradient and
    # stays wrong (seen in training at lr 3e-3). The BCE term's gradient is (m - g) / T.
    g = np.zeros((1, 1, 10), np.float32)
    g[0, 0, 2:8] = 1
    start = np.where(g > 0, 20.0, -20.0).astype(np.float32)
    start[0, 0, 7] = -20.0  # saturated, wrong
    for bce, expected in ((0.0, 0.0), (1.0, -1.0 / 10)):
        logits = tf.Variable(start)
        with tf.GradientTape() as tape:
            v = MaskLoss(erosion_kernel=3, bce=bce)(g, logits)
        grad = tape.gradient(v, logits).numpy()[0, 0, 7]
        np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_mask_loss_short_instance_falls_back_to_l2():
    # A 3-snippet instance vanishes under a 7-wide erosion: normalised L2 is used.
    g = np.zeros((1, 1, 12), np.float32)
    g[0, 0, 5:8] = 1
    logits = np.where(g > 0, LN4, -LN4).astype(np.float32)
    # ||m - g|| = sqrt(12 * .04) = 0.69282; / c = 3 -> 0.23094.
    # Dice: 2 * 2.4 / (3 * .64 + 9 * .04 + 3) = 4.8 / 5.28 -> L_d = 0.090909.
    per = MaskLoss(epsilon=1e-6, reduction=None)(g, logits)
    np.testing.assert_allclose(per.numpy(), [[0.23094 + 0.4 * 0.090909]], rtol=1e-4)


def test_dice_and_mask_loss_vanish_on_a_perfect_mask():
    g = np.zeros((1, 2, 16), np.float32)
    g[0, :, 3:12] = 1
    logits = np.where(g > 0, 30.0, -30.0).astype(np.float32)
    dice_only = MaskLoss(lambda2=1.0)(g, logits) - MaskLoss(lambda2=0.0)(g, logits)
    assert abs(float(dice_only)) < 1e-4  # V-Net dice with its factor 2: minimum 0, not 0.5
    assert 0.0 <= float(MaskLoss()(g, logits)) < 1e-3


# ---------------------------------------------------------------- promotion (Eq. 7-8)


def _contrast_reference(m, thresholds, delta):
    """Straight loop transcription of Eq. 7 (numpy, float64)."""
    m = np.asarray(m, np.float64)
    out = np.zeros(m.shape[:-1] + (len(thresholds),))
    for idx in np.ndindex(m.shape[:-1]):
        row = m[idx]
        t_len = len(row)
        for j, th in enumerate(thresholds):
            b = row > np.float32(th)  # tags_tf.ops.above
            runs, start = [], 0
            for r in range(1, t_len + 1):
                if r == t_len or b[r] != b[start]:
                    runs.append((start, r - 1, b[start]))
                    start = r
            scores = []
            for s, e, z in runs:
                u = row if z else 1.0 - row
                n = math.ceil(delta * (e - s + 1))
                inside = u[s : e + 1].mean()
                outer = [u[r] for r in range(s - n, s) if r >= 0] + [u[r] for r in range(e + 1, e + n + 1) if r < t_len]
                scores.append(inside - (np.mean(outer) if outer else 0.0))
            out[idx + (j,)] = np.mean(scores)
    return out


def test_outer_inner_contrast_golden_t6():
    # m = [.1,.6,.9,.9,.4,.1], delta = .25.
    # theta .5: runs bg[0,0] fg[1,3] bg[4,5], each looks ceil(.25 l) = 1 cell out.
    #   bg[0,0]: inside 1-.1 = .9, outside (right only) 1-.6 = .4 -> .5
    #   fg[1,3]: inside (.6+.9+.9)/3 = .8, outside (.1+.4)/2 = .25 -> .55
    #   bg[4,5]: inside (.6+.9)/2 = .75, outside (left only) 1-.9 = .1 -> .65
    #   R = 1.7/3 = 0.566667
    # theta .8: runs bg[0,1] fg[2,3] bg[4,5]:
    #   .65 - .1 = .55;  .9 - (.6+.4)/2 = .4;  .75 - .1 = .65  -> R = 1.6/3 = 0.533333
    m = tf.constant([0.1, 0.6, 0.9, 0.9, 0.4, 0.1])
    r = binarisation_contrast(m, [0.5, 0.8], 0.25)
    np.testing.assert_allclose(r.numpy(), [1.7 / 3, 1.6 / 3], rtol=1e-5)


def test_promotion_loss_golden_t6():
    # j* = theta .5 (R* = 0.566667); g = [0,1,1,1,0,0]:
    # ||m - g|| = sqrt(.01+.16+.01+.01+.16+.01) = 0.6. L_pp = (1 - 0.566667)^2 * 0.6 = 0.112667.
    m = np.array([0.1, 0.6, 0.9, 0.9, 0.4, 0.1], np.float32)
    logits = np.log(m / (1 - m))
    rows = np.stack([logits] + [np.zeros(6, np.float32)] * 5)[None]  # (1, 6, 6), rows 1.. background
    target = np.zeros((1, 6, 6), np.float32)
    target[0, 0] = [0, 1, 1, 1, 0, 0]
    fg = np.array([[1, 0, 0, 0, 0, 0]], np.float32)
    loss = PredictionPromotionLoss(thresholds=(0.5, 0.8), delta=0.25, beta=2.0)
    np.testing.assert_allclose(loss(target, rows, sample_weight=fg).numpy(), 0.112667, rtol=1e-4)


@pytest.mark.parametrize("t_len,delta", [(1, 0.25), (7, 0.25), (33, 0.25), (20, 0.1), (15, 0.6)])
def test_outer_inner_contrast_matches_loop_reference(t_len, delta):
    rng = np.random.default_rng(t_len)
    thresholds = get_config("anet").postprocess.mask_thresholds
    # Smooth-ish random masks so that runs of many lengths appear.
    m = rng.uniform(size=(2, 3, t_len)).astype(np.float32)
    m[1] = np.sort(m[1], axis=-1)
    got = binarisation_contrast(m, thresholds, delta).numpy()
    assert got.shape == (2, 3, len(thresholds))
    np.testing.assert_allclose(got, _contrast_reference(m, thresholds, delta), atol=1e-5)


def test_promotion_loss_nonnegative_and_compaction_matches_full():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 16, 16)).astype(np.float32) * 4
    target = (rng.uniform(size=(2, 16, 16)) > 0.5).astype(np.float32)
    weight = (rng.uniform(size=(2, 16)) > 0.5).astype(np.float32)
    loss = PredictionPromotionLoss(reduction=None)
    per = loss(target, logits, sample_weight=weight).numpy()
    assert (per >= 0).all()
    full = loss(target, logits).numpy()  # no weight: R on every row
    np.testing.assert_allclose(per, full * weight, rtol=1e-6)
    m = tf.sigmoid(logits)
    best = loss.best_contrast(m).numpy()
    assert (best <= 1 + 1e-6).all() and (best >= -1 - 1e-6).all()


def test_promotion_loss_has_gradient_only_through_the_l2_term():
    logits = tf.Variable(np.random.default_rng(1).normal(size=(1, 8, 8)).astype(np.float32))
    target = np.zeros((1, 8, 8), np.float32)
    target[0, :4, :4] = 1
    fg = np.array([[1, 1, 1, 1, 0, 0, 0, 0]], np.float32)
    loss = PredictionPromotionLoss()
    with tf.GradientTape() as tape:
        value = loss(target, logits, sample_weight=fg)
    grad = tape.gradient(value, logits).numpy()
    best = loss.best_contrast(tf.sigmoid(logits), fg).numpy()
    m = tf.sigmoid(logits).numpy()
    # d/dlogit of (1-R)^2 ||m-g|| / 4 with R constant.
    norm = np.linalg.norm(m - target, axis=-1, keepdims=True)
    expected = ((1 - best) ** 2)[..., None] * (m - target) / norm * m * (1 - m) * fg[..., None] / 4
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- consistency (Eq. 9)


def _consistency_inputs():
    # B = 1, T = 3, K = 2. P rows: [.5,.1,.4], [.2,.7,.1], [.1,.1,.8] (logits = log P).
    p = np.array([[[0.5, 0.1, 0.4], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]], np.float32)
    e_p = np.array([[[2, 5, 1], [3, 4, 0], [1, 1, 6]]], np.float32)
    m_bin = np.array([[[1, 1, 0], [0, 1, 1], [0, 0, 0]]], np.float32)
    e_m = np.array([[[0.5, -1, 3], [2, 1, 0], [4, 4, 4]]], np.float32)
    return np.log(p), np.where(m_bin > 0, 2.0, -2.0).astype(np.float32), e_p, e_m


def test_consistency_golden():
    # P_bin (> .3): [1,0,1], [0,1,0], [0,0,1]. (P_bin * E_p)[:, :K]: [2,0], [0,4], [0,0]
    #   -> max over K: [2, 4, 0] -> top-2: F_clf = [4, 2].
    # E_m * M_bin rows: [.5,-1,0], [0,1,0], [0,0,0] -> max: [.5, 1, 0]
    #   -> sigmoid: [.622459, .731059, .5] -> top-2: F_mask = [.731059, .622459].
    # cos = (4*.731059 + 2*.622459) / (sqrt(20) * sqrt(.534447 + .387455))
    #     = 4.169154 / (4.472136 * 0.960157) = 0.970936 -> L_fc = 0.029064.
    cls_logits, mask_logits, e_p, e_m = _consistency_inputs()
    loss = ConsistencyLoss(topk=2)
    np.testing.assert_allclose(loss(cls_logits, mask_logits, e_p, e_m).numpy(), 0.029064, rtol=1e-4)
    # Gradients reach E_p and E_m only.
    tensors = [tf.Variable(x) for x in _consistency_inputs()]
    with tf.GradientTape() as tape:
        value = loss(*tensors)
    grads = tape.gradient(value, tensors)
    assert grads[0] is None and grads[1] is None
    assert np.abs(grads[2].numpy()).sum() > 0 and np.abs(grads[3].numpy()).sum() > 0


def test_consistency_ignores_padded_snippets():
    cls_logits, mask_logits, e_p, e_m = _consistency_inputs()
    # Append two padded snippets with huge features: the loss must not change.
    pad = lambda x, v, axes: np.pad(x, axes, constant_values=v)  # noqa: E731
    cls2 = pad(cls_logits, 0.0, ((0, 0), (0, 2), (0, 0)))
    e_p2 = pad(e_p, 100.0, ((0, 0), (0, 2), (0, 0)))
    mask2 = pad(mask_logits, 5.0, ((0, 0), (0, 2), (0, 2)))
    e_m2 = pad(e_m, 100.0, ((0, 0), (0, 2), (0, 2)))
    valid = np.array([[1, 1, 1, 0, 0]], np.float32)
    got = ConsistencyLoss(topk=2)(cls2, mask2, e_p2, e_m2, sample_weight=valid)
    np.testing.assert_allclose(got.numpy(), 0.029064, rtol=1e-4)


# ---------------------------------------------------------------- edge cases


def _random_scale(rng, b=2, t=8, k=3):
    return {
        "cls_logits": tf.Variable(rng.normal(size=(b, t, k + 1)).astype(np.float32)),
        "mask_logits": tf.Variable(rng.normal(size=(b, t, t)).astype(np.float32)),
        "cons_cls": tf.Variable(rng.normal(size=(b, t, k + 1)).astype(np.float32)),
        "cons_mask": tf.Variable(rng.normal(size=(b, t, t)).astype(np.float32)),
    }


def _all_losses(out, cls_target, mask_target, fg, valid):
    return [
        ClassificationLoss()(cls_target, out["cls_logits"], sample_weight=valid),
        MaskLoss()(mask_target, out["mask_logits"], sample_weight=fg * valid),
        PredictionPromotionLoss()(mask_target, out["mask_logits"], sample_weight=fg * valid),
        ConsistencyLoss(topk=4)(out["cls_logits"], out["mask_logits"], out["cons_cls"], out["cons_mask"], valid),
    ]


@pytest.mark.parametrize("case", ["no_action", "all_padding"])
def test_losses_finite_on_empty_video_and_padding(case):
    rng = np.random.default_rng(0)
    out = _random_scale(rng)
    b, t, k = 2, 8, 3
    cls_target = np.full((b, t), k, np.int32)  # everything background
    mask_target = np.zeros((b, t, t), np.float32)
    fg = np.zeros((b, t), np.float32)
    valid = np.ones((b, t), np.float32) if case == "no_action" else np.zeros((b, t), np.float32)
    with tf.GradientTape() as tape:
        values = _all_losses(out, cls_target, mask_target, fg, valid)
    for v in values:
        assert v.shape == () and np.isfinite(v.numpy())
    assert float(values[1]) == 0.0 and float(values[2]) == 0.0  # no foreground -> no mask loss
    if case == "all_padding":
        assert all(float(v) == 0.0 for v in values)
    else:
        assert float(values[0]) > 0.0  # background snippets still train the classifier
    grads = tape.gradient(tf.add_n(values), list(out.values()))
    for g in grads:
        assert g is None or np.isfinite(g.numpy()).all()


def test_mask_losses_finite_gradient_on_saturated_perfect_predictions():
    # m == g exactly (sigmoid saturates to 0/1): the L2 norm is 0, its gradient must not be NaN.
    g = np.zeros((1, 4, 10), np.float32)
    g[0, :2, 2:6] = 1
    logits = tf.Variable(np.where(g > 0, 200.0, -200.0).astype(np.float32))
    fg = np.array([[1, 1, 0, 0]], np.float32)
    with tf.GradientTape() as tape:
        v = MaskLoss(erosion_kernel=3)(g, logits, fg) + PredictionPromotionLoss()(g, logits, fg)
    assert np.isfinite(v.numpy())
    assert np.isfinite(tape.gradient(v, logits).numpy()).all()


@pytest.mark.parametrize("jit", [False, True])
def test_total_loss_traces_in_tf_function(jit):
    cfg = get_config("demo", {"model.base_snippets": 4, "model.scales": (1, 2)})
    rng = np.random.default_rng(0)
    k = cfg.model.num_classes
    outputs, targets = {}, {}
    for s in cfg.model.scales:
        t = cfg.model.snippets(s)
        scale = _random_scale(rng, t=t, k=k)
        outputs.update({f"{name}_s{s}": v for name, v in scale.items()})
        fg = np.zeros((2, t), np.float32)
        fg[0, 1 : t // 2 + 1] = 1
        mask = np.zeros((2, t, t), np.float32)
        mask[0, 1 : t // 2 + 1, 1 : t // 2 + 1] = 1
        targets.update(
            {
                f"cls_target_s{s}": np.where(fg > 0, 1, k).astype(np.int32),
                f"mask_target_s{s}": mask,
                f"fg_s{s}": fg,
                f"valid_s{s}": np.ones((2, t), np.float32),
            }
        )
    eager = total_loss(outputs, targets, cfg)
    traced = tf.function(lambda o, tg: total_loss(o, tg, cfg), jit_compile=jit)(outputs, targets)
    assert set(eager) == {"cls", "mask", "pp", "fc", "total"}
    for key in eager:
        np.testing.assert_allclose(traced[key].numpy(), eager[key].numpy(), rtol=1e-4, atol=1e-6)
    # Per-scale sums and the weighted total.
    per_scale = sum(
        float(ClassificationLoss(hard_negative_ratio=0.1)(targets[f"cls_target_s{s}"], outputs[f"cls_logits_s{s}"]))
        for s in cfg.model.scales
    )
    np.testing.assert_allclose(eager["cls"].numpy(), per_scale, rtol=1e-5)
    total = sum(float(eager[key]) for key in ("cls", "mask", "pp", "fc"))  # all weights 1
    np.testing.assert_allclose(eager["total"].numpy(), total, rtol=1e-5)
    assert float(eager["mask"]) > 0 and float(eager["pp"]) > 0


def test_total_loss_without_mask_branch_trains_no_mask():
    cfg = get_config("demo", {"model.base_snippets": 4, "model.scales": (1,), "loss.mask_weight": 0.0})
    rng = np.random.default_rng(1)
    out = {f"{k}_s1": v for k, v in _random_scale(rng, t=4, k=cfg.model.num_classes).items()}
    targets = {
        "cls_target_s1": np.array([[0, 0, 4, 4]] * 2, np.int32),
        "mask_target_s1": np.tile(np.array([1, 1, 0, 0], np.float32), (2, 4, 1)),
        "fg_s1": np.array([[1, 1, 0, 0]] * 2, np.float32),
        "valid_s1": np.ones((2, 4), np.float32),
    }
    with tf.GradientTape() as tape:
        losses = TagsLoss(cfg)(out, targets)
    assert float(losses["mask"]) == 0.0 and float(losses["pp"]) == 0.0
    grad = tape.gradient(losses["total"], out["mask_logits_s1"])
    assert grad is None or not np.any(grad.numpy())


def test_total_loss_names_missing_key():
    cfg = get_config("demo", {"model.base_snippets": 4, "model.scales": (1,)})
    with pytest.raises(KeyError, match="cls_logits_s1"):
        total_loss({}, {}, cfg)


@pytest.mark.parametrize(
    "loss",
    [
        ClassificationLoss(lambda1=0.3, gamma=1.5, alpha=5.0, hard_negative_ratio=0.2),
        MaskLoss(lambda2=0.2, erosion_kernel=5, epsilon=1e-5, bce=0.7),
        MaskLoss(boundary="band", boundary_width=0.1, bce=1.0),
        PredictionPromotionLoss(thresholds=(0.3, 0.6), delta=0.2, beta=3.0),
        ConsistencyLoss(theta_p=0.2, theta_m=0.6, topk=7, name="fc"),
    ],
)
def test_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


def test_bad_reduction_is_a_clear_error():
    with pytest.raises(ValueError, match="reduction"):
        MaskLoss(reduction="sum")


# ------------------------------------------------- boundary band and background rows


def test_band_kernel_is_relative_to_t():
    from tags_tf.model.loss_base import band_kernel

    # d = max(1, round(width * T)), kernel 2 d + 1.
    assert [band_kernel(0.05, t) for t in (8, 32, 64, 100, 200)] == [3, 5, 7, 11, 21]
    with pytest.raises(ValueError, match="static"):
        band_kernel(0.05, None)


def test_mask_loss_band_golden_overlap_and_fallback():
    # boundary="band", width 0.125 at T = 8 -> d = 1, erosion kernel 3; eps 1e-6.
    # g = [0,1,1,1,1,0,0,0]: erode(g) = [0,0,1,1,0,0,0,0] -> band(g) = [0,1,0,0,1,0,0,0].
    # Row 0: m = .8 on g, .2 elsewhere: erode(m) = [.2,.2,.8,.8,.2,.2,.2,.2] ->
    #   band(m) = [0,.6,0,0,.6,0,0,0]; hard m = g, bands overlap. I = 1.2,
    #   U = 1.2 + 2 - 1.2 = 2 -> L_b = 0.4. Dice as the interior golden: 0.047619.
    #   L_m = 0.4 + 0.4 * 0.047619 = 0.419048.
    # Row 1: m = .8 at 0 and 7, .2 elsewhere: band(hard) = [1,0,0,0,0,0,0,1] misses band(g)
    #   -> L2: sqrt(6 * .64 + 2 * .04) / 4 = 0.494975; dice 1 - 1.6 / (1.52 + 4) = 0.710145.
    #   L_m = 0.494975 + 0.4 * 0.710145 = 0.779033.
    g = [0, 1, 1, 1, 1, 0, 0, 0]
    row0 = [LN4 if v else -LN4 for v in g]
    row1 = [LN4] + [-LN4] * 6 + [LN4]
    target = tf.constant([[g, g]], tf.float32)  # (1, 2, 8): both rows predict instance g
    logits = tf.constant([[row0, row1]], tf.float32)
    loss = MaskLoss(epsilon=1e-6, boundary="band", boundary_width=0.125, reduction=None)
    np.testing.assert_allclose(loss(target, logits).numpy()[0], [0.419048, 0.779033], rtol=1e-5)


def test_mask_loss_band_ignores_the_video_border():
    # An instance touching the start of the video has one boundary, not two: a perfect
    # mask of [0, 3) has band [0,0,1,0,...]; band IoU = 1 (loss only from the sigmoid's softness).
    g = [1, 1, 1, 0, 0, 0, 0, 0]
    logits = tf.constant([[[20.0 if v else -20.0 for v in g]]])
    loss = MaskLoss(boundary="band", boundary_width=0.125, lambda2=0.0)
    assert float(loss(tf.constant([[g]], tf.float32), logits)) < 1e-3


def test_background_mask_loss_golden():
    from tags_tf.model.losses import BackgroundMaskLoss

    # mean_k softplus(z_k): row [ln4, -ln4, 0, 0] -> (ln 5 + ln 1.25 + 2 ln 2) / 4 = 0.804719;
    # row [0, 0, 0, 0] -> ln 2 = 0.693147. Weighted mean over the rows with weight 1.
    logits = tf.constant([[[LN4, -LN4, 0.0, 0.0], [0.0] * 4, [9.0] * 4]])
    w = tf.constant([[1.0, 1.0, 0.0]])
    per = BackgroundMaskLoss(reduction=None)(None, logits, sample_weight=w).numpy()[0]
    np.testing.assert_allclose(per[:2], [0.804719, 0.693147], rtol=1e-5)
    assert per[2] == 0.0
    np.testing.assert_allclose(float(BackgroundMaskLoss()(None, logits, sample_weight=w)),
                               (0.804719 + 0.693147) / 2, rtol=1e-5)


def test_total_loss_trains_background_rows_when_asked():
    # T = 4, one instance on snippets 0-1: rows 2-3 are background. The "mask" term grows
    # by mask_background x the background loss of rows 2-3 (all logits 0: ln 2 each).
    cfg0 = get_config("demo", {"model.scales": (1,), "model.base_snippets": 4, "loss.mask_background": 0.0})
    cfg2 = get_config("demo", {"model.scales": (1,), "model.base_snippets": 4, "loss.mask_background": 2.0})
    outputs = {"cls_logits_s1": tf.zeros((1, 4, 5)), "mask_logits_s1": tf.zeros((1, 4, 4)),
               "cons_cls_s1": tf.zeros((1, 4, 5)), "cons_mask_s1": tf.zeros((1, 4, 4))}
    g = tf.constant([[[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    targets = {"cls_target_s1": tf.constant([[0, 0, 4, 4]]), "mask_target_s1": g,
               "fg_s1": tf.constant([[1.0, 1, 0, 0]]), "valid_s1": tf.ones((1, 4))}
    m0 = float(total_loss(outputs, targets, cfg0)["mask"])
    m2 = float(total_loss(outputs, targets, cfg2)["mask"])
    np.testing.assert_allclose(m2 - m0, 2.0 * math.log(2.0), rtol=1e-5)
