"""Fault injection for training: kills at several instants of an epoch's end, resume onto
other shards, a finished run started again with another config.

``KILL_POINTS`` is the corpus of kill instants (callback class, method, before/after)
and ``KILL_SCHEDULE`` kills one run at each of them in turn; a "kill" is a
BaseException raised there in-process, which nothing in Keras catches, so the files
are left as a SIGKILL at that instant would leave them. The same command must then
finish with every epoch logged exactly once and best.keras from the best logged
epoch. Add a row to extend it.
"""

import glob
import json
import logging

import keras
import pytest

from tags_tf.training import callbacks as cb
from tags_tf.training import checkpointing
from tags_tf import train as train_cli
from tags_tf.testing import tiny_set_args, write_tiny_shards

EPOCHS = 4


class _Kill(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler on the way catches it."""


KILL_POINTS = {
    # name: (class, method, "before" | "after")
    "after_validation_before_metrics_row": (cb.JsonLinesLogger, "on_epoch_end", "before"),
    "after_metrics_row_before_backup": (cb.JsonLinesLogger, "on_epoch_end", "after"),
    "inside_backup_after_commit_before_best_promotion": (checkpointing.EpochBackup, "_promote", "before"),
    "after_backup": (keras.callbacks.BackupAndRestore, "on_epoch_end", "after"),
}
# One run killed at each point in turn, at a later epoch each time (0-based epoch).
KILL_SCHEDULE = [("after_validation_before_metrics_row", 0), ("after_metrics_row_before_backup", 1),
                 ("inside_backup_after_commit_before_best_promotion", 2), ("after_backup", 3)]


def _args(shards, work, epochs=EPOCHS, extra=()):
    args = ["--dataset", str(shards), "--workdir", str(work), "--epochs", str(epochs), "--batch-size", "4",
            "--keras-verbose", "0", "--no-export", "--set", "train.validate_every=1", *extra]
    for s in tiny_set_args():
        args += ["--set", s]
    return args


def _kill_at(monkeypatch, point, kill_epoch):
    cls, method, when = KILL_POINTS[point]
    real = getattr(cls, method)

    def patched(self, epoch, *args, **kwargs):
        # on_epoch_end gets the 0-based epoch, _promote the number of epochs done.
        hit = epoch == (kill_epoch if method == "on_epoch_end" else kill_epoch + 1)
        if hit and when == "before":
            raise _Kill(point)
        out = real(self, epoch, *args, **kwargs)
        if hit and when == "after":
            raise _Kill(point)
        return out

    monkeypatch.setattr(cls, method, patched)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_tiny_shards(root / "a", num_train=8, num_val=4), write_tiny_shards(root / "b", num_train=8,
                                                                                    num_val=4, seed=1)


def _rows(work):
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_at_each_instant_in_turn_every_epoch_gets_one_row_and_one_chance(shards, tmp_path, monkeypatch):
    work = tmp_path / "run"
    for point, kill_epoch in KILL_SCHEDULE:
        with monkeypatch.context() as m:
            _kill_at(m, point, kill_epoch)
            with pytest.raises(_Kill):
                train_cli.main(_args(shards[0], work))
    assert train_cli.main(_args(shards[0], work)) == 0  # the same command finishes the run
    rows = _rows(work)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))  # each epoch exactly once
    assert all("val_mAP" in r for r in rows)
    # best.keras is the committed checkpoint of the first epoch with the best logged mAP.
    maps = [r["val_mAP"] for r in rows]
    best = json.loads((work / checkpointing.BEST_INFO_NAME).read_text())
    assert best["epoch"] == 1 + maps.index(max(maps)) and best["val_mAP"] == pytest.approx(max(maps))
    assert (work / "best.keras").exists() and not glob.glob(str(work / "best.pending-*"))
    assert json.loads((work / "state.json").read_text()) == {"finished": True, "epochs": EPOCHS}


def test_reconcile_drops_uncommitted_rows_and_promotes_committed_best(tmp_path):
    """The restart rule on hand-made files: committed epoch 2 (backup metadata)."""
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / checkpointing.METADATA_NAME).write_text(json.dumps({"epoch": 2, "weights": "epoch-00002.weights.h5"}))
    rows = [{"epoch": 1, "val_mAP": 0.1}, {"epoch": 2, "val_mAP": 0.3}, {"epoch": 3, "val_mAP": 0.9}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    best = str(tmp_path / "best.keras")
    (tmp_path / "best.keras").write_text("epoch 1")
    (tmp_path / "best.pending-00002.keras").write_text("epoch 2")  # committed, not yet promoted
    (tmp_path / "best.pending-00003.keras").write_text("epoch 3")  # never committed
    assert checkpointing.reconcile(str(backup), str(tmp_path / "metrics.jsonl"), best) == 2
    assert [r["epoch"] for r in _rows(tmp_path)] == [1, 2]
    assert (tmp_path / "best.keras").read_text() == "epoch 2"
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 2, "val_mAP": 0.3}
    assert not glob.glob(str(tmp_path / "best.pending-*"))


@pytest.mark.slow
def test_resume_onto_other_shards_and_finished_run_with_other_config_are_refused(shards, tmp_path, capsys,
                                                                                caplog):
    work = tmp_path / "run"
    assert train_cli.main(_args(shards[0], work, epochs=1)) == 0
    names_before = (work / "class_names.json").read_text()
    fingerprint = json.loads((work / "dataset.json").read_text())
    assert fingerprint["class_names"] == ["class0", "class1", "class2"] and fingerprint["manifest_sha256"]
    capsys.readouterr()
    # Same K and D, other data: refused on --resume and on a plain restart, nothing written.
    for extra in (["--resume"], []):
        assert train_cli.main(_args(shards[1], work, epochs=2, extra=extra)) == 2
        err = capsys.readouterr().err
        assert "dataset.json: this run was trained on other shards" in err and err.count("\n") == 1
    assert [r["epoch"] for r in _rows(work)] == [1]
    assert (work / "class_names.json").read_text() == names_before
    # A finished run started again with another config (no --resume) says so and fails.
    assert train_cli.main(_args(shards[0], work, epochs=1, extra=["--set", "train.seed=7"])) == 2
    assert "holds a different config" in capsys.readouterr().err
    # The same command again: nothing to train, and it says so.
    with caplog.at_level(logging.WARNING):
        assert train_cli.main(_args(shards[0], work, epochs=1)) == 0
    assert "finished run of 1 epochs: nothing to train" in caplog.text


def test_a_flipped_byte_in_a_shard_is_refused_before_training(tmp_path, capsys):
    shards = write_tiny_shards(tmp_path / "data", num_train=8, num_val=4)
    shard = sorted(shards.glob("validation-*"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size: only the SHA-256 can tell
    shard.write_bytes(bytes(data))
    assert train_cli.main(_args(shards, tmp_path / "run", epochs=1)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(shard) in err and "SHA-256" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing trained
    shard.write_bytes(data[:-3])  # truncated: the size differs, found without reading the file
    assert train_cli.main(_args(shards, tmp_path / "run2", epochs=1)) == 2
    assert "bytes, manifest.json says" in capsys.readouterr().err
