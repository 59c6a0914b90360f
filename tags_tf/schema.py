"""Names shared by the shard writers (``beam``), readers (``tags_tf.data``) and ``serving``.

Standard library only (no TensorFlow, no numpy): Beam workers, the dataset resolver and
the tests read these without paying for a TensorFlow import. :mod:`tags_tf.features`
builds the ``tf.train.SequenceExample`` parse spec from the record keys defined here.

Shard directory layout::

    {subset}-NNNNN-of-NNNNN.tfrecord[.gz]   one SequenceExample per video (record keys below)
    manifest.json                            counts, classes, feature dim, statistics
    rejected.jsonl                           one JSON object per video left out (dead letter)
"""

from __future__ import annotations

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
SHARD_SUFFIX = ".tfrecord"  # then ".gz" when GZIP-compressed

# Dead-letter reasons (the "reason" of a ``rejected.jsonl`` line) that both the annotation
# reader (``VideoAnnotation.problem``) and the shard jobs give; the jobs' other reasons
# are defined in ``beam.dofns`` and ``beam.feature_readers``.
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
