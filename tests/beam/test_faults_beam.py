"""Fault injection for beam.build_shards on one corpus of bad inputs (the ``corpus``
fixture of tests/conftest.py, shared with tests/beam/test_dask_runner.py).

The corpus has 21 good videos and one video for each kind of bad input in
``tests.conftest.BAD`` (11 kinds). Every run must complete, write exactly the good videos
and list every bad one in rejected.jsonl with its reason: written + rejected = inputs.
To add a kind, append one ``Bad`` row there (how to make it, the reason expected).
"""

import json
import os

import numpy as np
import pytest

from beam import build_shards


def _rejected(out):
    return {r["video_id"]: r for r in map(json.loads, (out / "rejected.jsonl").read_text().splitlines())}


def test_corpus_of_bad_inputs_completes_and_accounts_for_every_video(corpus, tmp_path, capsys):
    ann, feat_dir, good, expected = corpus
    out = tmp_path / "shards"
    rc = build_shards.main(["--annotations", str(ann), "--features", str(feat_dir), "--output", str(out),
                            "--reject_bad_segments", "--log_level", "WARNING"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert (c["input"], c["written"], c["rejected_total"]) == (32, 21, 11)
    assert c["written"] + c["rejected_total"] == c["input"]
    rejected = _rejected(out)
    assert {v: r["reason"] for v, r in rejected.items()} == expected
    assert all(r["detail"] and "\n" not in r["detail"] for r in rejected.values())
    assert "30.0" in rejected["b_reversed"]["detail"] and "listed 2 times" in rejected["b_twice"]["detail"]
    assert sum(s["videos"] for s in manifest["subsets"].values()) == 21
    assert manifest["segment_policy"] == "reject_bad_segments"


def test_default_policy_drops_and_counts_the_bad_segment(corpus, tmp_path):
    ann, feat_dir, good, expected = corpus
    out = tmp_path / "shards"
    manifest = build_shards.run_build_shards(str(ann), str(feat_dir), str(out))
    c = manifest["counts"]
    # b_reversed is written with its good segment; its reversed one is dropped and counted.
    assert (c["input"], c["written"], c["rejected_total"], c["dropped_segments"]) == (32, 22, 10, 1)
    assert "b_reversed" not in _rejected(out)


def test_file_that_is_not_json_is_still_a_one_line_error(tmp_path, capsys):
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "a.npy", np.ones((8, 6), np.float32))
    for name, text in (("broken.json", "{not json"), ("deep.json", "[" * 100000 + "]" * 100000)):
        (tmp_path / name).write_text(text)
        rc = build_shards.main(["--annotations", str(tmp_path / name), "--features", str(tmp_path / "f"),
                                "--output", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and name in err and "Traceback" not in err


def test_output_naming_a_file_is_a_one_line_error(corpus, tmp_path, capsys):
    ann, feat_dir, _, _ = corpus
    (tmp_path / "taken").write_text("not a directory")
    for output in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        rc = build_shards.main(["--annotations", str(ann), "--features", str(feat_dir), "--output", str(output)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "Errno" not in err and f"--output {output}" in err


def test_manifest_write_interrupted_leaves_no_partial_manifest(tmp_path, monkeypatch):
    """A kill mid-write of manifest.json (its presence means "complete") leaves none."""
    from apache_beam.io.filesystems import FileSystems

    from beam import accounting
    from tags_tf.data.schema import Manifest

    real_create = FileSystems.create

    class _Dies:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            self._f.write(data[: len(data) // 2])
            raise OSError("disk full")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def create(path, *args, **kwargs):
        f = real_create(path, *args, **kwargs)
        return _Dies(f) if os.path.basename(path).startswith("manifest.json") else f

    monkeypatch.setattr(FileSystems, "create", create)
    with pytest.raises(OSError, match="disk full"):
        accounting.publish(str(tmp_path), Manifest(class_names=[], feature_dim=None, counts={}), [])
    assert not (tmp_path / "manifest.json").exists()
    assert not list(tmp_path.glob("manifest.json*"))  # the temporary file is cleaned up too
    assert (tmp_path / "rejected.jsonl").exists()  # written (atomically) before the manifest


def test_a_stage_that_loses_records_fails_the_job_naming_the_missing_count(corpus, tmp_path, monkeypatch, capsys):
    """A lossy writer (as a faulty runner would be) is caught by counting the records on disk."""
    from beam import shard_io

    real_write = shard_io.TFRecordFileWriter.write

    def lossy_write(self, record):  # silently drops the first record of every shard
        if getattr(self, "_lost", False):
            real_write(self, record)
        self._lost = True

    monkeypatch.setattr(shard_io.TFRecordFileWriter, "write", lossy_write)
    ann, feat_dir, _, _ = corpus
    out = tmp_path / "shards"
    rc = build_shards.main(["--annotations", str(ann), "--features", str(feat_dir), "--output", str(out),
                            "--num_shards", "1", "--log_level", "WARNING"])
    err = capsys.readouterr().err
    # The default policy writes 16 training videos (g00-g14, b_reversed) into one shard; one is lost.
    assert rc == 1 and err.count("\n") == 1, err
    assert "training: 15 records in the shards on disk but 16 videos written by the pipeline (1 missing)" in err
    assert not (out / "manifest.json").exists()  # nothing published


def test_a_runner_that_skips_the_accounting_stage_fails_the_job(corpus, tmp_path, monkeypatch, capsys):
    from beam import accounting

    monkeypatch.setattr(accounting._WriteAccountingFn, "process", lambda self, element: iter(()))
    ann, feat_dir, _, _ = corpus
    out = tmp_path / "shards"
    rc = build_shards.main(["--annotations", str(ann), "--features", str(feat_dir), "--output", str(out),
                            "--log_level", "WARNING"])
    err = capsys.readouterr().err
    assert rc == 1 and "without writing its accounting" in err and not (out / "manifest.json").exists()


def test_a_dropped_segment_is_named_in_segments_jsonl_and_the_summary(tmp_path, capsys):
    # The one segment of v_only_reversed has end < start; another video is unusable as a
    # whole, so the reader's warning names that one first: the segment log must name both
    # the video and the segment.
    database = {
        "v_a_broken": {"subset": "training", "duration": "ten", "annotations": []},
        "v_good": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [1.0, 4.0], "label": "jump"}]},
        "v_only_reversed": {"subset": "training", "duration": 10.0,
                            "annotations": [{"segment": [7.5, 2.25], "label": "jump"}]},
    }
    (tmp_path / "gt.json").write_text(json.dumps({"version": "1.3", "database": database}))
    (tmp_path / "f").mkdir()
    for vid in database:
        np.save(tmp_path / "f" / f"{vid}.npy", np.ones((8, 6), np.float32))
    rc = build_shards.main(["--annotations", str(tmp_path / "gt.json"), "--features", str(tmp_path / "f"),
                            "--output", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["counts"]["dropped_segments"] == 1 and manifest["counts"]["written"] == 2
    (entry,) = [json.loads(line) for line in (tmp_path / "o" / "segments.jsonl").read_text().splitlines()]
    assert (entry["video_id"], entry["subset"], entry["action"], entry["reason"]) == (
        "v_only_reversed", "training", "dropped", "malformed_annotation")
    assert "7.5" in entry["detail"] and "2.25" in entry["detail"] and "end" in entry["detail"]
    assert f"1 clipped or dropped segments, all in {tmp_path / 'o' / 'segments.jsonl'}" in out
    assert "v_only_reversed (training): dropped malformed_annotation" in out
    assert "v_a_broken" in (tmp_path / "o" / "rejected.jsonl").read_text() and "1 rejected videos" in out
