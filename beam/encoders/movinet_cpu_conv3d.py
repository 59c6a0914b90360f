"""Fast CPU path for MoViNet's 3D convolutions, same weights, same outputs.

tf-models-official's ``nn_layers.Conv3D`` wraps every call in
``tf.function(jit_compile=True)`` because TensorFlow has no CPU kernel for grouped
(depthwise) Conv3D; XLA's CPU grouped convolution is slow: about 6 s for one
16 x 172 x 172 clip through MoViNet-A0 on a 2-core box. :func:`patch_conv3d` swaps the
``call`` of each such layer (instance attribute only, variables untouched) for:

* ``groups == 1``: plain ``tf.nn.convolution`` (TensorFlow's oneDNN Conv3D kernel);
* depthwise (``groups == filters``, one input channel per group): a sum over the
  ``kt`` temporal taps of ``tf.nn.depthwise_conv2d`` on the matching (strided) frame
  slices -- exactly the 3D depthwise convolution, with TF's SAME/VALID padding.

That brings A0 to about 0.1 s a clip (~60x). Outputs match the XLA path to float32
rounding (checked in tests/beam/encoders/test_movinet_cpu_conv3d.py). Layers with other
group counts or dilations keep their original call.
"""

from __future__ import annotations

import logging
import types

import tensorflow as tf

log = logging.getLogger(__name__)


def _same_pad(x: tf.Tensor, axis: int, k: int, stride: int) -> tf.Tensor:
    """Pads ``axis`` of ``x`` as TF's SAME padding does for kernel ``k`` and ``stride``."""
    n = tf.shape(x)[axis]
    total = tf.maximum((-(-n // stride) - 1) * stride + k - n, 0)
    pads = [[0, 0]] * 5
    pads[axis] = [total // 2, total - total // 2]
    return tf.pad(x, pads)


def depthwise_conv3d(x: tf.Tensor, kernel: tf.Tensor, strides, padding: str) -> tf.Tensor:
    """Depthwise 3D convolution from 2D ones.

    Args:
      x: (B, T, H, W, C).
      kernel: (kt, kh, kw, 1, C) -- a Conv3D kernel with ``groups == C``.
      strides: (st, sh, sw).
      padding: "SAME" or "VALID" (TF semantics, independently per axis).
    Returns:
      (B, T', H', W', C).
    """
    kt, kh, kw = (int(k) for k in kernel.shape[:3])
    st, sh, sw = (int(s) for s in strides)
    if padding == "SAME" and kt > 1:  # temporal SAME padding by hand; spatial is done by depthwise_conv2d
        x = _same_pad(x, 1, kt, st)
    # TF's Eigen depthwise kernel (used where oneDNN is off, e.g. many AMD CPUs) refuses
    # unequal row/column strides: pad spatially as SAME would, convolve with stride 1
    # (VALID) and keep every sh-th row and sw-th column -- the same outputs.
    subsample = sh != sw
    if subsample:
        if padding == "SAME":
            x = _same_pad(_same_pad(x, 2, kh, sh), 3, kw, sw)
        padding = "VALID"
    b = tf.shape(x)[0]
    t_out = (tf.shape(x)[1] - kt) // st + 1
    out = None
    for k in range(kt):
        xs = x[:, k : k + (t_out - 1) * st + 1 : st]  # frames hit by tap k: (B, T', H, W, C)
        shape = tf.shape(xs)
        flat = tf.reshape(xs, tf.concat([[-1], shape[2:]], 0))  # (B, T', H, W, C) -> (B*T', H, W, C)
        filt = tf.transpose(kernel[k], [0, 1, 3, 2])  # (kh, kw, 1, C) -> (kh, kw, C, 1)
        if subsample:
            y = tf.nn.depthwise_conv2d(flat, filt, [1, 1, 1, 1], padding)[:, ::sh, ::sw]
        else:
            y = tf.nn.depthwise_conv2d(flat, filt, [1, sh, sw, 1], padding)
        out = y if out is None else out + y
    shape = tf.shape(out)
    return tf.reshape(out, tf.concat([[b, t_out], shape[1:]], 0))  # (B*T', H', W', C) -> (B, T', H', W', C)


def _fast_call(layer, inputs):
    """tf_keras base Conv.call without the jit_compile wrapper (channels_last only)."""
    if layer._is_causal:  # CausalConvMixin: pad time causally (and space "same") first
        inputs = tf.pad(inputs, layer._compute_causal_padding(inputs))
    padding = "VALID" if layer.padding == "causal" else layer.padding.upper()
    if layer.groups == 1:
        out = tf.nn.convolution(inputs, layer.kernel, strides=list(layer.strides), padding=padding)
    else:
        out = depthwise_conv3d(inputs, layer.kernel, layer.strides, padding)
    if layer.use_bias:
        out = tf.nn.bias_add(out, layer.bias)
    if layer.activation is not None:
        out = layer.activation(out)
    return out


def _patchable(layer) -> bool:
    if tuple(layer.dilation_rate) != (1, 1, 1) or layer.data_format != "channels_last":
        return False
    if layer.groups == 1:
        return True
    return layer.groups == layer.filters and int(layer.kernel.shape[3]) == 1  # depthwise


def patch_conv3d(model) -> int:
    """Patches every eligible ``nn_layers.Conv3D`` inside the (built) ``model``.

    Returns the number of layers patched. Variables are untouched, so checkpoints
    restore the same before or after.
    """
    from official.vision.modeling.layers import nn_layers

    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, nn_layers.Conv3D) and layer.built and _patchable(layer):
            layer.call = types.MethodType(_fast_call, layer)
            n += 1
    log.info("MoViNet: %d Conv3D layers use the non-XLA CPU path", n)
    return n
