"""Training: data, model, callbacks, fit, final evaluation and (through a callback) export.

The CLI ``tags_tf.train`` builds the strategy and resolves the dataset, then calls
:func:`train`; the SavedModel export is the ``exporter`` it passes (``serving`` sits
above this library, which never imports it).

Workdir layout::

    config.json            resolved config (saved before training; a resumed run must match)
    dataset.json           dataset fingerprint (classes, videos per subset, manifest hash);
                           every restart and --resume must bring the same shards
    class_names.json       class id -> name
    backup/                checkpointing.EpochBackup state (resume after a kill)
    best.keras             best checkpoint by validation average mAP (best.json: its epoch)
    last.keras             model after the last epoch
    metrics.jsonl          one JSON object per epoch (losses, lr, validation mAP)
    tensorboard/           TensorBoard scalars
    state.json             {"finished": bool, "epochs": n}
    val_detections.json    validation detections (ActivityNet submission format)
    test_detections.json   held-out test detections, when the shards have a test subset
    summary.json           validation and test mAP of best.keras
    plots/                 timeline, PR curves, false-positive profile
    export/tags/1/         SavedModel for TF Serving (written by ``exporter``)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from tags_tf import config as config_lib
from tags_tf.data.input import make_dataset, subset_pattern
from tags_tf.data.jsonio import write_json
from tags_tf.data.schema import Manifest
from tags_tf.evaluation.evaluator import Evaluator
from tags_tf.evaluation.inference import detect_dataset
from tags_tf.evaluation.submission import ResultsWriter
from tags_tf.model.tags_model import TagsModel
from tags_tf.training import recipe
from tags_tf.training.callbacks import JsonLinesLogger, LearningRateLogger, StartLogger, ValidationCallback
from tags_tf.training.checkpointing import EpochBackup, reconcile
from tags_tf.training.dataset_resolver import MissingDataError, choose_subsets, training_samples
from tags_tf.training.distribute import is_chief, worker_dir
from tags_tf.training.ema import EmaWeights
from tags_tf.training.fingerprint import check_fingerprint, dataset_fingerprint, save_fingerprint, verify_shard_files

log = logging.getLogger(__name__)

# Writes the trained model for serving: (keras model, TagsConfig, export directory,
# class names in id order) -> None. The train CLI passes ``tags_tf.train.export_servable``.
Exporter = Callable[[Any, Any, str, Sequence[str]], None]


def _check_enough_samples(cfg, resolved, subset: str) -> None:
    n = training_samples(resolved, subset, cfg.data)
    if n < cfg.train.batch_size:
        what = "windows" if cfg.data.window_snippets > 0 else "videos"
        raise MissingDataError(
            f"the {subset!r} subset has {n} {what}, fewer than the batch size {cfg.train.batch_size}: "
            "no full training batch (use --batch-size)"
        )


def _read_json(path: str, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def _check_config(cfg, workdir: str) -> None:
    """Raises FileExistsError when ``workdir`` holds a run of a different config."""
    path = os.path.join(workdir, "config.json")
    saved = _read_json(path)
    if saved is not None:
        old = config_lib.from_dict(saved)
        # Only the epoch count may change between a run and its continuation.
        if dataclasses.replace(old, train=dataclasses.replace(old.train, epochs=cfg.train.epochs)) != cfg:
            raise FileExistsError(
                f"{path} holds a different config; use another --workdir or the same options "
                "(only --epochs may change when resuming)"
            )


def _check_or_save_config(cfg, workdir: str, chief: bool) -> None:
    _check_config(cfg, workdir)
    if chief:
        write_json(os.path.join(workdir, "config.json"), cfg.to_dict())


def steps_per_epoch_of(cfg, resolved) -> int:
    """Optimizer steps of one epoch over the training samples (videos or windows)."""
    train_subset, _ = choose_subsets(resolved.manifest, cfg.data.train_subset, cfg.data.val_subset)
    samples = training_samples(resolved, train_subset, cfg.data) or cfg.train.batch_size
    return recipe.steps_per_epoch(int(samples), cfg.train.batch_size)


def planned_config(cfg, resolved):
    """``cfg`` with ``train.epochs`` stretched to make ``train.min_steps`` optimizer steps."""
    steps = steps_per_epoch_of(cfg, resolved)
    epochs = recipe.planned_epochs(cfg.train, steps)
    if epochs != cfg.train.epochs:
        log.info("train.min_steps %d at %d steps per epoch: %d epochs instead of %d",
                 cfg.train.min_steps, steps, epochs, cfg.train.epochs)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    return cfg


def train(cfg, resolved, workdir: str, strategy, resume: bool = False, exporter: Exporter | None = None,
          verbose: int = 2) -> dict:
    """Trains ``cfg`` on ``resolved`` shards into ``workdir``; returns the final report dict.

    ``exporter`` (when given) writes the best model to ``workdir/export/tags/1`` at the end.
    """

    chief = is_chief()
    os.makedirs(workdir, exist_ok=True)
    log.info("resolved config (%s preset, shards %s):\n%s", resolved.preset, resolved.shard_dir, cfg.to_json())
    state_path = os.path.join(workdir, "state.json")
    state = _read_json(state_path, {"finished": False, "epochs": 0})
    cfg = planned_config(cfg, resolved)
    # Checked on every start, before anything is written: the same config and the same data.
    _check_config(cfg, workdir)
    fingerprint = dataset_fingerprint(resolved.manifest, resolved.shard_dir)
    known = check_fingerprint(workdir, fingerprint)
    train_subset, val_subset = choose_subsets(resolved.manifest, cfg.data.train_subset, cfg.data.val_subset)
    test_subset = held_out_subset(resolved.manifest, cfg.data.test_subset, (train_subset, val_subset))
    log.info("%s", verify_shard_files(resolved.manifest, resolved.shard_dir, (train_subset, val_subset, test_subset)))
    if state["finished"] and not resume:
        more = (f"; pass --resume --epochs {cfg.train.epochs} to train to {cfg.train.epochs}"
                if cfg.train.epochs > state["epochs"] else "; pass --resume --epochs N to train further")
        log.warning("%s holds a finished run of %d epochs: nothing to train%s", workdir, state["epochs"], more)
        return {"finished": True, "epochs": state["epochs"]}
    if chief and not known:
        save_fingerprint(workdir, fingerprint)
    _check_or_save_config(cfg, workdir, chief)
    class_names = resolved.class_names
    if chief:
        write_json(os.path.join(workdir, "class_names.json"), class_names)

    _check_enough_samples(cfg, resolved, train_subset)
    train_pattern = subset_pattern(resolved.shard_dir, train_subset)
    val_pattern = subset_pattern(resolved.shard_dir, val_subset)
    compression = cfg.data.compression or None
    global_batch = cfg.train.batch_size
    keras.utils.set_random_seed(cfg.train.seed)

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # One input pipeline per worker, each reading its own files (or records) and
        # batching per replica.
        train_ds = strategy.distribute_datasets_from_function(
            lambda ctx: make_dataset(train_pattern, cfg, training=True, batch_size=global_batch,
                                     compression=compression, input_context=ctx, seed=cfg.train.seed)
        )
    else:
        # Default or single-machine MirroredStrategy: Keras splits each global batch
        # across the local replicas (the same batches as on one device).
        train_ds = make_dataset(train_pattern, cfg, training=True, batch_size=global_batch,
                                compression=compression, seed=cfg.train.seed)
    val_ds = make_dataset(val_pattern, cfg, training=False, batch_size=global_batch,
                          compression=compression, with_metadata=True)
    test_ds = None
    if test_subset is not None:
        test_ds = make_dataset(subset_pattern(resolved.shard_dir, test_subset), cfg, training=False,
                               batch_size=global_batch, compression=compression, with_metadata=True)

    with strategy.scope():
        model = TagsModel(cfg)
        opt = recipe.build_optimizer(cfg.train, cfg.train.epochs * steps_per_epoch_of(cfg, resolved))
        model.compile(optimizer=opt, jit_compile=False)
        model.build((None, cfg.model.input_snippets, cfg.model.feature_dim))
        opt.build(model.trainable_variables)

    metrics_path = os.path.join(workdir, "metrics.jsonl")
    best_path = os.path.join(workdir, "best.keras")
    backup_dir = worker_dir(os.path.join(workdir, "backup"))
    # Made here, race-free: Keras checks exists() then makedirs() at the first epoch end,
    # and under MultiWorkerMirroredStrategy another worker creating its folder below
    # workdir/backup in between made the chief fail with FileExistsError.
    os.makedirs(backup_dir, exist_ok=True)
    if chief:  # rows / pending checkpoints of an epoch that a kill left uncommitted
        reconcile(backup_dir, metrics_path, best_path)
    history = JsonLinesLogger.read(metrics_path)
    best_so_far = max((r.get("val_mAP", -math.inf) for r in history), default=-math.inf)
    # Order matters (see tags_tf.training.checkpointing): validation and the metrics row first,
    # the backup -- the epoch's commit, which also promotes best.keras -- last.
    # With train.ema_momentum the averaged weights are swapped in first (tags_tf.training.ema).
    ema = EmaWeights() if cfg.train.ema_momentum > 0 else None
    callbacks = [ema] if ema else []
    callbacks += [
        StartLogger(cfg.train.epochs),
        ValidationCallback(val_ds, Evaluator.from_config(cfg, class_names), cfg.train.validate_every,
                           cfg.train.epochs, best_path, chief, best_so_far, staged=True),
        LearningRateLogger(),
    ]
    if cfg.train.early_stopping_patience > 0:
        # After validation (it reads val_mAP from the logs), before the epoch's commit.
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_mAP", mode="max", verbose=1,
                                                       patience=cfg.train.early_stopping_patience))
    if chief:
        callbacks += [
            keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard"), write_graph=False),
            JsonLinesLogger(metrics_path),
        ]
    callbacks.append(EpochBackup(backup_dir, best_path if chief else None))
    if ema:
        callbacks.append(ema.finisher())
    start = time.time()
    model.fit(train_ds, epochs=cfg.train.epochs, callbacks=callbacks, verbose=verbose, shuffle=False)  # tf.data shuffles
    train_seconds = time.time() - start
    if chief:
        model.save(os.path.join(workdir, "last.keras"))
        write_json(state_path, {"finished": True, "epochs": cfg.train.epochs})
    log.info("training took %.1f s", train_seconds)
    if not chief:
        return {"finished": True, "epochs": cfg.train.epochs}
    return finish(workdir, cfg, resolved, val_ds, model, exporter=exporter, train_seconds=train_seconds,
                  test_ds=test_ds)


def held_out_subset(manifest: Manifest, wanted: str, used: tuple[str, ...]) -> str | None:
    """The shards' held-out test subset (case-insensitive ``wanted``), or None when the
    shards have none or it is already the training or validation subset."""
    name = manifest.find_subset(wanted)
    if name is None or name in used:
        return None
    return name


def _evaluate_subset(workdir, model, dataset, evaluator, label: str):
    """Detections, ground truth and mAP report of one subset; writes ``{label}_detections.json``."""
    detections, ground_truth = detect_dataset(model, dataset, progress=True)
    report = evaluator.evaluate(detections, ground_truth, keep_matches=True)  # the plots reuse the matching
    ResultsWriter(evaluator.class_names).add_detections(detections).write(
        os.path.join(workdir, f"{label}_detections.json"))
    return detections, ground_truth, report


def _summary_of(report) -> dict:
    return {
        "average_mAP": report.average_map,
        "mAP_per_tIoU": dict(zip([f"{t:.2f}" for t in report.tiou_thresholds], map(float, report.map_per_tiou))),
    }


def finish(workdir, cfg, resolved, val_ds, model, exporter: Exporter | None = None,
           train_seconds: float | None = None, test_ds=None) -> dict:
    """Final evaluation with the best checkpoint (selected on validation): validation and,
    when the shards have one, held-out test tables, detection files, plots, and the
    export by ``exporter`` when given."""

    best_path = os.path.join(workdir, "best.keras")
    if os.path.exists(best_path):
        model = keras.saving.load_model(best_path)
    class_names = resolved.class_names
    evaluator = Evaluator.from_config(cfg, class_names)  # as the validation callback's: same config, same classes
    which = os.path.basename(best_path) if os.path.exists(best_path) else "the last epoch"
    detections, ground_truth, report = _evaluate_subset(workdir, model, val_ds, evaluator, "val")
    table = "validation (model selection):\n" + report.table()
    test_report = None
    if test_ds is not None:
        detections, ground_truth, test_report = _evaluate_subset(workdir, model, test_ds, evaluator, "test")
        table += "\n\ntest (held out):\n" + test_report.table()
    log.info("mAP of %s:\n%s", which, table)
    # Plots of the held-out subset when there is one (else of validation).
    plot_files = evaluator.write_plots(os.path.join(workdir, "plots"), detections, ground_truth,
                                       test_report or report)
    export_dir = None
    if exporter is not None:
        export_dir = os.path.join(workdir, "export", "tags", "1")
        exporter(model, cfg, export_dir, class_names)
        log.info("SavedModel exported to %s", export_dir)
    summary = {
        **_summary_of(report),  # validation
        "test": _summary_of(test_report) if test_report is not None else None,
        "train_seconds": train_seconds,
        "plots": plot_files,
        "export": export_dir,
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    return {**summary, "table": table}
