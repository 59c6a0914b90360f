"""Temporal action annotations: one in-memory form for every public file layout.

Pure Python (json/csv/math only). No TensorFlow, no numpy, so the evaluator, the
Beam pipelines and the plotting code can import it cheaply.

Files of every public layout are read by
:func:`tags_tf.data.annotation_files.load_annotations`.

Segments are kept exactly as written: zero-length segments and segments ending after
the video duration exist in the real files and the official evaluator keeps them, so
clipping is left to the consumer.

One policy for bad input, per video (every layout; ``beam.build_shards`` applies it):

* a *file* that cannot be read, is not valid JSON, or has no recognizable layout raises
  :class:`AnnotationError` with a one-line message naming the file;
* a bad *segment* (end < start, a non-numeric or non-finite value, a missing
  ``segment``/``label``, a key listed twice) is left out of ``instances`` and described
  in :attr:`VideoAnnotation.bad_segments`; a consumer drops and counts it, or rejects
  the video (``build_shards --reject_bad_segments``);
* a bad *video* (an entry that is not an object, no ``subset``, a non-numeric
  duration or fps, ``annotations`` not a list, an id listed twice) keeps no instances
  and carries :attr:`VideoAnnotation.problem` = ``(reason, detail)``; consumers
  reject it (build_shards' ``rejected.jsonl``) or leave it out with a warning
  (:meth:`AnnotationSet.usable`).

:func:`~tags_tf.data.annotation_files.load_annotations` logs one warning summing up both kinds, so nothing is lost
silently.

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

FORMATS = ("auto", "activitynet", "actionformer", "gtad", "bsn")


class AnnotationError(ValueError):
    """A ground-truth file is missing, unreadable or malformed (one-line message)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One labelled action: ``[start, end]`` in seconds and its class name."""

    start: float
    end: float
    label: str

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class VideoAnnotation:
    """All ground-truth instances of one video.

    ``duration`` (seconds) and ``fps`` are ``None`` when the file does not give them.
    ``instances`` keeps the file order (the official evaluator's GT order).
    ``bad_segments``: one-line descriptions of the entries left out of ``instances``.
    ``problem``: ``(reason, detail)`` when the video's entry is unusable as a whole
    (then ``instances`` is empty); see the module docstring for the policy.
    """

    video_id: str
    subset: str
    duration: float | None
    fps: float | None
    instances: tuple[Instance, ...]
    bad_segments: tuple[str, ...] = ()
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class AnnotationSet:
    """Videos of one annotation file (possibly filtered to some subsets).

    ``class_names`` is the sorted tuple of every label in the *file* (kept by
    :meth:`subset`, so class ids stay stable between training and validation);
    class id ``i`` is ``class_names[i]``.
    """

    videos: dict[str, VideoAnnotation]
    class_names: tuple[str, ...]
    source: str = ""
    fmt: str = ""
    _available_subsets: tuple[str, ...] = field(default=(), repr=False)

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def subsets(self) -> tuple[str, ...]:
        """Subset names as spelled in the file (all of the file, sorted)."""
        if self._available_subsets:
            return self._available_subsets
        return tuple(sorted({v.subset for v in self.videos.values()}))

    @property
    def num_instances(self) -> int:
        return sum(len(v.instances) for v in self.videos.values())

    @classmethod
    def from_arrays(cls, per_video: Mapping[str, Any], class_names: Iterable[str],
                    subset: str = "validation", source: str = "<arrays>") -> "AnnotationSet":
        """Ground truth from arrays, e.g. what a validation input pipeline yields.

        ``per_video``: ``{video_id: (segments (N, 2) seconds, class_ids (N,))}`` or
        ``{video_id: (segments, class_ids, duration)}``; sequences or numpy arrays.
        ``class_names`` maps class ids to names and is kept in the given order (so the
        ids stay valid even if it is not sorted).
        """
        names = tuple(class_names)
        videos = {}
        for vid, item in per_video.items():
            segments, class_ids = item[0], item[1]
            duration = float(item[2]) if len(item) > 2 and item[2] is not None else None
            segments = segments.tolist() if hasattr(segments, "tolist") else list(segments)
            class_ids = class_ids.tolist() if hasattr(class_ids, "tolist") else list(class_ids)
            if len(segments) != len(class_ids):
                raise AnnotationError(f"{source}: video {vid!r}: {len(segments)} segments but "
                                      f"{len(class_ids)} class ids")
            instances = []
            for (start, end), cid in zip(segments, class_ids):
                if not 0 <= int(cid) < len(names):
                    raise AnnotationError(f"{source}: video {vid!r}: class id {cid} outside "
                                          f"[0, {len(names)})")
                if not (math.isfinite(start) and math.isfinite(end)) or end < start:
                    raise AnnotationError(f"{source}: video {vid!r}: bad segment {[start, end]}")
                instances.append(Instance(float(start), float(end), names[int(cid)]))
            vid = vid.decode() if isinstance(vid, bytes) else str(vid)
            videos[vid] = VideoAnnotation(vid, subset, duration, None, tuple(instances))
        return cls(videos, names, source, "arrays", (subset,))

    def problems(self) -> list[tuple[str, str, str, str]]:
        """``(video_id, subset, reason, detail)`` of every video with a ``problem``."""
        return [(v.video_id, v.subset, *v.problem) for v in self.videos.values() if v.problem]

    @property
    def num_bad_segments(self) -> int:
        return sum(len(v.bad_segments) for v in self.videos.values())

    def usable(self) -> "AnnotationSet":
        """The videos without a ``problem`` (bad segments are already left out)."""
        videos = {k: v for k, v in self.videos.items() if v.problem is None}
        return AnnotationSet(videos, self.class_names, self.source, self.fmt, self._available_subsets)

    def class_index(self) -> dict[str, int]:
        """``{class_name: class_id}`` following ``class_names``."""
        return {name: i for i, name in enumerate(self.class_names)}

    def subset(self, names: str | Iterable[str]) -> "AnnotationSet":
        """Videos whose subset matches ``names`` (case-insensitive).

        Raises AnnotationError("wrong subset name ...") listing the available subsets
        when a requested name matches no video.
        """
        wanted = [names] if isinstance(names, str) else list(names)
        available = self.subsets
        lower = {s.lower() for s in available}
        for name in wanted:
            if str(name).lower() not in lower:
                raise AnnotationError(
                    f"{self.source or '<annotations>'}: wrong subset name {name!r}; "
                    f"available subsets: {', '.join(available) or '(none)'}"
                )
        keep = {str(n).lower() for n in wanted}
        videos = {k: v for k, v in self.videos.items() if v.subset.lower() in keep}
        return AnnotationSet(videos, self.class_names, self.source, self.fmt, available)


