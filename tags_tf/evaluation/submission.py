"""Writing detection results files in the ActivityNet submission format.

``{"version": str, "results": {video_id: [{"label": str, "score": float,
"segment": [start, end]}]}, "external_data": {...}}``, segments in seconds.

:func:`write_submission` is the one writer (validated, atomic); :class:`ResultsWriter`
collects per-video numpy outputs (optionally padded, with a valid count, or the
``{video_id: arrays}`` of :func:`~tags_tf.evaluation.inference.detect_dataset`) and
writes through it. Reading: :mod:`tags_tf.evaluation.results_reader`. Pure Python +
numpy; no TensorFlow.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tags_tf.data.jsonio import write_json
from tags_tf.evaluation.detections import DEFAULT_VERSION, Detections, ResultsError, _check_video_arrays, result_entry
from tags_tf.evaluation.results_reader import parse_results

logger = logging.getLogger(__name__)


def write_submission(path: str | os.PathLike, results: Mapping[str, Any],
                     version: str = DEFAULT_VERSION,
                     external_data: Mapping[str, Any] | None = None, validate: bool = True) -> None:
    """Validates (unless the rows were checked as they were added: ``validate=False``) and
    writes a submission file atomically: the one submission writer.

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
    if validate:
        parse_results(obj, source=path)  # validation only
    write_json(path, obj, sort_keys=False, allow_nan=False)
    logger.info("Wrote %d detections for %d videos to %s",
                sum(len(v) for v in obj["results"].values()), len(obj["results"]), path)


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

    def add_detections(self, detections: Mapping[str, Mapping[str, Any]]) -> "ResultsWriter":
        """Adds ``{video_id: {"segments", "scores", "classes"}}`` (the arrays of
        :func:`~tags_tf.evaluation.inference.detect_dataset`); returns the writer."""
        for vid, d in detections.items():
            self.add(vid, d["segments"], d["scores"], d["classes"])
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "results": self._results,
                "external_data": self.external_data}

    def detections(self) -> Detections:
        """The collected rows as Detections (for in-process evaluation)."""
        return parse_results(self.to_dict(), source="<ResultsWriter>")

    def write(self, path: str | os.PathLike) -> None:
        """Writes the file atomically (temp file + rename)."""
        write_submission(path, self.to_dict(), validate=False)  # rows were checked by add
