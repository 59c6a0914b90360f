"""Readers for pre-extracted snippet features (numpy/h5py only, no TensorFlow).

A *feature source* (the ``--features`` / ``--features2`` argument of the Beam jobs) is
one of:

- a directory: every ``*.npy`` (array (T, D)) and ``*.csv`` (BSN/BMN layout: T rows of D
  comma-separated values after a header row ``f0,...,f{D-1}``; the first row counts as a
  header only if some cell is not a number, so a csv without header also reads, but a
  csv whose header is all numbers loses no row and gains a bogus one) directly inside it; the file
  name without extension is the video id (``v_4Lu8ECLHvK4.npy``);
- one ``.h5`` / ``.hdf5`` file holding one top-level dataset (T, D) per video, named by
  video id (G-TAD style); groups and nested datasets are ignored;
- one ``.npy`` / ``.csv`` file (a single video);
- a glob pattern matching any mix of the above files (``feats/*.npy``, ``gs://b/f/*.h5``).

Paths go through ``apache_beam.io.filesystems.FileSystems``, so ``gs://`` and other
Beam file systems work for listing and reading.

Video ids are matched to file names with the ActivityNet ``v_`` prefix tolerated either
way (:func:`candidate_keys`): annotations that say ``4Lu8ECLHvK4`` find
``v_4Lu8ECLHvK4.csv`` and vice versa. When more than one file answers for a video (say
``abc.npy`` and ``v_abc.npy``, or ``abc.npy`` and ``abc.csv``) the match is ambiguous and
the video is rejected as a duplicate by the pipeline; nothing is picked silently.

Two-stream features are two sources read separately and concatenated along the channel
axis (:func:`concat_streams`); their T must be equal.

Errors are :class:`FeatureReadError` with a machine-readable ``reason`` (the dead-letter
reason) and a one-line ``detail`` naming the file.

Long because it reads every feature layout (npy, csv, HDF5, two streams) with its own
rejection reasons.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from typing import Mapping, Sequence

import numpy as np

from tags_tf.data.schema import canonical_video_id as canonical_id  # noqa: F401  (fr.canonical_id)
from tags_tf.data.schema import video_id_variants as candidate_keys

_LOG = logging.getLogger(__name__)

ARRAY_EXTENSIONS = (".npy", ".csv")
H5_EXTENSIONS = (".h5", ".hdf5")

# Dead-letter reasons produced here.
MISSING_FEATURE_FILE = "missing_feature_file"
EMPTY_FILE = "empty_file"
UNREADABLE_FILE = "unreadable_file"
BAD_SHAPE = "bad_shape"
STREAM_LENGTH_MISMATCH = "stream_length_mismatch"


class FeatureReadError(Exception):
    """A feature file could not be turned into a (T, D) array.

    Attributes:
      reason: snake_case dead-letter reason (``empty_file``, ``unreadable_file``, ...).
      detail: one line naming the file and what was expected.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class FeatureRef:
    """Where one video's features live.

    kind: "npy", "csv" or "h5"; path: the file; key: the dataset name inside an h5 file
    ("" otherwise).
    """

    kind: str
    path: str
    key: str = ""

    def describe(self) -> str:
        return f"{self.path}[{self.key}]" if self.key else self.path


def _filesystems():
    # Imported lazily so that plain numpy users of read_array need no Beam.
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _is_local(path: str) -> bool:
    return "://" not in path


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path.rstrip("/")))[0]


def _list_files(spec: str) -> list[str]:
    """Files named by ``spec`` (directory, file or glob), sorted."""
    fs = _filesystems()
    if _is_local(spec) and os.path.isdir(spec):
        return sorted(
            os.path.join(spec, n) for n in os.listdir(spec) if os.path.isfile(os.path.join(spec, n))
        )
    if _is_local(spec) and os.path.isfile(spec):
        return [spec]
    pattern = spec
    if not any(c in spec for c in "*?[") and not _ext(spec):
        pattern = spec.rstrip("/") + "/*"  # a remote "directory"
    try:
        matches = fs.match([pattern])[0].metadata_list
    except Exception as e:  # Beam raises BeamIOError on bad patterns/buckets
        raise FileNotFoundError(f"--features {spec}: cannot list ({e})") from e
    return sorted(m.path for m in matches)


def h5_keys(path: str) -> list[str]:
    """Names of the top-level datasets of an HDF5 file."""
    import h5py

    with _open_h5(path) as f:
        return sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset))


def _open_h5(path: str):
    import h5py

    if _is_local(path):
        return h5py.File(path, "r")
    # h5py reads from any seekable binary file object (Beam's GCS/S3 readers are).
    return h5py.File(_filesystems().open(path), "r")


def index_features(spec: str) -> dict[str, list[FeatureRef]]:
    """Lists a feature source: video key (file stem or h5 dataset name) -> refs.

    A key maps to more than one ref when, e.g., ``abc.npy`` and ``abc.csv`` both exist;
    :func:`lookup` reports that as ambiguous. Files with other extensions are skipped
    (logged once). Raises FileNotFoundError when ``spec`` names nothing.
    """
    files = _list_files(spec)
    if not files:
        raise FileNotFoundError(f"--features {spec}: no files found")
    index: dict[str, list[FeatureRef]] = {}
    skipped = 0
    for path in files:
        ext = _ext(path)
        if ext in ARRAY_EXTENSIONS:
            index.setdefault(_stem(path), []).append(FeatureRef(ext[1:], path))
        elif ext in H5_EXTENSIONS:
            try:
                keys = h5_keys(path)
            except Exception as e:  # h5py raises OSError for non-HDF5 files
                raise FileNotFoundError(f"--features {path}: not a readable HDF5 file ({e})") from e
            for key in keys:
                index.setdefault(key, []).append(FeatureRef("h5", path, key))
        else:
            skipped += 1
    if skipped:
        _LOG.info("%s: skipped %d file(s) that are not .npy/.csv/.h5", spec, skipped)
    return index


def lookup(index: Mapping[str, Sequence[FeatureRef]], video_id: str) -> list[FeatureRef]:
    """All refs of ``index`` that answer for ``video_id`` (0: missing, >1: ambiguous)."""
    refs: list[FeatureRef] = []
    for key in candidate_keys(video_id):
        refs.extend(index.get(key, ()))
    return refs


# ----------------------------------------------------------------------------- reading


def _read_bytes(path: str) -> bytes:
    if _is_local(path):
        with open(path, "rb") as f:
            return f.read()
    with _filesystems().open(path) as f:
        return f.read()


def _parse_csv(data: bytes, path: str) -> np.ndarray:
    """BSN/BMN csv: optional header row, then T rows of D floats -> (T, D) float64."""
    try:
        text = data.decode("utf-8", errors="strict")
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise FeatureReadError(UNREADABLE_FILE, f"{path}: not a text csv ({e})") from e
    if rows:
        try:
            [float(c) for c in rows[0]]
        except ValueError:
            rows = rows[1:]  # header row (BSN writes column names)
    if not rows:
        raise FeatureReadError(EMPTY_FILE, f"{path}: csv has no data rows")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise FeatureReadError(
                UNREADABLE_FILE, f"{path}: csv row {i} has {len(r)} values, expected {width}"
            )
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise FeatureReadError(UNREADABLE_FILE, f"{path}: non-numeric csv value ({e})") from e


def _as_2d(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.size == 0:
        raise FeatureReadError(EMPTY_FILE, f"{where}: array of shape {arr.shape} holds no values")
    if arr.ndim != 2:
        raise FeatureReadError(BAD_SHAPE, f"{where}: expected a (T, D) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise FeatureReadError(BAD_SHAPE, f"{where}: expected real numbers, got dtype {arr.dtype}")
    return arr


class FeatureReader:
    """Reads refs to (T, D) arrays; keeps HDF5 files open between calls.

    Use as a context manager, or call :meth:`close`. One instance per DoFn (created in
    ``setup()``, closed in ``teardown()``); not thread-safe.
    """

    def __init__(self):
        self._h5: dict[str, object] = {}

    def close(self) -> None:
        for f in self._h5.values():
            try:
                f.close()
            except Exception:  # closing is best effort
                pass
        self._h5.clear()

    def __enter__(self) -> "FeatureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, ref: FeatureRef) -> np.ndarray:
        """Returns the (T, D) array of ``ref`` in its stored dtype.

        Raises FeatureReadError: missing file (``missing_feature_file``), zero-byte file
        or array without values (``empty_file``), corrupt content (``unreadable_file``),
        not 2-D (``bad_shape``).
        """
        where = ref.describe()
        if ref.kind == "h5":
            return _as_2d(self._read_h5(ref), where)
        try:
            data = _read_bytes(ref.path)
        except FileNotFoundError as e:
            raise FeatureReadError(MISSING_FEATURE_FILE, f"{where}: file not found") from e
        except OSError as e:
            raise FeatureReadError(UNREADABLE_FILE, f"{where}: {e}") from e
        if not data:
            raise FeatureReadError(EMPTY_FILE, f"{where}: file is empty (0 bytes)")
        if ref.kind == "csv":
            return _as_2d(_parse_csv(data, where), where)
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # ValueError/EOFError/UnpicklingError for corrupt files
            raise FeatureReadError(UNREADABLE_FILE, f"{where}: not a readable .npy ({e})") from e
        if not isinstance(arr, np.ndarray):
            raise FeatureReadError(BAD_SHAPE, f"{where}: expected one array, got {type(arr).__name__}")
        return _as_2d(arr, where)

    def _file(self, path: str):
        if path not in self._h5:
            try:
                self._h5[path] = _open_h5(path)
            except FileNotFoundError as e:
                raise FeatureReadError(MISSING_FEATURE_FILE, f"{path}: file not found") from e
            except Exception as e:
                raise FeatureReadError(UNREADABLE_FILE, f"{path}: not a readable HDF5 file ({e})") from e
        return self._h5[path]

    def _read_h5(self, ref: FeatureRef) -> np.ndarray:
        f = self._file(ref.path)
        if ref.key not in f:
            raise FeatureReadError(MISSING_FEATURE_FILE, f"{ref.describe()}: no such dataset")
        try:
            return np.asarray(f[ref.key][()])
        except Exception as e:
            raise FeatureReadError(UNREADABLE_FILE, f"{ref.describe()}: {e}") from e

    def peek_dim(self, ref: FeatureRef) -> int | None:
        """D of ``ref`` from the file header only (None when it cannot be told cheaply).

        Used to vote on the expected feature dim before the full read.
        """
        try:
            if ref.kind == "h5":
                shape = self._file(ref.path)[ref.key].shape
            elif ref.kind == "npy":
                shape = _npy_shape(ref.path)
            else:
                shape = (None, _csv_width(ref.path))
        except Exception:  # unreadable files are rejected by the full read later
            return None
        if len(shape) != 2 or not shape[1]:
            return None
        return int(shape[1])


def _npy_shape(path: str) -> tuple:
    opener = open if _is_local(path) else _filesystems().open
    with opener(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(f)
    return shape


def _csv_width(path: str) -> int:
    opener = open if _is_local(path) else _filesystems().open
    with opener(path, "rb") as f:
        line = f.readline(1 << 20).decode("utf-8")
    return len(next(csv.reader([line]))) if line.strip() else 0


def concat_streams(streams: Sequence[np.ndarray], where: str) -> np.ndarray:
    """Concatenates two-stream features (T, D1), (T, D2) -> (T, D1 + D2).

    Raises FeatureReadError(``stream_length_mismatch``) when the T differ; no stream is
    cropped or resampled to make them fit.
    """
    lengths = [s.shape[0] for s in streams]
    if len(set(lengths)) > 1:
        raise FeatureReadError(
            STREAM_LENGTH_MISMATCH, f"{where}: streams have T = {lengths}, expected equal T"
        )
    # [(T, D_i)] -> (T, sum D_i), channels last.
    return np.concatenate([np.asarray(s, np.float64) for s in streams], axis=1)


def read_array(path: str) -> np.ndarray:
    """Convenience: reads one .npy/.csv file to (T, D) (raises FeatureReadError)."""
    ext = _ext(path)
    if ext not in ARRAY_EXTENSIONS:
        raise FeatureReadError(UNREADABLE_FILE, f"{path}: expected a .npy or .csv file")
    with FeatureReader() as reader:
        return reader.read(FeatureRef(ext[1:], path))

