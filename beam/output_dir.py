"""A job's output directory: refusing (or clearing) an earlier run's files, and text
files written whole (manifest, dead letter, accounting) through Beam's FileSystems
(local, gs://, ...). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems

from beam.shard_io import TMP_DIR
from tags_tf.data.schema import DEAD_LETTER_NAME, MANIFEST_NAME, SHARD_SUFFIX  # stdlib only


def prepare_output(output: str, overwrite: bool) -> None:
    """Makes ``output`` ready for a job's shards; refuses an earlier run's unless ``overwrite``.

    Creates a local ``output`` directory. An earlier run's files there (shards
    ``*-of-*.tfrecord[.gz]``, manifest, dead letter) raise FileExistsError naming the
    directory, or with ``overwrite`` are deleted along with an interrupted run's
    ``TMP_DIR``. Other files are left alone.
    """
    if "://" not in output:
        if os.path.exists(output) and not os.path.isdir(output):
            raise ValueError(f"--output {output}: is a file; expected a directory (existing or to create)")
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as e:  # a parent that is a file, no permission, ...
            raise ValueError(f"--output {output}: cannot create the directory ({e.strerror or e})") from None
    old = FileSystems.match([FileSystems.join(output, "*")])[0].metadata_list if FileSystems.exists(output) else []
    names = [(m.path, os.path.basename(m.path)) for m in old]
    ours = [
        path
        for path, name in names
        if name in (MANIFEST_NAME, DEAD_LETTER_NAME)
        or name.startswith((MANIFEST_NAME + ".tmp", DEAD_LETTER_NAME + ".tmp"))  # a killed write
        or ("-of-" in name and SHARD_SUFFIX in name)
    ]
    if ours and not overwrite:
        raise FileExistsError(
            f"--output {output}: holds shards of an earlier run ({len(ours)} files); pass --overwrite"
        )
    tmp = FileSystems.join(output, TMP_DIR)
    if overwrite and FileSystems.exists(tmp):
        FileSystems.delete([tmp])  # leftovers of an interrupted run
    if ours:
        FileSystems.delete(ours)


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through Beam's FileSystems (local, gs://, ...)."""
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to a temporary name next to ``path``, then renames it: readers
    see the old file or the whole new one, never a partial one (a kill mid-write leaves
    ``<name>.tmp-*``, which prepare_output removes with --overwrite)."""
    import uuid

    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        write_text(tmp, text)
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([tmp], [path])
    except BaseException:
        try:
            if FileSystems.exists(tmp):
                FileSystems.delete([tmp])
        except Exception:  # best effort; the error that matters is the one raised
            pass
        raise
