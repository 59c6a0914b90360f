import numpy as np
import pytest

from beam.encoders.movinet_cpu_conv3d import depthwise_conv3d, patch_conv3d


def reference_depthwise_conv3d(x, kernel, strides, padding):
    """Direct numpy loop: x (B, T, H, W, C), kernel (kt, kh, kw, 1, C)."""
    ks = kernel.shape[:3]
    if padding == "SAME":  # TF: total = max((ceil(n/s) - 1) * s + k - n, 0), before = total // 2
        pads = []
        for n, k, s in zip(x.shape[1:4], ks, strides):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out_shape = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:4], ks, strides)]
    out = np.zeros([x.shape[0]] + out_shape + [x.shape[4]], np.float64)
    for t in range(out_shape[0]):
        for i in range(out_shape[1]):
            for j in range(out_shape[2]):
                t0, i0, j0 = t * strides[0], i * strides[1], j * strides[2]
                patch = x[:, t0 : t0 + ks[0], i0 : i0 + ks[1], j0 : j0 + ks[2], :]  # (B, kt, kh, kw, C)
                out[:, t, i, j, :] = np.einsum("bthwc,thwc->bc", patch, kernel[..., 0, :])
    return out


@pytest.mark.parametrize(
    "shape,ksize,strides,padding",
    [
        ((2, 5, 7, 7, 3), (3, 3, 3), (1, 1, 1), "SAME"),
        ((2, 5, 7, 6, 3), (3, 3, 3), (1, 2, 2), "SAME"),
        ((1, 7, 6, 7, 2), (5, 3, 3), (2, 2, 1), "SAME"),
        ((2, 6, 5, 5, 3), (3, 1, 1), (1, 1, 1), "VALID"),
        ((1, 4, 5, 5, 4), (1, 3, 3), (1, 2, 2), "SAME"),
    ],
)
def test_depthwise_conv3d_matches_a_direct_loop(shape, ksize, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    kernel = rng.normal(size=ksize + (1, shape[-1])).astype(np.float32)
    got = depthwise_conv3d(x, kernel, strides, padding).numpy()
    want = reference_depthwise_conv3d(x.astype(np.float64), kernel.astype(np.float64), strides, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_patched_movinet_a0_matches_the_xla_path(causal):
    import tensorflow as tf
    from official.projects.movinet.modeling import movinet

    backbone = movinet.Movinet(model_id="a0", causal=causal)
    x = tf.random.stateless_uniform((2, 5, 40, 40, 3), seed=(1, 2))
    ref = backbone({"image": x}, training=False)[0]["head"].numpy()
    assert patch_conv3d(backbone) > 50  # every Conv3D of A0 (the depthwise ones included)
    got = backbone({"image": x}, training=False)[0]["head"].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
