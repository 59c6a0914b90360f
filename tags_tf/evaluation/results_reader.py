"""Reading a detection results file (ActivityNet submission format) into
:class:`~tags_tf.evaluation.detections.Detections`, with one-line errors naming the file,
the video and the entry. Pure Python + numpy; no TensorFlow."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from tags_tf.data.jsonio import read_json
from tags_tf.evaluation.detections import _NUMBER_TYPES, DEFAULT_VERSION, Detections, ResultsError

logger = logging.getLogger(__name__)


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
