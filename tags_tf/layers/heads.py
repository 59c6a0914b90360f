"""The two parallel branches of the TAD head (paper Sec. 3.2, Eq. 3-4).

Both take a snippet embedding ``E^s`` of shape ``(B, T^s, C)`` (channels last). Besides
the prediction, each returns the 1-D conv projection of ``E`` that the
classification-mask consistency loss (Eq. 9) compares: ``E_p`` (matching P) and
``E_m`` (matching M). They are used by the loss only.
"""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="tags_tf")
class ClassificationHead(layers.Layer):
    """``H_c``: 1-D conv to ``K + 1`` logits per snippet (class ``K`` = background).

    Returns ``(logits, e_p)``, both ``(B, T^s, K+1)``. ``softmax(logits)`` is ``P`` of
    Eq. 3 and ``sigmoid(logits)`` the regression output ``r`` of Eq. 5.
    """

    def __init__(self, num_classes: int, kernel_size: int = 3, **kwargs):
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


@keras.saving.register_keras_serializable(package="tags_tf")
class MaskHead(layers.Layer):
    """``H_b``: three stacked 1-D convs to ``T^s`` channels, one full-length mask per snippet.

    Returns ``(logits, e_m)``, both ``(B, T^s, T^s)``. ``sigmoid(logits)[b, t, k]`` is
    the foreground probability of position ``k`` in the mask predicted *by* snippet
    ``t``: axis 1 is the snippet that predicts, axis 2 the position masked (the paper's
    ``M^s`` is the transpose, with the t-th column the mask of snippet t).
    """

    def __init__(self, num_snippets: int, hidden_dim: int, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.num_snippets = num_snippets
        self.hidden_dim = hidden_dim
        self.kernel_size = kernel_size
        self.conv1 = layers.Conv1D(hidden_dim, kernel_size, padding="same", activation="relu", name="h_b1")
        self.conv2 = layers.Conv1D(hidden_dim, kernel_size, padding="same", activation="relu", name="h_b2")
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
