import numpy as np
import pytest

from beam.encoders import ClipSpec, EncoderError, EncoderSpec, build_encoder, clip_spec
from tags_tf.testing import export_mean_colour_model, mean_colour_features


def _close(a, b, rel=1e-4):
    """allclose relative to the features' scale (random-init keras apps give ~1e-11 values)."""
    scale = float(np.abs(b).max())
    return np.allclose(a, b, rtol=rel, atol=rel * scale)


def _clips(b=2, n=4, h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(b, n, h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ specs


@pytest.mark.parametrize(
    "text,kind,name,options",
    [
        ("movinet:a0", "movinet", "a0", ()),
        ("movinet:a0:size=64:checkpoint=/ck/ckpt-1", "movinet", "a0", (("checkpoint", "/ck/ckpt-1"), ("size", "64"))),
        ("keras_app:mobilenet_v3_small:weights=w.h5", "keras_app", "mobilenet_v3_small", (("weights", "w.h5"),)),
        ("savedmodel:gs://bucket/i3d:signature=default", "savedmodel", "gs://bucket/i3d", (("signature", "default"),)),
        ("savedmodel:C:\\models\\i3d", "savedmodel", "C:\\models\\i3d", ()),
        # Remote weights for cluster workers (Dataflow): the URL scheme's ":" is not a separator.
        ("movinet:a0:checkpoint=gs://b/movinet_a0_base:size=172", "movinet", "a0",
         (("checkpoint", "gs://b/movinet_a0_base"), ("size", "172"))),
        ("keras_app:resnet50:weights=s3://b/w.h5", "keras_app", "resnet50", (("weights", "s3://b/w.h5"),)),
    ],
)
def test_spec_parse(text, kind, name, options):
    spec = EncoderSpec.parse(text)
    assert (spec.kind, spec.name, spec.options) == (kind, name, options)
    assert EncoderSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text,match",
    [
        ("i3d:foo", "KIND:NAME"),
        ("movinet", "KIND:NAME"),
        ("movinet:", "KIND:NAME"),
        ("movinet:a0:weights=x", "unknown option 'weights'"),
        ("keras_app:resnet50:size=1:size=2", "given twice"),
    ],
)
def test_spec_parse_errors(text, match):
    with pytest.raises(EncoderError, match=match):
        EncoderSpec.parse(text)


def test_random_init_needs_the_explicit_flag():
    for text, key in [("movinet:a0", "checkpoint"), ("keras_app:mobilenet_v3_small", "weights")]:
        with pytest.raises(EncoderError, match=f"no {key}=PATH.*--allow_random_init"):
            clip_spec(text, 16)
        with pytest.raises(EncoderError, match="--allow_random_init"):
            build_encoder(text, 16)
    assert clip_spec("movinet:a0", 16, allow_random_init=True) == ClipSpec(16, 172, 172)
    assert clip_spec("movinet:a2", 8, allow_random_init=True) == ClipSpec(8, 224, 224)
    assert clip_spec("keras_app:inception_v3:size=96x128", 4, allow_random_init=True) == ClipSpec(4, 96, 128)
    assert clip_spec("keras_app:resnet50", 16, allow_random_init=True) == ClipSpec(16, 224, 224)


def test_spec_value_errors(tmp_path):
    with pytest.raises(EncoderError, match="checkpoint file .* does not exist"):
        clip_spec(f"movinet:a0:checkpoint={tmp_path}/ckpt-1")
    with pytest.raises(EncoderError, match="holds no TF checkpoint"):
        clip_spec(f"movinet:a0:checkpoint={tmp_path}")
    with pytest.raises(EncoderError, match="weights file .* does not exist"):
        clip_spec(f"keras_app:resnet50:weights={tmp_path}/w.h5")
    with pytest.raises(EncoderError, match="model id must be one of"):
        clip_spec("movinet:b7", allow_random_init=True)
    with pytest.raises(EncoderError, match="unknown keras_app 'vgg99'"):
        clip_spec("keras_app:vgg99", allow_random_init=True)
    with pytest.raises(EncoderError, match="size must be H or HxW"):
        clip_spec("keras_app:resnet50:size=big", allow_random_init=True)
    with pytest.raises(EncoderError, match="not a SavedModel directory"):
        clip_spec(f"savedmodel:{tmp_path}")


# ------------------------------------------------------------------------- savedmodel


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    return export_mean_colour_model(tmp_path_factory.mktemp("sm") / "clip", frames=4, height=16, width=16)


def test_savedmodel_clip_encoder_golden(clip_model):
    enc = build_encoder(f"savedmodel:{clip_model}", snippet_frames=4)
    assert (enc.clip, enc.feature_dim) == (ClipSpec(4, 16, 16), 4)
    x = _clips()
    np.testing.assert_allclose(enc(x), mean_colour_features(x), rtol=1e-5, atol=1e-6)
    # A uniform grey clip of level 51 is 0.2 in [0, 1]: features [0.2, 0.2, 0.2, 0.6].
    grey = np.full((1, 4, 16, 16, 3), 51, np.uint8)
    np.testing.assert_allclose(enc(grey), [[0.2, 0.2, 0.2, 0.6]], rtol=1e-5)
    # Batch size does not matter (one traced function for every B).
    np.testing.assert_allclose(enc(x[:1]), enc(x)[:1], rtol=1e-6)


def test_savedmodel_input_range(clip_model):
    enc = build_encoder(f"savedmodel:{clip_model}:input_range=0_255", snippet_frames=4)
    grey = np.full((1, 4, 16, 16, 3), 51, np.uint8)
    np.testing.assert_allclose(enc(grey), [[51, 51, 51, 153]], rtol=1e-5)
    enc = build_encoder(f"savedmodel:{clip_model}:input_range=-1_1", snippet_frames=4)
    np.testing.assert_allclose(enc(grey), [[-0.6, -0.6, -0.6, -1.8]], rtol=1e-5)


def test_savedmodel_shape_errors(clip_model, tmp_path):
    with pytest.raises(EncoderError, match="clips of 4 frames but --snippet_frames is 16"):
        build_encoder(f"savedmodel:{clip_model}", snippet_frames=16)
    with pytest.raises(EncoderError, match="size=8x8 but the model takes"):
        build_encoder(f"savedmodel:{clip_model}:size=8", snippet_frames=4)
    with pytest.raises(EncoderError, match="no signature 'nope'; available: .*'serving_default'"):
        build_encoder(f"savedmodel:{clip_model}:signature=nope", snippet_frames=4)
    with pytest.raises(EncoderError, match="no output 'logits'"):
        build_encoder(f"savedmodel:{clip_model}:output=logits", snippet_frames=4)
    enc = build_encoder(f"savedmodel:{clip_model}", snippet_frames=4)
    with pytest.raises(EncoderError, match="expected clips \\(B, 4, 16, 16, 3\\)"):
        enc(_clips(h=8))
    with pytest.raises(EncoderError, match="expected uint8"):
        enc(_clips().astype(np.float32))


def test_savedmodel_dynamic_size_and_per_frame_models(tmp_path):
    dynamic = export_mean_colour_model(tmp_path / "dyn")  # (B, None, None, None, 3)
    with pytest.raises(EncoderError, match="dynamic height/width; give size=HxW"):
        build_encoder(f"savedmodel:{dynamic}", snippet_frames=3)
    enc = build_encoder(f"savedmodel:{dynamic}:size=8x12", snippet_frames=3)
    assert enc.clip == ClipSpec(3, 8, 12)
    x = _clips(n=3, h=8, w=12)
    np.testing.assert_allclose(enc(x), mean_colour_features(x), rtol=1e-5, atol=1e-6)
    # A per-frame model (B, H, W, 3) is applied to every frame and mean-pooled.
    frames = export_mean_colour_model(tmp_path / "frames", height=16, width=16, per_frame=True)
    enc = build_encoder(f"savedmodel:{frames}", snippet_frames=5)
    x = _clips(n=5)
    np.testing.assert_allclose(enc(x), mean_colour_features(x), rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------- keras_app


def test_keras_app_per_frame_mean_pooling_and_weights_file(tmp_path):
    import keras

    spec = "keras_app:mobilenet_v3_small:size=32"
    enc = build_encoder(spec, snippet_frames=3, allow_random_init=True)
    assert enc.clip == ClipSpec(3, 32, 32)
    assert enc.feature_dim == enc.model.output_shape[-1] == 576
    x = _clips(n=3, h=32, w=32)
    feats = enc(x)
    assert feats.shape == (2, 576) and np.all(np.isfinite(feats))
    # TSN-style: the model on each frame, then the mean over the snippet's frames.
    frames = keras.applications.mobilenet_v3.preprocess_input(x.reshape(6, 32, 32, 3).astype("float32"))
    per_frame = np.asarray(enc.model(frames, training=False)).reshape(2, 3, 576)  # (B*N, D) -> (B, N, D)
    assert _close(feats, per_frame.mean(axis=1))
    # weights=PATH restores exactly those weights (no flag needed) ...
    path = str(tmp_path / "mnv3.weights.h5")
    enc.model.save_weights(path)
    restored = build_encoder(f"{spec}:weights={path}", snippet_frames=3)
    assert _close(restored(x), feats)
    # ... while another random init gives other features.
    other = build_encoder(spec, snippet_frames=3, allow_random_init=True)
    assert not _close(other(x), feats, rel=1e-2)


# ---------------------------------------------------------------------------- movinet


@pytest.mark.slow
def test_movinet_a0_random_init_and_checkpoint_round_trip(tmp_path):
    import tensorflow as tf

    enc = build_encoder("movinet:a0:size=32", snippet_frames=4, allow_random_init=True)
    assert (enc.clip, enc.feature_dim) == (ClipSpec(4, 32, 32), 480)
    x = _clips(n=4, h=32, w=32)
    feats = enc(x)
    assert feats.shape == (2, 480) and np.all(np.isfinite(feats))
    assert not np.allclose(feats[0], feats[1])  # the two clips differ
    # An official-style checkpoint: tf.train.Checkpoint(model=MovinetClassifier).
    prefix = tf.train.Checkpoint(model=enc.model).save(str(tmp_path / "ckpt"))  # .../ckpt-1 as released
    restored = build_encoder(f"movinet:a0:size=32:checkpoint={tmp_path}", snippet_frames=4)  # dir: latest
    np.testing.assert_allclose(restored(x), feats, rtol=1e-4, atol=1e-5)
    with pytest.raises(EncoderError, match="does not match MoViNet-a0 \\(num_classes=10\\)"):
        build_encoder(f"movinet:a0:size=32:num_classes=10:checkpoint={prefix}", snippet_frames=4)
