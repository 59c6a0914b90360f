"""Self-attentive multi-scale snippet embedding (paper Sec. 3.1, Eq. 1-2)."""

from __future__ import annotations

import keras
from keras import layers, ops

from tags_tf.config import ModelConfig

_MODEL = ModelConfig()  # the defaults (one definition: tags_tf.config)


@keras.saving.register_keras_serializable(package="tags_tf")
class ScaleEncoder(layers.Layer):
    """One temporal scale: pool -> pre-LN multi-head self-attention -> pre-LN MLP.

    ``(B, T_in, C) -> (B, T^s, C)`` with ``T^s = (T_in + 2 p - k) // stride + 1``.

    Q, K and V of Eq. 1 are the same projected features F, so pooling F once with
    ``P(theta)`` equals pooling Q/K/V with shared ``theta_Q = theta_K = theta_V``. Both
    residuals (attention, Eq. 1, and MLP, Eq. 2) add to the pooled input; the MLP is one
    fully connected layer (paper: "one fully-connected layer with residual skip
    connection"); LayerNorm is applied before the attention and before the MLP.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int = _MODEL.num_heads,
        pool_stride: int = 1,
        pool_kernel: int = _MODEL.pool_kernel,
        pool_padding: int = _MODEL.pool_padding,
        pool_type: str = _MODEL.pool_type,
        mlp_activation: str = _MODEL.mlp_activation,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.pool_stride = pool_stride
        self.pool_kernel = pool_kernel
        self.pool_padding = pool_padding
        self.pool_type = pool_type
        self.mlp_activation = mlp_activation
        self.dropout = dropout
        kernel = pool_kernel or pool_stride
        pool_cls = layers.AveragePooling1D if pool_type == "avg" else layers.MaxPooling1D
        self._identity_pool = kernel == 1 and pool_stride == 1 and pool_padding == 0
        self.pool = None if self._identity_pool else pool_cls(kernel, strides=pool_stride, padding="valid")
        self.norm_attn = layers.LayerNormalization(epsilon=1e-6, name="norm_attn")
        self.attn = layers.MultiHeadAttention(
            num_heads, key_dim=embed_dim // num_heads, dropout=dropout, name="attention"
        )
        self.norm_mlp = layers.LayerNormalization(epsilon=1e-6, name="norm_mlp")
        self.mlp = layers.Dense(embed_dim, activation=mlp_activation, name="mlp")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        t_in = input_shape[1]
        kernel = self.pool_kernel or self.pool_stride
        if t_in is not None:
            t_in = t_in + 2 * self.pool_padding
            t_out = (t_in - kernel) // self.pool_stride + 1
        else:
            t_out = None
        pooled = (input_shape[0], t_out, self.embed_dim)
        if self.pool is not None:
            self.pool.build((input_shape[0], t_in, self.embed_dim))
        self.norm_attn.build(pooled)
        self.attn.build(pooled, pooled, pooled)
        self.norm_mlp.build(pooled)
        self.mlp.build(pooled)

    def call(self, x, training=None):
        if self.pool_padding:
            x = ops.pad(x, [[0, 0], [self.pool_padding, self.pool_padding], [0, 0]])
        if self.pool is not None:
            x = self.pool(x)  # (B, T_in, C) -> (B, T^s, C)
        h = self.norm_attn(x)
        x = x + self.drop(self.attn(h, h, h, training=training), training=training)  # Eq. 1
        h = self.norm_mlp(x)
        return x + self.drop(self.mlp(h), training=training)  # Eq. 2

    def compute_output_shape(self, input_shape):
        t_in = input_shape[1]
        kernel = self.pool_kernel or self.pool_stride
        t_out = None if t_in is None else (t_in + 2 * self.pool_padding - kernel) // self.pool_stride + 1
        return (input_shape[0], t_out, self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            pool_stride=self.pool_stride,
            pool_kernel=self.pool_kernel,
            pool_padding=self.pool_padding,
            pool_type=self.pool_type,
            mlp_activation=self.mlp_activation,
            dropout=self.dropout,
        )
        return config


@keras.saving.register_keras_serializable(package="tags_tf")
class SinusoidalPositionEncoding(layers.Layer):
    """Adds the fixed sine/cosine position code of Vaswani et al. to ``(B, T, C)``.

    The paper does not mention one, but the mask branch must say *where* an instance
    is: without any position signal, self-attention is permutation-equivariant and
    two snippets with equal features would predict equal masks. Weight-free, so it
    works for any T and leaves the parameter count unchanged.
    """

    def __init__(self, max_wavelength: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def call(self, x):
        t = ops.shape(x)[1]
        c = x.shape[-1]
        pos = ops.cast(ops.arange(t), "float32")[:, None]  # (T, 1)
        i = ops.cast(ops.arange(c // 2), "float32")[None, :]  # (1, C/2)
        angle = pos / ops.power(self.max_wavelength, 2.0 * i / c)  # (T, C/2)
        code = ops.concatenate([ops.sin(angle), ops.cos(angle)], axis=-1)  # (T, C/2) x 2 -> (T, C')
        if c % 2:
            code = ops.pad(code, [[0, 0], [0, 1]])  # odd C: (T, C-1) -> (T, C)
        return x + ops.cast(code[None], x.dtype)  # (1, T, C) broadcast over B

    def get_config(self):
        config = super().get_config()
        config.update(max_wavelength=self.max_wavelength)
        return config
