"""A shared layer test (after keras-hub's run_layer_test): config round trip, symbolic
call, eager call and one fit step."""

import keras
import numpy as np


def run_layer_test(layer_cls, init_kwargs, input_shape, expected_output_shapes):
    """``expected_output_shapes``: one shape or a tuple of shapes (multi-output layers)."""
    layer = layer_cls(**init_kwargs)
    restored = layer_cls.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()

    x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    eager = layer(x)
    outs = eager if isinstance(eager, (tuple, list)) else (eager,)
    shapes = expected_output_shapes if isinstance(expected_output_shapes[0], tuple) else (expected_output_shapes,)
    assert tuple(tuple(o.shape) for o in outs) == tuple(shapes)
    assert all(np.isfinite(keras.ops.convert_to_numpy(o)).all() for o in outs)

    sym_in = keras.Input(batch_shape=input_shape)
    sym = layer_cls(**init_kwargs)(sym_in)
    sym = sym if isinstance(sym, (tuple, list)) else (sym,)
    assert tuple(tuple(s.shape[1:]) for s in sym) == tuple(s[1:] for s in shapes)

    # One fit step: gradients reach the layer's weights and change them.
    model = keras.Model(sym_in, keras.ops.sum(keras.ops.stack([keras.ops.mean(s) for s in sym])))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=lambda y, p: keras.ops.square(p))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(x, np.zeros((input_shape[0],), "float32"), epochs=1, batch_size=input_shape[0], verbose=0)
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.allclose(b, a) for b, a in zip(before, after))
