"""The segment policy of both Beam jobs, with a record of every change.

A ground-truth segment is clipped to ``[0, duration]`` (``clipped``, the video kept); a
segment with ``end <= start`` after clipping (zero-length, reversed, or wholly outside
the video) or one the annotation reader left out as malformed
(``VideoAnnotation.bad_segments``) is ``dropped``. Each change is one entry of
:attr:`CleanSegments.log`, written to ``segments.jsonl`` beside ``manifest.json``
(``tags_tf.data.schema.SEGMENT_LOG_NAME``): the video, its subset, what happened, why,
the segment as annotated and, when clipped, as written.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

CLIPPED, DROPPED = "clipped", "dropped"
# Reasons of the entries.
OUTSIDE_VIDEO = "outside_video"  # clipped: the segment reaches outside [0, duration]
EMPTY_AFTER_CLIP = "empty_after_clip"  # dropped: end <= start once clipped to [0, duration]
MALFORMED = "malformed_annotation"  # dropped: the annotation reader could not use the entry


@dataclasses.dataclass(frozen=True)
class CleanSegments:
    """Result of :func:`clean_segments`: kept (N, 2) segments in seconds + labels, and
    the log of what was clipped or dropped."""

    segments: np.ndarray  # (N, 2) float64, 0 <= start < end <= duration
    labels: tuple[str, ...]  # (N,)
    clipped: int
    dropped: int
    log: tuple[dict, ...] = ()


def clean_segments(instances: Iterable, duration: float, video_id: str = "", subset: str = "",
                   unreadable: Iterable[str] = ()) -> CleanSegments:
    """Clips ``instances`` (objects with .start, .end, .label) to [0, duration].

    A segment that still has end <= start is dropped; a segment changed by the clip is
    clipped; each ``unreadable`` description (the reader's ``bad_segments``) is dropped
    too. Every change is an entry of ``log`` naming ``video_id`` and ``subset``.
    """
    kept, labels, log = [], [], []
    where = {"video_id": video_id, "subset": subset}
    for text in unreadable:
        log.append({**where, "action": DROPPED, "reason": MALFORMED, "detail": text})
    for inst in instances:
        start, end = float(inst.start), float(inst.end)
        cs, ce = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
        entry = {**where, "label": inst.label, "segment": [start, end]}
        if not ce > cs:
            log.append({**entry, "action": DROPPED, "reason": EMPTY_AFTER_CLIP,
                        "detail": f"[{start:g}, {end:g}] has end <= start inside the video [0, {duration:g}]"})
            continue
        if (cs, ce) != (start, end):
            log.append({**entry, "action": CLIPPED, "reason": OUTSIDE_VIDEO, "written": [cs, ce],
                        "detail": f"[{start:g}, {end:g}] reaches outside the video [0, {duration:g}]"})
        kept.append((cs, ce))
        labels.append(inst.label)
    segments = np.asarray(kept, np.float64).reshape(-1, 2)  # [(s, e)] -> (N, 2)
    clipped = sum(e["action"] == CLIPPED for e in log)
    return CleanSegments(segments, tuple(labels), clipped, len(log) - clipped, tuple(log))
