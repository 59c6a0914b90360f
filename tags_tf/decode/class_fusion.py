"""External video-level classifier scores for class fusion (numpy/json only, no TensorFlow).

ActivityNet detectors usually label their (class-agnostic) segments with a separate
video classifier. This module reads such scores into ``{video_id: (K,) float32}`` in the
order of ``class_names``; ``DetectionDecoder(class_fusion="external")`` consumes a
``(B, K)`` batch of them (see tags_tf/decode/ for the fusion rule).

Accepted files (JSON):
- top-1 per video, as TAGS' ``tags_best_score.json``:
  ``{video_id: {"class": name, "score": s}}`` -> ``s`` at ``name``, 0 elsewhere;
- top-k per video: ``{video_id: {"classes": [names], "scores": [s]}}``, or
  ``{video_id: {name: s, ...}}``;
- a score table: ``{video_id: [K scores in class_names order]}``, or the CUHK layout
  used by BSN/BMN/G-TAD, ``{"class": [K names], "results": {video_id: [K scores]}}``.
Scores must be finite and >= 0. Errors are one line, naming the file and the problem.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tags_tf.data.jsonio import read_json
from tags_tf.data.schema import alternate_video_id


class ExternalScoresError(ValueError):
    """An external score file is missing, malformed or does not match the classes."""


def _score(path: Path, vid: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ExternalScoresError(f"{path}: video {vid!r}: score {value!r} is not a finite number >= 0")
    return float(value)


def _class_index(path: Path, vid: str, name: Any, index: Mapping[str, int]) -> int:
    if name not in index:
        raise ExternalScoresError(f"{path}: video {vid!r}: unknown class {name!r} (not among the {len(index)} class names)")
    return index[name]


def _table_row(path: Path, vid: str, row: Sequence[Any], order: Sequence[int], k: int) -> np.ndarray:
    if len(row) != len(order):
        raise ExternalScoresError(f"{path}: video {vid!r}: {len(row)} scores, expected {len(order)}")
    vec = np.zeros(k, np.float32)
    for j, value in zip(order, row):
        vec[j] = _score(path, vid, value)
    return vec


def _entry(path: Path, vid: str, entry: Any, index: Mapping[str, int]) -> np.ndarray:
    k = len(index)
    if isinstance(entry, list):
        return _table_row(path, vid, entry, range(k), k)
    if not isinstance(entry, dict):
        raise ExternalScoresError(f"{path}: video {vid!r}: expected an object or a list of {k} scores, got {type(entry).__name__}")
    vec = np.zeros(k, np.float32)
    if "class" in entry or "score" in entry:
        if "class" not in entry or "score" not in entry:
            raise ExternalScoresError(f"{path}: video {vid!r}: needs both 'class' and 'score'")
        vec[_class_index(path, vid, entry["class"], index)] = _score(path, vid, entry["score"])
        return vec
    if "classes" in entry or "scores" in entry:
        names, scores = entry.get("classes"), entry.get("scores")
        if not isinstance(names, list) or not isinstance(scores, list) or len(names) != len(scores):
            raise ExternalScoresError(f"{path}: video {vid!r}: 'classes' and 'scores' must be lists of equal length")
        pairs: Iterable[tuple[Any, Any]] = zip(names, scores)
    else:
        pairs = entry.items()
    for name, value in pairs:
        vec[_class_index(path, vid, name, index)] = _score(path, vid, value)
    return vec


def load_external_scores(path: str | Path, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads a video-level classifier file (formats in the module docstring).

    Args:
      path: JSON file.
      class_names: the K class names; output vectors follow this order.

    Returns:
      ``{video_id: (K,) float32}`` with video ids exactly as in the file.
    """
    path = Path(path)
    index = {name: i for i, name in enumerate(class_names)}
    if len(index) != len(class_names) or not index:
        raise ExternalScoresError(f"{path}: class_names must be non-empty and distinct")
    if not path.is_file():
        raise ExternalScoresError(f"{path}: no such file")
    data = read_json(path, ExternalScoresError)  # one-line errors; a video listed twice is one
    if not isinstance(data, dict):
        raise ExternalScoresError(f"{path}: expected a JSON object mapping video ids to scores")
    if "results" in data and "class" in data and isinstance(data["class"], list):
        names = data["class"]
        order = [_class_index(path, "<header>", name, index) for name in names]
        if len(set(order)) != len(order):
            raise ExternalScoresError(f"{path}: 'class' lists a class twice")
        results = data["results"]
        if not isinstance(results, dict):
            raise ExternalScoresError(f"{path}: 'results' must map video ids to lists of scores")
        out = {}
        for vid, row in results.items():
            if not isinstance(row, list):
                raise ExternalScoresError(f"{path}: video {vid!r}: expected a list of {len(order)} scores")
            out[vid] = _table_row(path, vid, row, order, len(index))
        return out
    return {vid: _entry(path, vid, entry, index) for vid, entry in data.items()}


def external_scores_batch(table: Mapping[str, np.ndarray], video_ids: Sequence[str], source: str = "external scores") -> np.ndarray:
    """Stacks the rows of ``video_ids`` into (B, K) float32.

    A video id is also looked up with and without ActivityNet's ``v_`` prefix, so
    tables keyed ``v_<youtube id>`` serve annotations keyed by the bare id and back.
    """
    rows = []
    for vid in video_ids:
        row = table.get(vid)
        if row is None:
            row = table.get(alternate_video_id(vid))
        if row is None:
            raise ExternalScoresError(f"{source}: no scores for video {vid!r}")
        rows.append(row)
    if not rows:
        raise ExternalScoresError(f"{source}: no video ids given")
    return np.stack(rows).astype(np.float32)
