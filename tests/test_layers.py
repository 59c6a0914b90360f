"""Encoder and heads (paper Sec. 3.1-3.2)."""

import numpy as np
import pytest

from tags_tf.layers.encoder import ScaleEncoder
from tags_tf.layers.heads import ClassificationHead, MaskHead
from tests.layer_testing import run_layer_test


@pytest.mark.parametrize("stride,kernel,padding,t_out", [(1, 0, 0, 16), (2, 0, 0, 8), (4, 0, 0, 4), (2, 3, 1, 8)])
def test_scale_encoder_pools_to_the_scale(stride, kernel, padding, t_out):
    run_layer_test(
        ScaleEncoder,
        dict(embed_dim=8, num_heads=4, pool_stride=stride, pool_kernel=kernel, pool_padding=padding),
        (2, 16, 8),
        (2, t_out, 8),
    )


def test_scale_encoder_max_pool_and_odd_length():
    # T not divisible by the stride: valid pooling drops the last snippet.
    run_layer_test(ScaleEncoder, dict(embed_dim=8, num_heads=2, pool_stride=2, pool_type="max"), (2, 15, 8), (2, 7, 8))


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
