"""Validation, checkpoints and export on the moving average of the weights (``train.ema_momentum``).

The optimizer keeps the average (Keras' ``use_ema``: ``avg = m * avg + (1 - m) * w``
after every step, ``avg = w`` at the first). :class:`EmaWeights` swaps it into the model
at every epoch's end, so the callbacks after it (validation, ``best.keras``, the epoch
backup) see the averaged weights, and swaps the raw weights back before the next epoch
trains. After the last epoch, or an epoch after which early stopping ends the run
(:meth:`EmaWeights.finisher`, put last), the model keeps the average (``last.keras``,
export).

Resuming: an epoch backup is written while the average is in the model (and the raw
weights in the optimizer's average slots), so the first epoch a restarted process
trains swaps them back first. Put the callback *first* in the list. After the last
epoch both hold the average, so a finished run extended with ``--resume --epochs N``
trains on from the averaged weights.
"""

from __future__ import annotations

import keras


class EmaWeights(keras.callbacks.SwapEMAWeights):
    """``SwapEMAWeights(swap_on_epoch=True)`` that also resumes correctly from an epoch backup."""

    def __init__(self):
        super().__init__(swap_on_epoch=True)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch and epoch > 0:
            # Restored from the backup of epoch ``epoch``: average in the model, raw weights in
            # the optimizer's slots (written after this callback's swap at that epoch's end).
            self._ema_weights_in_model = True
        self._first_epoch = False
        super().on_epoch_begin(epoch, logs)

    def finisher(self) -> keras.callbacks.Callback:
        """A callback to put *last*: when a callback before it (early stopping) ends the run
        after this epoch, it makes the average final, so Keras' end-of-fit
        ``finalize_variable_values`` leaves the averaged weights in the model."""
        return _Finisher(self)


class _Finisher(keras.callbacks.Callback):
    def __init__(self, ema: EmaWeights):
        super().__init__()
        self.ema = ema

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.ema._ema_weights_in_model:
            self.ema._finalize_ema_values()
