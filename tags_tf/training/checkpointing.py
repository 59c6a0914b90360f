"""Epoch commits that survive a kill at any instant: backup, metrics row, best.keras.

An epoch's end writes, in this order (the trainer orders the callbacks so):

1. ``ValidationCallback`` saves an improved model to ``best.pending-<epoch>.keras``
   (never over ``best.keras`` directly);
2. ``JsonLinesLogger`` writes the epoch's row of ``metrics.jsonl`` (atomic replace);
3. :class:`EpochBackup` saves the weights to a new file and then *commits* the epoch by
   atomically replacing ``training_metadata.json`` (``{"epoch", "weights"}``); only
   then is the pending best renamed to ``best.keras`` (with ``best.json`` naming its
   epoch and mAP).

A restart calls :func:`reconcile` before training: rows and pending checkpoints of
epochs after the committed one belong to an attempt that will be redone and are
dropped; a pending checkpoint of a committed epoch is promoted. So every epoch ends up
with exactly one metrics row and exactly one chance at ``best.keras``, wherever the
kill landed. Keras' own BackupAndRestore (the base class) writes the weights over the
previous ones and the epoch number afterwards, so a kill in between resumed epoch N
from its own end state; here the previous weights stay until the commit.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re

import keras

from tags_tf.data.jsonio import write_json

log = logging.getLogger(__name__)

METADATA_NAME = "training_metadata.json"  # the name Keras' BackupAndRestore uses
KERAS_WEIGHTS_NAME = "latest.weights.h5"  # an older run's backup (Keras' layout)
BEST_INFO_NAME = "best.json"
_PENDING = re.compile(r"best\.pending-(\d+)\.keras$")
_WEIGHTS = re.compile(r"epoch-(\d+)\.weights\.h5$")


def pending_best_path(best_path: str, epoch: int) -> str:
    """Where the improved model of (1-based) ``epoch`` waits for its epoch's commit."""
    return os.path.join(os.path.dirname(best_path), f"best.pending-{epoch:05d}.keras")


def _pending(best_path: str) -> dict[int, str]:
    """{epoch: path} of the pending best checkpoints next to ``best_path``."""
    out = {}
    for path in glob.glob(os.path.join(glob.escape(os.path.dirname(best_path)), "best.pending-*.keras")):
        m = _PENDING.search(os.path.basename(path))
        if m:
            out[int(m.group(1))] = path
    return out


def read_metadata(backup_dir: str) -> dict:
    """The committed backup: ``{"epoch": n, "weights": file name}`` ({} if none)."""
    path = os.path.join(backup_dir, METADATA_NAME)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def committed_epoch(backup_dir: str) -> int:
    """Number of epochs whose backup is committed (0 if none)."""
    return int(read_metadata(backup_dir).get("epoch", 0))


def promote_best(best_path: str, epoch: int, val_map: float | None = None) -> bool:
    """Renames epoch ``epoch``'s pending checkpoint to ``best_path`` (if there is one)."""
    pending = pending_best_path(best_path, epoch)
    if not os.path.exists(pending):
        return False
    info = {"epoch": epoch, "val_mAP": val_map}
    write_json(os.path.join(os.path.dirname(best_path), BEST_INFO_NAME + ".next"), info)
    os.replace(pending, best_path)
    os.replace(os.path.join(os.path.dirname(best_path), BEST_INFO_NAME + ".next"),
               os.path.join(os.path.dirname(best_path), BEST_INFO_NAME))
    log.info("epoch %d: new best checkpoint %s", epoch, best_path)
    return True


def reconcile(backup_dir: str, metrics_path: str, best_path: str) -> int:
    """Makes the run directory agree with its committed epoch; returns that epoch.

    Drops metrics rows and pending checkpoints of uncommitted epochs (they will be
    trained again) and promotes the pending checkpoint of a committed epoch (a kill
    between the commit and the rename).
    """
    done = committed_epoch(backup_dir)
    rows = []
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    kept = [r for r in rows if r.get("epoch", 0) <= done]
    if len(kept) != len(rows):
        log.info("dropping metrics rows of epochs %s (not committed; they are trained again)",
                 [r.get("epoch") for r in rows if r not in kept])
        write_json(metrics_path, kept, lines=True)
    maps = {r["epoch"]: r.get("val_mAP") for r in kept}
    for epoch, path in sorted(_pending(best_path).items()):
        if epoch <= done:
            promote_best(best_path, epoch, maps.get(epoch))
        else:
            os.remove(path)
    return done


class EpochBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose epoch commit is one atomic rename, followed by the
    promotion of the epoch's pending best checkpoint. Put it *last* in the callbacks."""

    def __init__(self, backup_dir: str, best_path: str | None = None):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.best_path = best_path

    def _load_model(self):
        meta = read_metadata(self.backup_dir)
        weights = os.path.join(self.backup_dir, meta.get("weights", KERAS_WEIGHTS_NAME))
        if not meta or not os.path.exists(weights):
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its variables are in the file
        self.model.load_weights(weights)
        self.model._initial_epoch = int(meta["epoch"])  # what BackupAndRestore sets for fit()

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        epoch = self._current_epoch  # 1-based: epochs done
        name = f"epoch-{epoch:05d}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        write_json(os.path.join(self.backup_dir, METADATA_NAME), {"epoch": epoch, "batch": 0, "weights": name})
        self._promote(epoch)
        for path in glob.glob(os.path.join(glob.escape(self.backup_dir), "*.weights.h5")):
            m = _WEIGHTS.search(os.path.basename(path))
            if (m and int(m.group(1)) != epoch) or os.path.basename(path) == KERAS_WEIGHTS_NAME:
                os.remove(path)

    def _promote(self, epoch: int) -> None:
        if self.best_path:
            logs = getattr(self, "_last_logs", {}) or {}
            promote_best(self.best_path, epoch, logs.get("val_mAP"))

    def on_epoch_end(self, epoch, logs=None):
        self._last_logs = {k: float(v) for k, v in (logs or {}).items() if k == "val_mAP"}
        super().on_epoch_end(epoch, logs)
