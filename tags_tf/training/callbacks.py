"""Training callbacks: validation mAP with best-checkpoint keeping, learning rate and
JSON-lines metrics. Checkpoints and files are written on the chief only."""

from __future__ import annotations

import json
import logging
import math
import os

import keras

from tags_tf.data.jsonio import write_json
from tags_tf.training.checkpointing import pending_best_path
from tags_tf.evaluation.evaluator import Evaluator
from tags_tf.evaluation.inference import detect_dataset

log = logging.getLogger(__name__)


class ValidationCallback(keras.callbacks.Callback):
    """Every ``every`` epochs (and after the last): detect on the validation set, score
    with ``evaluator`` (the run's :class:`tags_tf.evaluation.evaluator.Evaluator`, also used by the
    final evaluation), add ``val_mAP`` and ``val_mAP@<tIoU>`` to the logs, and
    save the model when the average mAP improves: to ``best_path``, or with ``staged``
    to the epoch's pending file that ``checkpointing.EpochBackup`` renames to
    ``best_path`` once the epoch is committed (so a killed attempt never leaves its
    checkpoint behind)."""

    def __init__(self, dataset, evaluator: Evaluator, every: int, total_epochs: int,
                 best_path: str, chief: bool, best_so_far: float = -math.inf, staged: bool = False):
        super().__init__()
        self.dataset = dataset
        self.evaluator = evaluator
        self.every = max(1, every)
        self.total_epochs = total_epochs
        self.best_path = best_path
        self.chief = chief
        self.best = best_so_far
        self.staged = staged

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if (epoch + 1) % self.every and epoch + 1 != self.total_epochs:
            return
        detections, ground_truth = detect_dataset(self.model, self.dataset)
        report = self.evaluator.evaluate(detections, ground_truth)
        logs["val_mAP"] = report.average_map
        for t, v in zip(report.tiou_thresholds, report.map_per_tiou):
            logs[f"val_mAP@{t:.2f}"] = float(v)
        log.info("epoch %d: validation average mAP %.4f", epoch + 1, report.average_map)
        if report.average_map > self.best:
            self.best = report.average_map
            logs["best_val_mAP"] = self.best
            if self.chief:
                path = pending_best_path(self.best_path, epoch + 1) if self.staged else self.best_path
                self.model.save(path)
                log.info("new best checkpoint %s", path)
        logs["best_val_mAP"] = self.best


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (for TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class StartLogger(keras.callbacks.Callback):
    """Logs the first epoch this process trains (after BackupAndRestore restored state)."""

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs
        self._logged = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._logged:
            log.info("training from epoch %d to %d", epoch + 1, self.total_epochs)
            self._logged = True


class JsonLinesLogger(keras.callbacks.Callback):
    """One JSON object per epoch in ``path``; a resumed run replaces the epochs it redoes,
    so the file stays continuous (each epoch exactly once)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    @staticmethod
    def read(path: str) -> list[dict]:
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def on_epoch_end(self, epoch, logs=None):
        rows = [r for r in self.read(self.path) if r["epoch"] < epoch + 1]
        rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        write_json(self.path, rows, lines=True)
