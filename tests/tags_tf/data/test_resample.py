"""Tests of tags_tf.data.resample (eagerly and inside tf.data)."""

import numpy as np
import pytest
import tensorflow as tf

from tags_tf.data.resample import resample_features


def numpy_reference(x: np.ndarray, t: int) -> np.ndarray:
    """align_corners=False linear interpolation written out with a Python loop."""
    t_in = x.shape[0]
    out = np.zeros((t,) + x.shape[1:], np.float64)
    for j in range(t):
        p = min(max((j + 0.5) * t_in / t - 0.5, 0.0), t_in - 1.0)
        lo = int(np.floor(p))
        hi = min(lo + 1, t_in - 1)
        w = p - lo
        out[j] = (1 - w) * x[lo] + w * x[hi]
    return out


# Hand-computed (torch F.interpolate(mode="linear", align_corners=False) gives the same):
HAND_CASES = [
    # 4 -> 2: positions 0.5, 2.5
    ([0.0, 10.0, 20.0, 30.0], 2, [5.0, 25.0]),
    # 3 -> 2: positions 0.25, 1.75
    ([0.0, 3.0, 6.0], 2, [0.75, 5.25]),
    # 2 -> 4 (upsampling): positions -0.25->0, 0.25, 0.75, 1.25->1
    ([0.0, 10.0], 4, [0.0, 2.5, 7.5, 10.0]),
    # 2 -> 5: positions -0.3->0, 0.1, 0.5, 0.9, 1.3->1
    ([0.0, 10.0], 5, [0.0, 1.0, 5.0, 9.0, 10.0]),
    # 1 -> 3: constant
    ([7.0], 3, [7.0, 7.0, 7.0]),
    # identity
    ([1.0, -2.0, 4.0], 3, [1.0, -2.0, 4.0]),
    # 5 -> 1: position 2 (the middle)
    ([1.0, 2.0, 3.0, 4.0, 50.0], 1, [3.0]),
]


@pytest.mark.parametrize("x,t,expected", HAND_CASES)
def test_hand_computed_eager(x, t, expected):
    feats = np.asarray(x, np.float32)[:, None]  # (T_in,) -> (T_in, 1)
    out = resample_features(feats, t).numpy()
    assert out.shape == (t, 1)
    np.testing.assert_allclose(out[:, 0], expected, rtol=0, atol=1e-6)


def test_hand_computed_inside_tf_data():
    # Variable T_in per element: the graph version must handle dynamic lengths.
    def gen():
        for x, t, _ in HAND_CASES:
            yield np.asarray(x, np.float32)[:, None], t

    ds = tf.data.Dataset.from_generator(
        gen,
        output_signature=(tf.TensorSpec([None, 1], tf.float32), tf.TensorSpec([], tf.int32)),
    ).map(lambda x, t: resample_features(x, t))
    outs = list(ds.as_numpy_iterator())
    assert len(outs) == len(HAND_CASES)
    for out, (_, t, expected) in zip(outs, HAND_CASES):
        np.testing.assert_allclose(out[:, 0], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("t_in,t", [(9, 4), (5, 7), (100, 64), (37, 64), (64, 64), (1, 5), (2, 1)])
def test_matches_numpy_reference(t_in, t):
    rng = np.random.default_rng(t_in * 100 + t)
    x = rng.normal(size=(t_in, 3)).astype(np.float32)
    np.testing.assert_allclose(resample_features(x, t).numpy(), numpy_reference(x, t), atol=1e-5)


@pytest.mark.parametrize("t_in,t", [(9, 4), (5, 7), (100, 64), (3, 16)])
def test_matches_tf_image_resize_half_pixel(t_in, t):
    # tf.image.resize bilinear uses half-pixel centres and no antialiasing by default.
    rng = np.random.default_rng(t_in + t)
    x = rng.normal(size=(t_in, 4)).astype(np.float32)
    ref = tf.image.resize(x[None, :, :, None], [t, 4], method="bilinear")[0, :, :, 0]  # (1, T_in, D, 1) image
    np.testing.assert_allclose(resample_features(x, t).numpy(), ref.numpy(), atol=1e-5)


def test_batched_equals_per_video_and_keeps_dtype():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    out = resample_features(x, 4)
    assert out.shape == (2, 4, 3) and out.dtype == tf.float32
    for b in range(2):
        np.testing.assert_allclose(out[b].numpy(), numpy_reference(x[b], 4), atol=1e-6)
    half = resample_features(tf.constant(x, tf.float16), 4)
    assert half.dtype == tf.float16


def test_batched_inside_tf_function_with_unknown_lengths():
    fn = tf.function(lambda x: resample_features(x, 5), input_signature=[tf.TensorSpec([None, None, 2], tf.float32)])
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)  # (B, T_in, D)
    out = fn(x).numpy()
    assert out.shape == (2, 5, 2)
    np.testing.assert_allclose(out[1], numpy_reference(x[1], 5), atol=1e-6)


def test_zero_snippets_rejected_eagerly():
    with pytest.raises(ValueError, match="0 snippets"):
        resample_features(np.zeros((0, 3), np.float32), 4)


def test_zero_snippets_rejected_inside_tf_data():
    ds = tf.data.Dataset.from_generator(
        lambda: iter([np.zeros((0, 3), np.float32)]), output_signature=tf.TensorSpec([None, 3], tf.float32)
    ).map(lambda x: resample_features(x, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="0 snippets"):
        list(ds)


def test_bad_rank_and_bad_length():
    with pytest.raises(ValueError, match=r"\(T_in, D\)"):
        resample_features(np.zeros((4,), np.float32), 2)
    with pytest.raises(ValueError, match="num_snippets"):
        resample_features(np.zeros((4, 2), np.float32), 0)


def test_per_video_lengths_equal_resampling_each_unpadded_video():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 7, 2)).astype(np.float32)  # (B, T_max, D), rows padded at the end
    lengths = np.array([7, 1, 4])
    x[1, 1:] = 99.0  # padding must never leak into the output
    x[2, 4:] = 99.0
    out = resample_features(x, 5, lengths=lengths).numpy()
    assert out.shape == (3, 5, 2)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(out[b], numpy_reference(x[b, :n], 5), atol=1e-5)


def test_per_video_lengths_hand_values_inside_tf_data():
    # Row 0: [0, 10] (length 2) -> 4 snippets: positions -0.25, 0.25, 0.75, 1.25 -> [0, 2.5, 7.5, 10].
    # Row 1: [0, 10, 20] (length 3) -> 4: positions -0.125, 0.625, 1.375, 2.125 -> [0, 6.25, 13.75, 20].
    x = np.array([[0, 10, 0, 0], [0, 10, 20, 0]], np.float32)[..., None]  # (2, 4) -> (2, 4, 1)
    ds = tf.data.Dataset.from_tensors((x, np.array([2, 3]))).map(lambda f, n: resample_features(f, 4, lengths=n))
    out = next(iter(ds)).numpy()[..., 0]
    np.testing.assert_allclose(out, [[0, 2.5, 7.5, 10], [0, 6.25, 13.75, 20]], atol=1e-6)


def test_per_video_zero_length_rejected():
    with pytest.raises(tf.errors.InvalidArgumentError, match="0 snippets"):
        resample_features(np.ones((2, 3, 1), np.float32), 4, lengths=np.array([3, 0]))
    with pytest.raises(ValueError, match="batched"):
        resample_features(np.ones((3, 1), np.float32), 4, lengths=np.array([3]))
