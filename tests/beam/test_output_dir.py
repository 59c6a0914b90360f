"""beam/output_dir.py: an earlier run's files are refused or replaced, nothing else touched."""

import os

import pytest

from beam import shard_io
from beam.output_dir import prepare_output
from tags_tf.data.schema import DEAD_LETTER_NAME, MANIFEST_NAME


def test_prepare_output_refuses_or_replaces_an_earlier_run(tmp_path):
    out = tmp_path / "new" / "out"
    prepare_output(str(out), overwrite=False)  # creates the local directory
    assert out.is_dir()
    old = ["training-00000-of-00002.tfrecord.gz", MANIFEST_NAME, DEAD_LETTER_NAME]
    for name in old + ["notes.txt"]:
        (out / name).write_text("x")
    (out / shard_io.TMP_DIR).mkdir()
    (out / shard_io.TMP_DIR / "part").write_text("x")
    with pytest.raises(FileExistsError, match="holds shards of an earlier run \\(3 files\\); pass --overwrite"):
        prepare_output(str(out), overwrite=False)
    assert sorted(os.listdir(out)) == sorted(old + ["notes.txt", shard_io.TMP_DIR])  # refused: nothing deleted
    prepare_output(str(out), overwrite=True)
    assert os.listdir(out) == ["notes.txt"]  # other files are not ours
