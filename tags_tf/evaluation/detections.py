"""Detections: the one form of scored segments, from ``detect`` to the written file.

* :func:`unpad_detections`: padded decoder / ``detect`` outputs -> each video's arrays,
  ``{video_id: {"segments" (n, 2) s, "scores" (n,), "classes" (n,)}}`` (what
  ``tags_tf.evaluation.inference.detect_dataset`` returns and the evaluator scores);
* :class:`Detections`: the same as flat columns with class names (what the evaluator
  and the plots consume; :meth:`Detections.from_arrays` builds it from the arrays with
  the writer's checks, :func:`tags_tf.evaluation.results_reader.parse_results` from a file);
* :func:`result_entry`: one detection in the ActivityNet submission format.

Pure Python + numpy; no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from tags_tf.data import schema

DEFAULT_VERSION = "VERSION 1.3"  # the submission format's


_NUMBER_TYPES = (int, float, np.integer, np.floating)


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


def result_entry(label: str, score: float, start: float, end: float) -> dict[str, Any]:
    """One detection as the ActivityNet submission format writes it."""
    return {"label": label, "score": score, "segment": [start, end]}
