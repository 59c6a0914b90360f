import pickle

import numpy as np
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler

from beam.encoders import EncoderError
from beam.model_handler import EncoderModelHandler
from tags_tf.testing import export_mean_colour_model, mean_colour_features


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = export_mean_colour_model(tmp_path_factory.mktemp("sm") / "clip", frames=4, height=8, width=8)
    return f"savedmodel:{path}"


def _clips(k, seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, size=(k, 4, 8, 8, 3), dtype=np.uint8))


def test_load_and_run_inference(spec):
    handler = EncoderModelHandler(spec, snippet_frames=4, max_batch_size=2)
    model = handler.load_model()
    batch = _clips(3)
    out = list(handler.run_inference(batch, model))
    assert len(out) == 3 and all(o.shape == (4,) and o.dtype == np.float32 for o in out)
    np.testing.assert_allclose(np.stack(out), mean_colour_features(np.stack(batch)), rtol=1e-5, atol=1e-6)
    assert list(handler.run_inference([], model)) == []


def test_batching_and_bookkeeping(spec):
    handler = EncoderModelHandler(spec, snippet_frames=4, min_batch_size=2, max_batch_size=5)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 5}
    assert handler.get_num_bytes(_clips(3)) == 3 * 4 * 8 * 8 * 3
    assert handler.get_metrics_namespace() == "tags_tf_extract"
    with pytest.raises(ValueError, match="takes no inference_args"):
        handler.validate_inference_args({"training": True})
    handler.validate_inference_args(None)
    # Beam pickles handlers to ship them to workers; the model is built there.
    clone = pickle.loads(pickle.dumps(handler))
    assert repr(clone) == repr(handler)


def test_keyed_handler_keeps_video_and_snippet_keys(spec):
    keyed = KeyedModelHandler(EncoderModelHandler(spec, snippet_frames=4))
    model = keyed.load_model()
    clips = _clips(3, seed=1)
    keys = [("v1", 0), ("v1", 1), ("v2", 0)]
    out = list(keyed.run_inference(list(zip(keys, clips)), model))
    assert [k for k, _ in out] == keys
    feats = np.stack([f for _, f in out])
    np.testing.assert_allclose(feats, mean_colour_features(np.stack(clips)), rtol=1e-5, atol=1e-6)


def test_bad_spec_fails_at_construction_and_random_init_at_load():
    with pytest.raises(EncoderError, match="KIND:NAME"):
        EncoderModelHandler("i3d:foo")
    handler = EncoderModelHandler("movinet:a0")  # no checkpoint, no flag
    with pytest.raises(EncoderError, match="--allow_random_init"):
        handler.load_model()
