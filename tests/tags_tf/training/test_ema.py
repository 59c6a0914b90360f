"""tags_tf/training/ema.py: callbacks after it see the averaged weights; training goes on from the
raw ones; a run resumed from an epoch backup ends where an uninterrupted one does."""

import keras
import numpy as np
import pytest

from tags_tf.training.checkpointing import EpochBackup
from tags_tf.training.ema import EmaWeights

MOMENTUM = 0.5
LR = 0.1


def _data():
    x = np.array([[1.0], [2.0]], np.float32)
    y = np.array([[3.0], [5.0]], np.float32)
    return x, y


def _model(use_ema: bool):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros",
                                                                    bias_initializer="zeros")])
    opt = keras.optimizers.SGD(LR, use_ema=use_ema, ema_momentum=MOMENTUM)
    model.compile(optimizer=opt, loss="mse")
    return model


def _hand_trajectory(steps: int):
    """Raw (w, b) after each full-batch SGD step on the MSE and Keras' moving average of them."""
    x, y = _data()
    w = b = 0.0
    raw, avg = [], []
    a = None
    for i in range(steps):
        err = w * x[:, 0] + b - y[:, 0]  # d/dw mean(err^2) = 2 mean(err x), d/db = 2 mean(err)
        w, b = w - LR * 2 * np.mean(err * x[:, 0]), b - LR * 2 * np.mean(err)
        a = np.array([w, b]) if i == 0 else MOMENTUM * a + (1 - MOMENTUM) * np.array([w, b])
        raw.append(np.array([w, b]))
        avg.append(a.copy())
    return raw, avg


class _Seen(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.at_epoch_end = []

    def on_epoch_end(self, epoch, logs=None):
        w, b = self.model.get_weights()
        self.at_epoch_end.append(np.array([w.item(), b.item()]))


def _weights(model):
    w, b = model.get_weights()
    return np.array([w.item(), b.item()])


def test_callbacks_after_it_see_the_average_and_training_continues_from_the_raw_weights():
    x, y = _data()
    raw, avg = _hand_trajectory(3)
    model, seen = _model(True), _Seen()
    model.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0, callbacks=[EmaWeights(), seen])
    # One step per epoch: at each epoch's end the callback after EmaWeights sees the average.
    np.testing.assert_allclose(seen.at_epoch_end, avg, rtol=1e-5)
    # The raw trajectory is the plain SGD one (the average never fed back into training)...
    plain = _model(False)
    plain.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(_weights(plain), raw[-1], rtol=1e-5)
    # ...and the model ends with the average, which differs from it.
    np.testing.assert_allclose(_weights(model), avg[-1], rtol=1e-5)
    assert not np.allclose(avg[-1], raw[-1], rtol=1e-3)


def test_early_stopping_keeps_the_average():
    x, y = _data()
    _, avg = _hand_trajectory(2)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 1

    model, ema = _model(True), EmaWeights()
    model.fit(x, y, batch_size=2, epochs=5, shuffle=False, verbose=0,
              callbacks=[ema, StopAfterTwo(), ema.finisher()])
    np.testing.assert_allclose(_weights(model), avg[1], rtol=1e-5)


def test_a_run_resumed_from_an_epoch_backup_ends_where_an_uninterrupted_one_does(tmp_path):
    x, y = _data()
    _, avg = _hand_trajectory(4)

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt  # after the backup of epoch 2

    first = _model(True)
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, batch_size=2, epochs=4, shuffle=False, verbose=0,
                  callbacks=[EmaWeights(), EpochBackup(str(tmp_path)), Kill()])
    resumed, seen = _model(True), _Seen()
    resumed.fit(x, y, batch_size=2, epochs=4, shuffle=False, verbose=0,
                callbacks=[EmaWeights(), seen, EpochBackup(str(tmp_path))])
    assert len(seen.at_epoch_end) == 2  # epochs 3 and 4 only
    np.testing.assert_allclose(seen.at_epoch_end, avg[2:], rtol=1e-5)
    np.testing.assert_allclose(_weights(resumed), avg[-1], rtol=1e-5)
