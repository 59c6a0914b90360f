"""The two parallel branches of the TAD head (paper Sec. 3.2, Eq. 3-4).

Both take a snippet embedding ``E^s`` of shape ``(B, T^s, C)`` (channels last). Besides
the prediction, each returns the 1-D conv projection of ``E`` that the
classification-mask consistency loss (Eq. 9) compares: ``E_p`` (matching P) and
``E_m`` (matching M). They are used by the loss only.
"""

from __future__ import annotations

import keras
from keras import layers

from tags_tf.config import ModelConfig

_MODEL = ModelConfig()  # the defaults (one definition: tags_tf.config)


@keras.saving.register_keras_serializable(package="tags_tf")
class ClassificationHead(layers.Layer):
    """``H_c``: 1-D conv to ``K + 1`` logits per snippet (class ``K`` = background).

    Returns ``(logits, e_p)``, both ``(B, T^s, K+1)``. ``softmax(logits)`` is ``P`` of
    Eq. 3 and ``sigmoid(logits)`` the regression output ``r`` of Eq. 5.
    """

    def __init__(self, num_classes: int, kernel_size: int = _MODEL.cls_kernel, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.kernel_size = kernel_size
        self.conv = layers.Conv1D(num_classes + 1, kernel_size, padding="same", name="h_c")
        self.proj = layers.Conv1D(num_classes + 1, 1, name="e_p")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, e):
        return self.conv(e), self.proj(e)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, kernel_size=self.kernel_size)
        return config


def _trunk(hidden_dim: int, kernel_size: int) -> tuple[layers.Conv1D, layers.Conv1D]:
    """The first two of H_b's convs (kernel ``kernel_size``, ReLU), shared by both read-outs."""
    return tuple(
        layers.Conv1D(hidden_dim, kernel_size, padding="same", activation="relu", name=f"h_b{i}") for i in (1, 2)
    )


@keras.saving.register_keras_serializable(package="tags_tf")
class MaskHead(layers.Layer):
    """``H_b``: three stacked 1-D convs to ``T^s`` channels, one full-length mask per snippet.

    Returns ``(logits, e_m)``, both ``(B, T^s, T^s)``. ``sigmoid(logits)[b, t, k]`` is
    the foreground probability of position ``k`` in the mask predicted *by* snippet
    ``t``: axis 1 is the snippet that predicts, axis 2 the position masked (the paper's
    ``M^s`` is the transpose, with the t-th column the mask of snippet t).
    """

    def __init__(self, num_snippets: int, hidden_dim: int, kernel_size: int = _MODEL.mask_kernel, **kwargs):
        super().__init__(**kwargs)
        self.num_snippets = num_snippets
        self.hidden_dim = hidden_dim
        self.kernel_size = kernel_size
        self.conv1, self.conv2 = _trunk(hidden_dim, kernel_size)
        self.conv3 = layers.Conv1D(num_snippets, 1, name="h_b3")
        self.proj = layers.Conv1D(num_snippets, 1, name="e_m")

    def build(self, input_shape):
        hidden = (input_shape[0], input_shape[1], self.hidden_dim)
        self.conv1.build(input_shape)
        self.conv2.build(hidden)
        self.conv3.build(hidden)
        self.proj.build(input_shape)

    def call(self, e):
        return self.conv3(self.conv2(self.conv1(e))), self.proj(e)

    def get_config(self):
        config = super().get_config()
        config.update(num_snippets=self.num_snippets, hidden_dim=self.hidden_dim, kernel_size=self.kernel_size)
        return config


@keras.saving.register_keras_serializable(package="tags_tf")
class BilinearMaskHead(layers.Layer):
    """``H_b`` as a query-key product: ``M[t, k] = <q(h_t), k(h_k)> / sqrt(d) + b``.

    The same two 1-D convs as :class:`MaskHead` give ``h`` (B, T, C); a query of the
    predicting snippet ``t`` and a key of the masked position ``k`` (Dense, width
    ``key_dim`` = d) replace the paper's per-position 1x1 conv, so no weight is tied to
    an absolute position or to ``T``: shifting the video shifts the masks (translation
    equivariance, up to the convs' zero padding at the borders). ``E_m`` of Eq. 9 is
    built the same way from ``E`` (its own query and key). Logits are computed in
    float32.

    Returns ``(logits, e_m)``, both ``(B, T, T)``; axis 1 is the snippet that predicts,
    axis 2 the position masked, as :class:`MaskHead`.
    """

    def __init__(self, hidden_dim: int, key_dim: int = _MODEL.mask_key_dim, kernel_size: int = _MODEL.mask_kernel,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.key_dim = key_dim
        self.kernel_size = kernel_size
        self.conv1, self.conv2 = _trunk(hidden_dim, kernel_size)
        self.query = layers.Dense(key_dim, name="query")
        self.key = layers.Dense(key_dim, name="key")
        self.proj_query = layers.Dense(key_dim, name="e_m_query")
        self.proj_key = layers.Dense(key_dim, name="e_m_key")

    def build(self, input_shape):
        hidden = (input_shape[0], input_shape[1], self.hidden_dim)
        self.conv1.build(input_shape)
        self.conv2.build(hidden)
        self.query.build(hidden)
        self.key.build(hidden)
        self.proj_query.build(input_shape)
        self.proj_key.build(input_shape)
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")

    def _product(self, q, k):
        q = keras.ops.cast(q, "float32")  # (B, T, d)
        k = keras.ops.cast(k, "float32")  # (B, T, d)
        scale = 1.0 / float(self.key_dim) ** 0.5
        return keras.ops.einsum("btd,bkd->btk", q, k) * scale  # (B, T, d) x (B, T, d) -> (B, T, T)

    def call(self, e):
        h = self.conv2(self.conv1(e))  # (B, T, C)
        logits = self._product(self.query(h), self.key(h)) + keras.ops.cast(self.bias, "float32")
        return logits, self._product(self.proj_query(e), self.proj_key(e))

    def compute_output_spec(self, e):
        shape = (e.shape[0], e.shape[1], e.shape[1])
        return keras.KerasTensor(shape, dtype="float32"), keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, key_dim=self.key_dim, kernel_size=self.kernel_size)
        return config


def make_mask_head(kind: str, num_snippets: int, hidden_dim: int, kernel_size: int, key_dim: int, name: str):
    """The mask head named by ``model.mask_head``: "paper" (Eq. 4 as printed: a 1x1 conv
    to T^s channels) or "bilinear" (query-key, :class:`BilinearMaskHead`)."""
    if kind == "paper":
        return MaskHead(num_snippets, hidden_dim, kernel_size, name=name)
    if kind == "bilinear":
        return BilinearMaskHead(hidden_dim, key_dim, kernel_size, name=name)
    raise ValueError(f"mask head must be 'paper' or 'bilinear', got {kind!r}")
