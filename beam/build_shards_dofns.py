"""DoFns of the ``beam.build_shards`` job (and plain functions ``beam.extract_features_dofns`` reuses).

Stages, each a DoFn testable through ``setup()`` / ``process()``; every rejection goes
to the ``sinks.REJECTED`` output as ``{"video_id", "subset", "reason", "detail"}``:

  (canonical id, [VideoAnnotation])  --DedupeFn-->           VideoAnnotation
      duplicate_video_id  (two annotation ids naming one video, e.g. "abc" and "v_abc",
      or an id listed twice in the file), bad_annotation (an unusable entry: the
      reader's VideoAnnotation.problem)
  VideoAnnotation  --ResolveFeaturesFn-->                    (video, (FeatureRef per stream))
      unsafe_video_id, missing_feature_file, duplicate_video_id (ambiguous feature files)
  (video, refs)  --PeekDimFn--> D  --MajorityDimFn--> expected D (when no --feature_dim)
  ((subset, shard), [(video, refs)])  --BuildShardFn(expected D side input)-->  shard path
      per video: read_video_features (missing_feature_file, empty_file,
      unreadable_file, bad_shape, stream_length_mismatch), then validate_video
      (bad_duration, wrong_feature_dim, too_few_snippets, non_finite_values,
      unknown_label, bad_segment), then features.make_example -> the shard file;
      a sinks.summary per written video on SUMMARY.

Only (video, refs) pairs -- a few hundred bytes -- go through the shuffle that groups
videos into shards; features are read inside BuildShardFn and streamed to the shard
file, so memory stays at one video whatever the dataset size (the stock
WriteToTFRecord route would shuffle every serialized example, which the local runner
keeps in RAM several times over).

Segment policy (:mod:`beam.segments`; the same as tags_tf.data.annotations'): a
segment is clipped to [0, duration] (counted as ``clipped_segments``, video kept); a
segment with end <= start after clipping or one the annotation reader left out as
malformed is dropped (``dropped_segments``) -- the video is kept unless
``reject_bad_segments`` is set, in which case it is rejected as ``bad_segment``. Each
clipped or dropped segment is named in ``segments.jsonl``.

Only BuildShardFn imports TensorFlow (in ``setup()``).

Long because it holds the job's DoFns and the validation they share with
extract_features.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam import feature_readers as fr
from beam import shard_io, sinks
from beam.segments import clean_segments
from tags_tf.data.schema import BAD_ANNOTATION, DUPLICATE_VIDEO_ID  # also the annotation reader's reasons

# Dead-letter reasons (feature_readers adds empty_file, unreadable_file, bad_shape,
# stream_length_mismatch).
MISSING_FEATURE_FILE = fr.MISSING_FEATURE_FILE  # also raised by the feature reader
UNSAFE_VIDEO_ID = "unsafe_video_id"
BAD_DURATION = "bad_duration"
WRONG_FEATURE_DIM = "wrong_feature_dim"
TOO_FEW_SNIPPETS = "too_few_snippets"
NON_FINITE_VALUES = "non_finite_values"
UNKNOWN_LABEL = "unknown_label"
BAD_SEGMENT = "bad_segment"

MIN_SNIPPETS = 2


def unsafe_id_problem(video_id: str) -> str | None:
    """Why ``video_id`` cannot be used as a name (None if it can).

    Rejected: empty ids, path separators (``/`` or ``\\``), ``..``, NUL and other
    control characters. Video ids are never joined into paths anyway (features are
    found through a listing), but ids like these break consumers that do.
    """
    if not video_id:
        return "empty video id"
    if "/" in video_id or "\\" in video_id:
        return "contains a path separator"
    if ".." in video_id:
        return "contains '..'"
    if any(ord(c) < 32 or ord(c) == 127 for c in video_id):
        return "contains a control character"
    return None


@dataclasses.dataclass(frozen=True)
class ValidVideo:
    """A video that passed every check, ready to encode."""

    video_id: str
    subset: str
    duration: float
    features: np.ndarray  # (T, D) float32, finite
    segments: np.ndarray  # (N, 2) float64 seconds
    labels: tuple[int, ...]  # (N,) class ids
    label_names: tuple[str, ...]  # (N,)
    clipped: int = 0
    dropped: int = 0
    segment_log: tuple[dict, ...] = ()  # beam.segments.CleanSegments.log


def check_features(
    video_id: str, features: np.ndarray, expected_dim: int | None
) -> tuple[str, str] | tuple[None, np.ndarray]:
    """Shape/value checks of (T, D) features -> (reason, detail) or (None, float32 array).

    Order: wrong_feature_dim, too_few_snippets, non_finite_values (after the float32
    cast, so float64 values beyond float32 range count as non-finite).
    """
    t, d = features.shape
    if expected_dim is not None and d != expected_dim:
        return WRONG_FEATURE_DIM, f"{video_id}: feature dim {d}, expected {expected_dim} (shape {features.shape})"
    if t < MIN_SNIPPETS:
        return TOO_FEW_SNIPPETS, f"{video_id}: {t} snippet(s), need at least {MIN_SNIPPETS}"
    with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf, caught below
        out = np.asarray(features, np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        return NON_FINITE_VALUES, (
            f"{video_id}: {int((~finite).sum())} NaN/Inf value(s) in snippet(s) {bad_rows[:5].tolist()}"
            + ("..." if len(bad_rows) > 5 else "")
        )
    return None, out


# ----------------------------------------------------------------------------------- DoFns


class DedupeFn(beam.DoFn):
    """(canonical id, iterable of VideoAnnotation) -> the video, or rejects all of them.

    Key the annotations by ``feature_readers.canonical_id(video_id)`` and GroupByKey
    first: ids that differ only by the ``v_`` prefix name the same video.
    """

    def process(self, element):
        _, videos = element
        videos = sorted(videos, key=lambda v: v.video_id)
        sinks.count("input", len(videos))
        for v in videos:  # unusable annotation entries (tags_tf.data.annotations policy)
            if getattr(v, "problem", None):
                yield sinks.reject(v.video_id, v.problem[0], v.problem[1], v.subset)
        videos = [v for v in videos if not getattr(v, "problem", None)]
        if not videos:
            return
        if len(videos) == 1:
            yield videos[0]
            return
        ids = [v.video_id for v in videos]
        for v in videos:
            yield sinks.reject(
                v.video_id, DUPLICATE_VIDEO_ID, f"{v.video_id}: annotations list the same video as {ids}", v.subset
            )


class ResolveFeaturesFn(beam.DoFn):
    """VideoAnnotation -> (video, (FeatureRef, ...)) with one ref per feature stream.

    Args:
      indexes: one ``feature_readers.index_features`` result per stream (1 or 2).
      sources: the source spec of each stream (for messages).
    """

    def __init__(self, indexes: Sequence[Mapping[str, Sequence[fr.FeatureRef]]], sources: Sequence[str]):
        self._indexes = [dict(i) for i in indexes]
        self._sources = list(sources)

    def process(self, video):
        vid, subset = video.video_id, video.subset
        problem = unsafe_id_problem(vid)
        if problem:
            yield sinks.reject(vid, UNSAFE_VIDEO_ID, f"{vid!r}: {problem}", subset)
            return
        refs = []
        for index, source in zip(self._indexes, self._sources):
            found = fr.lookup(index, vid)
            if not found:
                yield sinks.reject(vid, MISSING_FEATURE_FILE, f"{vid}: no feature file in {source}", subset)
                return
            if len(found) > 1:
                names = ", ".join(r.describe() for r in found)
                yield sinks.reject(vid, DUPLICATE_VIDEO_ID, f"{vid}: several feature files: {names}", subset)
                return
            refs.append(found[0])
        yield video, tuple(refs)


class PeekDimFn(beam.DoFn):
    """(video, refs) -> D read from the file headers (nothing if unreadable)."""

    def setup(self):
        self._reader = fr.FeatureReader()

    def teardown(self):
        self._reader.close()

    def process(self, element):
        _, refs = element
        dims = [self._reader.peek_dim(r) for r in refs]
        if all(d is not None for d in dims):
            yield sum(dims)


class MajorityDimFn(beam.CombineFn):
    """The most common feature dim (ties: the smaller dim); None if there is none."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, d):
        acc[d] = acc.get(d, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            for d, n in a.items():
                out[d] = out.get(d, 0) + n
        return out

    def extract_output(self, acc):
        if not acc:
            return None
        return min(acc, key=lambda d: (-acc[d], d))


class Rejected(Exception):
    """A video failed a check: ``reason`` (dead-letter reason) and one-line ``detail``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def read_video_features(reader: fr.FeatureReader, video, refs: Sequence[fr.FeatureRef]) -> np.ndarray:
    """Reads one video's streams -> (T, D) (two streams concatenated on D).

    Raises Rejected with the reader's reason (missing_feature_file, empty_file,
    unreadable_file, bad_shape, stream_length_mismatch).
    """
    try:
        streams = [reader.read(r) for r in refs]
        return streams[0] if len(streams) == 1 else fr.concat_streams(streams, video.video_id)
    except fr.FeatureReadError as e:
        raise Rejected(e.reason, e.detail) from None


def validate_video(
    video,
    features: np.ndarray,
    class_index: Mapping[str, int],
    expected_dim: int | None = None,
    reject_bad_segments: bool = False,
) -> ValidVideo:
    """Checks one video (annotation + (T, D) features) -> ValidVideo, or raises Rejected.

    Order of the checks: bad_duration, wrong_feature_dim, too_few_snippets,
    non_finite_values, unknown_label (a label outside ``class_index``), bad_segment
    (only with ``reject_bad_segments``; otherwise such segments are dropped and
    counted, see clean_segments). ``expected_dim`` None accepts any D.
    """
    vid, duration = video.video_id, video.duration
    if duration is None or not math.isfinite(duration) or duration <= 0:
        raise Rejected(BAD_DURATION, f"{vid}: duration {duration!r}, expected > 0 seconds")
    reason, out = check_features(vid, features, expected_dim)
    if reason is not None:
        raise Rejected(reason, out)
    unknown = sorted({i.label for i in video.instances} - set(class_index))
    if unknown:
        raise Rejected(UNKNOWN_LABEL, f"{vid}: label(s) {unknown} not in the class map")
    unreadable = tuple(getattr(video, "bad_segments", ()))  # left out by the annotation reader
    clean = clean_segments(video.instances, float(duration), vid, video.subset, unreadable)
    dropped = clean.dropped
    if dropped and reject_bad_segments:
        first = f"; first: {unreadable[0]}" if unreadable else ""
        raise Rejected(BAD_SEGMENT, f"{vid}: {dropped} bad segment(s) (end <= start inside [0, {duration}], "
                                    f"or malformed in the annotation file){first}")
    return ValidVideo(
        video_id=vid,
        subset=video.subset,
        duration=float(duration),
        features=out,
        segments=clean.segments,
        labels=tuple(class_index[n] for n in clean.labels),
        label_names=clean.labels,
        clipped=clean.clipped,
        dropped=dropped,
        segment_log=clean.log,
    )


class BuildShardFn(beam.DoFn):
    """((subset, shard index), [(video, refs) or None]) -> the written shard's path.

    Reads, validates and encodes the videos of one shard in video-id order and streams
    them into ``{output}/{subset}-{shard:05d}-of-{n:05d}.tfrecord[.gz]`` (written under
    a temporary name, renamed when complete, so a retried bundle never leaves a partial
    shard). Memory holds one video at a time: the big arrays never go through a
    shuffle. ``None`` values are markers that make every shard exist, empty or not.
    Outputs: the shard path (main), a sinks.summary per written video (SUMMARY), a
    rejection per failed video (REJECTED). Side input ``expected_dim`` (the majority
    vote) is used when ``feature_dim`` is None; when both are None any D is accepted.

    Snippet times are uniform over the duration (features.uniform_snippet_times).
    """

    def __init__(
        self,
        output_dir: str,
        num_shards: Mapping[str, int],
        compression: str,
        class_index: Mapping[str, int],
        feature_dim: int | None = None,
        reject_bad_segments: bool = False,
    ):
        self._output_dir = output_dir
        self._num_shards = dict(num_shards)
        self._compression = compression
        self._class_index = dict(class_index)
        self._feature_dim = feature_dim
        self._reject_bad_segments = reject_bad_segments

    def setup(self):
        from tags_tf.data import features  # TensorFlow, only where examples are made

        self._features = features
        self._reader = fr.FeatureReader()

    def teardown(self):
        self._reader.close()

    def process(self, element, expected_dim=None):
        (subset, shard), items = element
        dim = self._feature_dim if self._feature_dim is not None else expected_dim
        name = shard_io.shard_name(subset, shard, self._num_shards[subset], self._compression)
        final = FileSystems.join(self._output_dir, name)
        with shard_io.TFRecordFileWriter(shard_io.temp_path(self._output_dir, name), self._compression) as writer:
            for video, refs in sorted((x for x in items if x is not None), key=lambda x: x[0].video_id):
                try:
                    feats = read_video_features(self._reader, video, refs)
                    sinks.count("read")
                    v = validate_video(video, feats, self._class_index, dim, self._reject_bad_segments)
                except Rejected as r:
                    yield sinks.reject(video.video_id, r.reason, r.detail, video.subset)
                    continue
                ex = self._features.make_example(
                    v.video_id, v.subset, v.duration, v.features, v.segments, v.labels, v.label_names
                )
                writer.write(self._features.serialize(ex))
                sinks.count("written")
                sinks.count("clipped_segments", v.clipped)
                sinks.count("dropped_segments", v.dropped)
                yield beam.pvalue.TaggedOutput(
                    sinks.SUMMARY,
                    sinks.summary(
                        v.video_id, v.subset, v.features.shape[0], v.features.shape[1], len(v.labels),
                        v.clipped, v.dropped, duration=v.duration, segments=v.segments.tolist(),
                        segment_log=v.segment_log,
                    ),
                )
        writer.commit(final)
        yield final
