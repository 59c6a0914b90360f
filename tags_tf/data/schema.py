"""Names shared by the shard writers (``beam``), readers (``tags_tf.data``) and ``serving``.

Standard library only (no TensorFlow, no numpy): Beam workers, the dataset resolver and
the tests read these without paying for a TensorFlow import. :mod:`tags_tf.data.features`
builds the ``tf.train.SequenceExample`` parse spec from the record keys defined here.

Shard directory layout::

    {subset}-NNNNN-of-NNNNN.tfrecord[.gz]   one SequenceExample per video (record keys below)
    manifest.json                            counts, classes, feature dim, statistics (Manifest)
    rejected.jsonl                           one JSON object per video left out (dead letter)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any, Callable

# Record keys of one video's SequenceExample. Context features:
VIDEO_ID = "video_id"  # bytes: the video's id (no path separators)
SUBSET = "subset"  # bytes: e.g. "training", "validation", "test"
DURATION = "duration"  # float: seconds
FEATURE_DIM = "feature_dim"  # int64: D
NUM_SNIPPETS = "num_snippets"  # int64: T, the snippet vectors stored
SNIPPET_TIMES = "snippet_times"  # float[T]: centre time in seconds of every snippet
SEG_START = "segments/start"  # float[N]: ground-truth starts in seconds
SEG_END = "segments/end"  # float[N]: ground-truth ends in seconds
SEG_LABEL = "segments/label"  # int64[N]: class ids (index into the manifest's class_names)
SEG_LABEL_NAME = "segments/label_name"  # bytes[N]: class names
# Feature list: float[D] per snippet, T entries.
FEATURES = "features"

# Detections, as DetectionDecoder returns them and the serving ``detect`` signature names
# its outputs: padded to N rows a video, the first num_detections valid.
DETECTION_SEGMENTS = "detection_segments"  # float32 (B, N, 2): (start, end) seconds
DETECTION_SCORES = "detection_scores"  # float32 (B, N), descending; 0 past num_detections
DETECTION_CLASSES = "detection_classes"  # int32 (B, N); -1 past num_detections
NUM_DETECTIONS = "num_detections"  # int32 (B,)
DETECTION_OUTPUTS = (DETECTION_SEGMENTS, DETECTION_SCORES, DETECTION_CLASSES, NUM_DETECTIONS)

# Files of a shard directory.
MANIFEST_NAME = "manifest.json"
DEAD_LETTER_NAME = "rejected.jsonl"
SEGMENT_LOG_NAME = "segments.jsonl"  # every ground-truth segment a job clipped or dropped, with its reason
SHARD_SUFFIX = ".tfrecord"  # then ".gz" when GZIP-compressed

# Dead-letter reasons (the "reason" of a ``rejected.jsonl`` line) that both the annotation
# reader (``VideoAnnotation.problem``) and the shard jobs give; the jobs' other reasons
# are defined in ``beam.build_shards_dofns`` and ``beam.feature_readers``.
BAD_ANNOTATION = "bad_annotation"
DUPLICATE_VIDEO_ID = "duplicate_video_id"

# ActivityNet ids are YouTube ids written both ``<id>`` and ``v_<id>`` (BSN/BMN files,
# feature dumps); ids that differ only by this prefix name the same video.
VIDEO_ID_PREFIX = "v_"


def shard_prefix(subset: str) -> str:
    """Shard files of ``subset`` are ``{subset}-NNNNN-of-NNNNN.tfrecord[.gz]``."""
    return f"{subset}"


def canonical_video_id(video_id: str) -> str:
    """``video_id`` without one leading ``v_``: ids equal here name the same video.

    The prefix alone (``"v_"``) is an id of its own and is kept.
    """
    if video_id.startswith(VIDEO_ID_PREFIX) and len(video_id) > len(VIDEO_ID_PREFIX):
        return video_id[len(VIDEO_ID_PREFIX):]
    return video_id


def alternate_video_id(video_id: str) -> str:
    """The other spelling of the same video's id: without its ``v_`` when it has one,
    else with one."""
    bare = canonical_video_id(video_id)
    return bare if bare != video_id else VIDEO_ID_PREFIX + video_id


def video_id_variants(video_id: str) -> list[str]:
    """The spellings to look ``video_id`` up by, in order: itself, with ``v_`` added, and
    (when it has one) without its ``v_``."""
    variants = [video_id, VIDEO_ID_PREFIX + video_id]
    bare = canonical_video_id(video_id)
    if bare != video_id:
        variants.append(bare)
    return variants


# ------------------------------------------------------------------------------ manifest

MANIFEST_VERSION = 1  # the "format_version" the shard jobs write


class ManifestFormatError(ValueError):
    """A manifest.json that cannot be read: not a JSON object, or a field missing or of
    the wrong type. The message is one line naming the file and the field."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# field -> (check, what the field must be). Nested objects stay plain JSON (dicts).
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "class_names": (_is_str_list, "a list of strings"),
    "feature_dim": (lambda v: v is None or _is_int(v), "an integer or null"),
    "format_version": (_is_int, "an integer"),
    "created_by": (lambda v: isinstance(v, str), "a string"),
    "schema": (lambda v: isinstance(v, str), "a string"),
    "class_ids": (lambda v: isinstance(v, dict), "an object"),
    "num_classes": (_is_int, "an integer"),
    "compression": (lambda v: isinstance(v, str), "a string"),
    "num_shards": (lambda v: isinstance(v, dict), "an object"),
    "snippet_times": (lambda v: isinstance(v, str), "a string"),
    "segment_policy": (lambda v: isinstance(v, str), "a string"),
    "sources": (lambda v: isinstance(v, dict), "an object"),
    "pipeline_options": (lambda v: isinstance(v, dict), "an object"),
    "subsets": (lambda v: isinstance(v, dict) and all(isinstance(e, dict) for e in v.values()),
                "an object of objects"),
    "statistics": (lambda v: isinstance(v, dict), "an object"),
    "num_snippets": (lambda v: isinstance(v, dict), "an object"),
    "counts": (lambda v: isinstance(v, dict), "an object"),
    "shard_checksums": (lambda v: isinstance(v, dict) and all(isinstance(e, dict) for e in v.values()),
                        "an object of objects"),
}
_REQUIRED = ("class_names", "feature_dim")  # what every reader needs


def _json_type(v) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a shard directory, as ``beam.build_shards`` and
    ``beam.extract_features`` write it and every reader reads it.

    ``class_names`` and ``feature_dim`` are required (``feature_dim`` is null when no
    video was written). Every other field is ``None`` when the file lacks it (a
    hand-made or older manifest) and is then left out of :meth:`to_dict`; the writers
    set them all. Nested objects stay plain JSON. Keys this class does not name (a
    job's own, e.g. ``unannotated_features``, ``encoder``) are kept in ``extra``, so
    ``Manifest.from_dict(d).to_dict() == d`` for every manifest that reads.
    """

    class_names: list[str]  # id order: segments/label indexes this list
    feature_dim: int | None  # D of every written video
    format_version: int | None = None  # MANIFEST_VERSION of the writer
    created_by: str | None = None  # "beam.build_shards" | "beam.extract_features"
    schema: str | None = None  # the record schema, in words
    class_ids: dict[str, int] | None = None  # {name: id}
    num_classes: int | None = None
    compression: str | None = None  # "" or "GZIP"
    num_shards: dict[str, int] | None = None  # {subset: shard files}
    snippet_times: str | None = None  # how the snippet times were set, in words
    segment_policy: str | None = None  # "clip_to_duration_drop_empty" | "reject_bad_segments"
    sources: dict[str, Any] | None = None  # the job's inputs
    pipeline_options: dict[str, Any] | None = None  # the Beam options set explicitly
    subsets: dict[str, dict] | None = None  # {subset: {"videos", "segments", "rejected", "files"}}
    statistics: dict[str, dict] | None = None  # {subset: data.statistics.temporal_statistics}
    num_snippets: dict[str, int | None] | None = None  # {"min", "max"} over written videos
    counts: dict[str, Any] | None = None  # {"input", "written", "rejected": {reason: n}, "rejected_total",
    #                                        "clipped_segments", "dropped_segments"}
    shard_checksums: dict[str, dict] | None = None  # {shard file name: {"bytes": n, "sha256": hex}}
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # other keys, as read

    def __post_init__(self):
        clash = sorted(set(self.extra) & set(_FIELD_CHECKS))
        if clash:
            raise ValueError(f"Manifest.extra repeats the fields {clash}")

    # --------------------------------------------------------------------- reading

    @classmethod
    def from_dict(cls, data: Any, source: str = MANIFEST_NAME) -> "Manifest":
        """Checks ``data`` (a parsed manifest.json); ``source`` names it in errors.

        Raises ManifestFormatError when a required field is missing or a field has the
        wrong type.
        """
        if not isinstance(data, dict):
            raise ManifestFormatError(f"{source}: expected a JSON object, got {_json_type(data)}")
        for name, (ok, what) in _FIELD_CHECKS.items():
            if name not in data:
                if name in _REQUIRED:
                    raise ManifestFormatError(f"{source}: field {name!r} is missing (expected {what})")
            elif not ok(data[name]):
                raise ManifestFormatError(f"{source}: field {name!r} is {_json_type(data[name])}, expected {what}")
        data = copy.deepcopy(data)
        known = {k: v for k, v in data.items() if k in _FIELD_CHECKS}
        return cls(**known, extra={k: v for k, v in data.items() if k not in _FIELD_CHECKS})

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ManifestFormatError(f"{source}: not valid JSON ({e})") from None
        return cls.from_dict(data, source)

    # --------------------------------------------------------------------- writing

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: required fields, the optional ones set, then ``extra``."""
        out = {name: getattr(self, name) for name in _FIELD_CHECKS
               if name in _REQUIRED or getattr(self, name) is not None}
        return copy.deepcopy({**out, **self.extra})

    def to_json(self) -> str:
        """What the jobs write to manifest.json (sorted keys, indented)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    # ------------------------------------------------------------------- subsets

    def subset_names(self) -> list[str]:
        """The subsets written, as the writer spelled them ([] when the file has none)."""
        return list(self.subsets or {})

    def find_subset(self, name: str) -> str | None:
        """The subset spelled ``name`` up to case, or None."""
        return {n.lower(): n for n in self.subset_names()}.get(name.lower())

    def subset_videos(self, subset: str) -> int | None:
        """Videos written for ``subset`` (exact name); None when the manifest does not say."""
        return (self.subsets or {}).get(subset, {}).get("videos")


def read_manifest(shard_dir: str, open_file: Callable = open) -> Manifest:
    """``manifest.json`` of ``shard_dir``; ``open_file`` opens it for text reading
    (``tf.io.gfile.GFile`` for remote paths, see tags_tf.data.features.read_manifest).

    Raises FileNotFoundError, or ManifestFormatError naming the file and the field.
    """
    path = os.path.join(shard_dir, MANIFEST_NAME)
    with open_file(path) as f:
        return Manifest.from_json(f.read(), source=path)
