"""A shared layer test (after keras-hub's run_layer_test): config round trip, symbolic
call, eager call, one fit step, a ``.keras`` round trip of a model wrapping the layer and,
for a layer with dropout, calls with ``training=True``."""

import os
import tempfile

import keras
import numpy as np


def _as_tuple(outputs) -> tuple:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def _numpy(outputs) -> tuple[np.ndarray, ...]:
    return tuple(keras.ops.convert_to_numpy(o) for o in _as_tuple(outputs))


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shapes, dropout_arg: str | None = None):
    """``expected_output_shapes``: one shape or a tuple of shapes (multi-output layers).

    ``dropout_arg``: the constructor argument holding the layer's dropout rate; the
    layer is then also checked in training mode (:func:`check_dropout`).
    """
    layer = layer_cls(**init_kwargs)
    restored = layer_cls.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()

    x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    outs = _as_tuple(layer(x))
    shapes = expected_output_shapes if isinstance(expected_output_shapes[0], tuple) else (expected_output_shapes,)
    assert tuple(tuple(o.shape) for o in outs) == tuple(shapes)
    assert all(np.isfinite(o).all() for o in _numpy(outs))

    sym_in = keras.Input(batch_shape=input_shape)
    sym = _as_tuple(layer_cls(**init_kwargs)(sym_in))
    assert tuple(tuple(s.shape[1:]) for s in sym) == tuple(s[1:] for s in shapes)

    # One fit step: gradients reach the layer's weights and change them.
    model = keras.Model(sym_in, keras.ops.sum(keras.ops.stack([keras.ops.mean(s) for s in sym])))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=lambda y, p: keras.ops.square(p))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(x, np.zeros((input_shape[0],), "float32"), epochs=1, batch_size=input_shape[0], verbose=0)
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.allclose(b, a) for b, a in zip(before, after))

    check_keras_round_trip(layer_cls, init_kwargs, x)
    if dropout_arg is not None:
        check_dropout(layer_cls, init_kwargs, dropout_arg, x)


def check_keras_round_trip(layer_cls, init_kwargs, x: np.ndarray) -> None:
    """A model of the layer alone, saved as ``.keras`` and loaded back: the same layer
    class and config, and identical outputs (every weight restored where it belongs)."""
    inputs = keras.Input(batch_shape=x.shape)
    model = keras.Model(inputs, layer_cls(**init_kwargs)(inputs))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    assert type(loaded.layers[-1]) is layer_cls
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    for want, got in zip(_numpy(model(x)), _numpy(loaded(x)), strict=True):
        np.testing.assert_array_equal(got, want)


def check_dropout(layer_cls, init_kwargs, dropout_arg: str, x: np.ndarray, rate: float = 0.5) -> None:
    """Dropout acts in training and only there.

    With ``dropout_arg=rate``, two ``training=True`` calls give different outputs, both
    different from the ``training=False`` output. A copy with rate 0 and the same weights
    gives one output in both modes, that inference output (to float32 rounding: Keras's
    attention runs another kernel when its dropout is 0).
    """
    dropped = layer_cls(**{**init_kwargs, dropout_arg: rate})
    kept = layer_cls(**{**init_kwargs, dropout_arg: 0.0})
    inference = _numpy(dropped(x, training=False))
    kept(x, training=False)  # builds it
    kept.set_weights(dropped.get_weights())
    first, second = _numpy(dropped(x, training=True)), _numpy(dropped(x, training=True))
    assert all(np.isfinite(o).all() for o in first + second)
    assert any(not np.allclose(a, b) for a, b in zip(first, second)), "training=True: no dropout"
    assert any(not np.allclose(a, b) for a, b in zip(first, inference)), "training=True: no dropout"
    for want, got_eval, got_train in zip(inference, _numpy(kept(x, training=False)), _numpy(kept(x, training=True))):
        np.testing.assert_allclose(got_eval, want, rtol=1e-5, atol=1e-6)  # training=False: no dropout
        np.testing.assert_array_equal(got_train, got_eval)  # rate 0: no dropout
