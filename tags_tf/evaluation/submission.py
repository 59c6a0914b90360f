"""Detection result files in the ActivityNet submission format.

``{"version": str, "results": {video_id: [{"label": str, "score": float,
"segment": [start, end]}]}, "external_data": {...}}``, segments in seconds.

* :func:`read_results` / :func:`parse_results` validate a file or a decoded object and
  return flat :class:`Detections` columns (what the evaluator and plots consume).
* :class:`ResultsWriter` collects per-video numpy outputs of the post-processing
  (optionally padded, with a valid count) and writes the file;
  :meth:`Detections.from_arrays` builds the columns from the same arrays in memory (no
  entries, no rounding: what :class:`tags_tf.evaluation.evaluator.Evaluator` scores), with the
  writer's checks; :func:`write_submission` writes an already-built results mapping.

Pure Python + numpy; no TensorFlow.

Long because it reads, validates, writes and converts one file format.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tags_tf.data.jsonio import read_json, write_json
from tags_tf.data import schema


logger = logging.getLogger(__name__)

DEFAULT_VERSION = "VERSION 1.3"
_NUMBER_TYPES = (int, float, np.integer, np.floating)


def result_entry(label: str, score: float, start: float, end: float) -> dict[str, Any]:
    """One detection as the ActivityNet submission format writes it."""
    return {"label": label, "score": score, "segment": [start, end]}


def unpad_detections(outputs: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Padded decoder / ``detect`` outputs (``tags_tf.data.schema.DETECTION_OUTPUTS``, B videos)
    -> ``(segments (n, 2), scores (n,), classes (n,))`` of each video, n = its
    ``num_detections``; dtypes as given."""
    counts = np.asarray(outputs[schema.NUM_DETECTIONS]).reshape(-1)
    segments, scores, classes = (np.asarray(outputs[k]) for k in schema.DETECTION_OUTPUTS[:3])
    return [(segments[b, :n], scores[b, :n], classes[b, :n]) for b, n in enumerate(counts.tolist())]


class ResultsError(ValueError):
    """A results file or writer input is malformed (one-line message naming the file)."""


def _check_video_arrays(where: str, segments: Any, scores: Any, class_ids: Any, count: int | None = None,
                       *, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One video's detection arrays, checked and cut to ``count`` rows.

    Args:
      where: names the caller and the video in the error message.
      segments: (N, 2) [start, end] seconds. scores: (N,). class_ids: (N,) ints in
        [0, num_classes).
      count: number of valid leading rows (post-processing pads to a fixed N); ``None``
        keeps all rows.
    Returns:
      segments (n, 2) float64, scores (n,) float64, class_ids (n,) as given.
    Raises:
      ResultsError on shape mismatches, a count outside [0, N], bad class ids,
      non-finite values or end < start.
    """
    segments = np.asarray(segments, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    class_ids = np.asarray(class_ids)
    if segments.ndim != 2 or segments.shape[1:] != (2,):
        raise ResultsError(f"{where}: segments must have shape (N, 2), got {segments.shape}")
    n = segments.shape[0]
    if scores.shape != (n,) or class_ids.shape != (n,):
        raise ResultsError(f"{where}: expected scores and class_ids of shape ({n},), got "
                           f"{scores.shape} and {class_ids.shape}")
    if count is not None:
        count = int(count)
        if not 0 <= count <= n:
            raise ResultsError(f"{where}: count {count} outside [0, {n}]")
        segments, scores, class_ids = segments[:count], scores[:count], class_ids[:count]
    if class_ids.size and (not np.issubdtype(class_ids.dtype, np.integer)
                           or class_ids.min() < 0 or class_ids.max() >= num_classes):
        raise ResultsError(f"{where}: class ids must be integers in [0, {num_classes}), "
                           f"got {class_ids.tolist()}")
    if not (np.isfinite(segments).all() and np.isfinite(scores).all()):
        raise ResultsError(f"{where}: segments and scores must be finite")
    if (segments[:, 1] < segments[:, 0]).any():
        raise ResultsError(f"{where}: segment end < start")
    return segments, scores, class_ids


@dataclass(frozen=True)
class Detections:
    """All predictions of one results file, as flat columns (N = number of predictions).

    Attributes:
      video_ids: (N,) object array of str.
      labels: (N,) object array of str (class names).
      segments: (N, 2) float64, [start, end] in seconds.
      scores: (N,) float64.
      source: file the detections came from ("" when built in memory).
      version, external_data: the file's metadata, passed through.
    """

    video_ids: np.ndarray
    labels: np.ndarray
    segments: np.ndarray
    scores: np.ndarray
    source: str = ""
    version: str = DEFAULT_VERSION
    external_data: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_videos(self) -> int:
        return len(set(self.video_ids.tolist()))

    def for_video(self, video_id: str) -> "Detections":
        """The rows of one video, in file order."""
        keep = self.video_ids == video_id
        return Detections(self.video_ids[keep], self.labels[keep], self.segments[keep],
                          self.scores[keep], self.source, self.version, self.external_data)

    @classmethod
    def from_arrays(cls, per_video: Mapping[str, Any], class_names: Sequence[str]) -> "Detections":
        """Detections from numpy outputs: ``{video_id: {"segments": (N, 2), "scores": (N,),
        "classes": (N,), optional "count": int}}`` (or 3/4-tuples in that order).

        The columns are the arrays themselves (float64), videos in mapping order and rows
        in array order; class ids become ``class_names[id]``. Raises ResultsError as
        :meth:`ResultsWriter.add` does."""
        names = np.array(list(class_names), dtype=object)  # (K,) str
        video_ids, labels, segments, scores = [], [], [], []
        for vid, item in per_video.items():
            if isinstance(item, Mapping):
                item = (item["segments"], item["scores"], item["classes"], item.get("count"))
            seg, score, cid = _check_video_arrays(f"Detections.from_arrays({vid!r})", *item,
                                                 num_classes=len(names))
            video_ids.append(np.full(score.shape, str(vid), dtype=object))
            labels.append(names[cid.astype(np.int64)])  # (n,) str
            segments.append(seg)
            scores.append(score)
        if not scores:
            return cls.empty()
        return cls(np.concatenate(video_ids), np.concatenate(labels), np.concatenate(segments),
                   np.concatenate(scores))

    @classmethod
    def empty(cls, source: str = "") -> "Detections":
        return cls(np.zeros((0,), object), np.zeros((0,), object), np.zeros((0, 2)),
                   np.zeros((0,)), source)

    def to_dict(self) -> dict[str, Any]:
        """The submission-format object (videos and rows in their current order)."""
        results: dict[str, list] = {}
        for vid, label, (start, end), score in zip(
                self.video_ids.tolist(), self.labels.tolist(), self.segments.tolist(),
                self.scores.tolist()):
            results.setdefault(vid, []).append(result_entry(label, score, start, end))
        return {"version": self.version, "results": results,
                "external_data": dict(self.external_data)}


def read_results(path: str | os.PathLike, allow_reversed: bool = False) -> Detections:
    """Reads and validates a results file (see :func:`parse_results`)."""
    path = os.fspath(path)
    data = read_json(path, ResultsError)
    return parse_results(data, source=path, allow_reversed=allow_reversed)


def parse_results(data: Any, source: str = "<results>", allow_reversed: bool = False) -> Detections:
    """Validates a decoded submission object and returns its Detections.

    Errors (ResultsError, one line naming ``source``, the video and the entry): not an
    object, missing ``results``, a video whose value is not a list, an entry missing
    ``label``/``score``/``segment``, a non-string label, a non-numeric, NaN or infinite
    score or segment, and ``end < start`` unless ``allow_reversed`` (the official
    evaluator accepts reversed segments and they always score as false positives).
    Missing ``version``/``external_data`` only log a warning (they do not affect scores).
    """
    if not isinstance(data, dict):
        raise ResultsError(f"{source}: expected a JSON object with 'results', got {type(data).__name__}")
    if "results" not in data:
        raise ResultsError(f"{source}: missing key 'results' (expected the ActivityNet format "
                           "{'version', 'results': {video_id: [...]}, 'external_data'})")
    missing = [k for k in ("version", "external_data") if k not in data]
    if missing:
        logger.warning("%s: missing key(s) %s (not needed for scoring)", source, missing)
    results = data["results"]
    if not isinstance(results, dict):
        raise ResultsError(f"{source}: 'results' must be an object {{video_id: [predictions]}}, "
                           f"got {type(results).__name__}")
    video_ids, labels, scores, segments = [], [], [], []
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise ResultsError(f"{source}: video {vid!r}: expected a list of predictions, "
                               f"got {type(entries).__name__}")
        try:
            for entry in entries:
                labels.append(entry["label"])
                scores.append(entry["score"])
                segments.append(entry["segment"])
        except (KeyError, TypeError):
            _raise_entry_error(source, vid, entries)
        video_ids.extend([vid] * len(entries))
    det = _columns(source, video_ids, labels, scores, segments, allow_reversed)
    version = data.get("version", DEFAULT_VERSION)
    external = data.get("external_data") or {}
    return Detections(det[0], det[1], det[2], det[3], source,
                      str(version), external if isinstance(external, dict) else {})


def _locate(video_ids: list, row: int) -> str:
    """'video X entry i' for flat row ``row``."""
    vid = video_ids[row]
    first = video_ids.index(vid)
    return f"video {vid!r} entry {row - first}"


def _raise_entry_error(source: str, vid: str, entries: list) -> None:
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ResultsError(f"{source}: video {vid!r} entry {i}: expected an object with "
                               f"'label', 'score', 'segment', got {type(entry).__name__}")
        for key in ("label", "score", "segment"):
            if key not in entry:
                raise ResultsError(f"{source}: video {vid!r} entry {i}: missing key {key!r}")
    raise ResultsError(f"{source}: video {vid!r}: malformed predictions")  # pragma: no cover


_FAST = (int, float)  # exact types of json-decoded numbers


def _short(value, limit: int = 60) -> str:
    """repr of a value, cut for a one-line message (e.g. a 400-digit integer)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _floats(values: list, source: str, video_ids: list, what: str) -> np.ndarray:
    """float64 array of already type-checked numbers; an integer too large for a float
    (e.g. 400 digits) is a ResultsError naming the entry, not an OverflowError."""
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:
        for row, value in enumerate(values):
            try:
                np.asarray(value, dtype=np.float64)
            except OverflowError:
                raise ResultsError(f"{source}: {_locate(video_ids, row)}: '{what}' must be a "
                                   f"finite number, got {_short(value)}") from None
        raise  # pragma: no cover


def _columns(source, video_ids, labels, scores, segments, allow_reversed):
    n = len(labels)
    for row, label in enumerate(labels):
        if type(label) is not str:  # noqa: E721 - exact type check is the fast path
            raise ResultsError(f"{source}: {_locate(video_ids, row)}: 'label' must be "
                               f"a string, got {label!r}")
    for row, score in enumerate(scores):
        if isinstance(score, bool) or not isinstance(score, _NUMBER_TYPES):
            raise ResultsError(f"{source}: {_locate(video_ids, row)}: 'score' must be "
                               f"a number, got {_short(score)}")
    score_arr = _floats(scores, source, video_ids, "score").reshape(n)
    bad = np.flatnonzero(~np.isfinite(score_arr))
    if bad.size:
        row = int(bad[0])
        raise ResultsError(f"{source}: {_locate(video_ids, row)}: 'score' must be "
                           f"finite, got {_short(scores[row])}")
    for row, seg in enumerate(segments):  # numbers only, like 'score' (no "12.5" strings)
        if type(seg) is list and len(seg) == 2 and type(seg[0]) in _FAST and type(seg[1]) in _FAST:
            continue
        ok = isinstance(seg, (list, tuple)) and len(seg) == 2 and all(
            isinstance(v, _NUMBER_TYPES) and not isinstance(v, bool) for v in seg)
        if not ok:
            raise ResultsError(f"{source}: {_locate(video_ids, row)}: 'segment' must "
                               f"be [start, end] numbers, got {_short(seg)}")
    seg_arr = _floats(segments, source, video_ids, "segment").reshape(n, 2)
    bad = np.flatnonzero(~np.isfinite(seg_arr).all(axis=1))
    if bad.size:
        row = int(bad[0])
        raise ResultsError(f"{source}: {_locate(video_ids, row)}: 'segment' must be "
                           f"finite, got {_short(segments[row])}")
    reversed_rows = np.flatnonzero(seg_arr[:, 1] < seg_arr[:, 0])
    if reversed_rows.size:
        row = int(reversed_rows[0])
        if not allow_reversed:
            raise ResultsError(
                f"{source}: {_locate(video_ids, row)}: segment end {seg_arr[row, 1]} < "
                f"start {seg_arr[row, 0]} ({reversed_rows.size} such prediction(s); "
                "allow_reversed / --allow-reversed scores them as false positives like the "
                "official evaluator)")
        logger.warning("%s: %d prediction(s) with end < start (first: %s); scored as false "
                       "positives like the official evaluator", source, reversed_rows.size,
                       _locate(video_ids, row))
    vid_arr = np.array(video_ids, dtype=object).reshape(n)
    label_arr = np.array(labels, dtype=object).reshape(n)
    return vid_arr, label_arr, seg_arr, score_arr


def write_submission(path: str | os.PathLike, results: Mapping[str, Any],
                     version: str = DEFAULT_VERSION,
                     external_data: Mapping[str, Any] | None = None) -> None:
    """Validates and writes a submission file atomically.

    ``results`` is either the full object (with a ``"results"`` key) or just the
    ``{video_id: [{"label", "score", "segment"}]}`` mapping, which is then wrapped with
    ``version`` and ``external_data``. Raises ResultsError on malformed entries.
    """
    path = os.fspath(path)
    if "results" in results and isinstance(results["results"], Mapping):
        obj = dict(results)
        obj.setdefault("version", version)
        obj.setdefault("external_data", dict(external_data or {"used": False, "details": ""}))
    else:
        obj = {"version": version, "results": dict(results),
               "external_data": dict(external_data or {"used": False, "details": ""})}
    parse_results(obj, source=path)  # validation only
    write_json(path, obj, sort_keys=False, allow_nan=False)
    logger.info("Wrote submission for %d videos to %s", len(obj["results"]), path)


class ResultsWriter:
    """Collects per-video detections from numpy arrays and writes a submission file.

    Example::

        writer = ResultsWriter(class_names)
        writer.add("vid1", segments, scores, class_ids, count=n)  # (N,2), (N,), (N,)
        writer.write("results.json")
    """

    def __init__(self, class_names: Sequence[str], version: str = DEFAULT_VERSION,
                 external_data: Mapping[str, Any] | None = None, segment_decimals: int = 6):
        self.class_names = tuple(class_names)
        self.version = version
        self.external_data = dict(external_data or {"used": False, "details": ""})
        self.segment_decimals = segment_decimals
        self._results: dict[str, list[dict[str, Any]]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._results.values())

    def add(self, video_id: str, segments: Any, scores: Any, class_ids: Any,
            count: int | None = None) -> None:
        """Adds one video's detections.

        Args:
          video_id: the video key written to the file.
          segments: (N, 2) [start, end] seconds.
          scores: (N,) detection scores.
          class_ids: (N,) int indices into ``class_names``.
          count: number of valid leading rows (post-processing pads to a fixed N);
            ``None`` keeps all rows.
        Raises ResultsError on shape mismatches, bad class ids, non-finite values or
        end < start. Adding the same video twice appends.
        """
        segments, scores, class_ids = _check_video_arrays(
            f"ResultsWriter.add({video_id!r})", segments, scores, class_ids, count,
            num_classes=len(self.class_names))
        rounded = np.round(segments, self.segment_decimals).tolist()
        entries = self._results.setdefault(str(video_id), [])
        names = self.class_names
        for (start, end), score, cid in zip(rounded, scores.tolist(), class_ids.tolist()):
            entries.append(result_entry(names[cid], score, start, end))

    def add_batch(self, video_ids: Iterable[str], segments: Any, scores: Any, class_ids: Any,
                  counts: Any = None) -> None:
        """Adds a padded batch: segments (B, N, 2), scores (B, N), class_ids (B, N), counts (B,)."""
        video_ids = [v.decode() if isinstance(v, bytes) else str(v) for v in video_ids]
        segments, scores, class_ids = np.asarray(segments), np.asarray(scores), np.asarray(class_ids)
        counts = [None] * len(video_ids) if counts is None else np.asarray(counts).tolist()
        if not (len(video_ids) == segments.shape[0] == scores.shape[0] == class_ids.shape[0]
                == len(counts)):
            raise ResultsError("ResultsWriter.add_batch: batch sizes of video_ids, segments, "
                               "scores, class_ids and counts differ")
        for b, vid in enumerate(video_ids):
            self.add(vid, segments[b], scores[b], class_ids[b], counts[b])

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "results": self._results,
                "external_data": self.external_data}

    def detections(self) -> Detections:
        """The collected rows as Detections (for in-process evaluation)."""
        return parse_results(self.to_dict(), source="<ResultsWriter>")

    def write(self, path: str | os.PathLike) -> None:
        """Writes the file atomically (temp file + rename)."""
        path = os.fspath(path)
        write_json(path, self.to_dict(), sort_keys=False, allow_nan=False)
        logger.info("Wrote %d detections for %d videos to %s", len(self), len(self._results), path)
