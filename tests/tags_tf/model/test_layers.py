"""Encoder and heads (paper Sec. 3.1-3.2)."""

import keras
import numpy as np
import pytest

from tags_tf.model.encoder import ScaleEncoder
from tags_tf.model.heads import ClassificationHead, MaskHead
from tests.tags_tf.model.layer_testing import run_layer_test


@pytest.mark.parametrize("stride,kernel,padding,t_out", [(1, 0, 0, 16), (2, 0, 0, 8), (4, 0, 0, 4), (2, 3, 1, 8)])
def test_scale_encoder_pools_to_the_scale(stride, kernel, padding, t_out):
    run_layer_test(
        ScaleEncoder,
        dict(embed_dim=8, num_heads=4, pool_stride=stride, pool_kernel=kernel, pool_padding=padding),
        (2, 16, 8),
        (2, t_out, 8),
        dropout_arg="dropout",
    )


def test_scale_encoder_max_pool_and_odd_length():
    # T not divisible by the stride: valid pooling drops the last snippet.
    run_layer_test(ScaleEncoder, dict(embed_dim=8, num_heads=2, pool_stride=2, pool_type="max"), (2, 15, 8), (2, 7, 8),
                   dropout_arg="dropout")


def test_scale_encoder_attention_is_global():
    # Changing the last snippet changes the embedding of the first one (global context),
    # which a local conv of small kernel could not do.
    layer = ScaleEncoder(embed_dim=8, num_heads=4)
    x = np.random.default_rng(1).normal(size=(1, 16, 8)).astype("float32")
    y1 = layer(x).numpy()
    x[0, -1] = -3.0 * x[0, -1]  # (a constant shift would vanish in LayerNorm)
    y2 = layer(x).numpy()
    assert np.abs(y1[0, 0] - y2[0, 0]).max() > 1e-4


def test_classification_head():
    run_layer_test(ClassificationHead, dict(num_classes=3, kernel_size=3), (2, 10, 8), ((2, 10, 4), (2, 10, 4)))


def test_mask_head_one_full_length_mask_per_snippet():
    run_layer_test(MaskHead, dict(num_snippets=10, hidden_dim=8), (2, 10, 8), ((2, 10, 10), (2, 10, 10)))


def test_bilinear_mask_head_one_full_length_mask_per_snippet():
    from tags_tf.model.heads import BilinearMaskHead

    run_layer_test(BilinearMaskHead, dict(hidden_dim=8, key_dim=4), (2, 10, 8), ((2, 10, 10), (2, 10, 10)))


def _perturbed_rows(head, t0: int, t: int = 16):
    """(rows changed, columns changed in the far rows) when snippet t0 of E changes."""
    # The head's weights are made on its first call, below: seeded, so they do not depend
    # on the tests run before (about 1 init in 30 leaves a bilinear row dead behind ReLU).
    keras.utils.set_random_seed(0)
    e = np.random.default_rng(3).normal(size=(1, t, 8)).astype("float32")
    before = head(e)[0].numpy()[0]  # (T, T): [predicting snippet, masked position]
    e[0, t0] += 2.0
    after = head(e)[0].numpy()[0]
    changed = np.abs(after - before) > 1e-6  # (T, T)
    far = np.abs(np.arange(t) - t0) > 2  # outside the two kernel-3 convs' reach
    return changed.any(axis=1), changed[far].any(axis=0)


def test_paper_mask_head_row_t_is_read_from_snippet_t():
    # Eq. 4 as printed: row t of M (the mask predicted BY snippet t, over every position
    # k) is a 1x1 conv of h_t, and h_t sees E at t-2..t+2 only. Changing E at snippet 5
    # changes rows 3..7 and no other row.
    rows, _ = _perturbed_rows(MaskHead(num_snippets=16, hidden_dim=8), t0=5)
    assert np.flatnonzero(rows).tolist() == [3, 4, 5, 6, 7]


def test_bilinear_mask_head_query_is_the_row_and_key_the_column():
    # Query of snippet t (row), key of position k (column): changing E at snippet 5
    # changes rows 3..7 entirely and, in every other row, only columns 3..7.
    from tags_tf.model.heads import BilinearMaskHead

    rows, far_columns = _perturbed_rows(BilinearMaskHead(hidden_dim=8, key_dim=4), t0=5)
    assert rows.all()  # every row's columns 3..7 moved
    assert np.flatnonzero(far_columns).tolist() == [3, 4, 5, 6, 7]


def _shift_model(mask_head: str):
    from tags_tf.config import get_config
    from tags_tf.model.tags_model import TagsModel

    cfg = get_config("demo", {"model.scales": (1,), "model.base_snippets": 24, "model.position_encoding": "none",
                              "model.mask_head": mask_head, "model.dropout": 0.0, "model.feature_dim": 6,
                              "model.embed_dim": 16, "model.mask_key_dim": 8})
    keras.utils.set_random_seed(0)
    return TagsModel(cfg)


@pytest.mark.parametrize("mask_head", ["bilinear", "paper"])
def test_shifting_the_video_shifts_the_bilinear_masks_only(mask_head):
    # Without a position code the encoder is permutation-equivariant and the convs are
    # shift-equivariant away from the borders, so with the bilinear head a circular shift
    # by r moves M[t, k] to M[t + r, k + r] for t, k clear of the borders. The paper's
    # head has a free weight vector per absolute position k, so its masks do not follow.
    model = _shift_model(mask_head)
    x = np.random.default_rng(0).normal(size=(1, 24, 6)).astype("float32")
    r = 5
    m = model(x)["mask_logits_s1"].numpy()[0]
    m_shift = model(np.roll(x, r, axis=1))["mask_logits_s1"].numpy()[0]
    inner = np.arange(3, 24 - 3 - r)  # away from both borders before and after the shift
    moved = m_shift[np.ix_(inner + r, inner + r)]
    original = m[np.ix_(inner, inner)]
    if mask_head == "bilinear":
        np.testing.assert_allclose(moved, original, atol=1e-4)
    else:
        assert np.abs(moved - original).max() > 1e-2
