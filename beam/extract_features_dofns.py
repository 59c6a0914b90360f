"""DoFns of ``beam.extract_features``: plan -> decode -> (RunInference) -> assemble.

Element types
    task      dict: {"video_id", "path", "subset", "segments": [[s, e], ...],
              "labels": [name, ...], "reject": None or [reason, detail]} -- one per
              input video, built by :func:`plan_tasks` in the launching process.
    snippet   ((video_id, snippet_index), uint8 clip (N, H, W, 3)) -> RunInference.
    meta      (video_id, dict) on the META output once a video decoded completely:
              the task plus duration, fps, snippet_times, num_snippets.
    feature   ((video_id, snippet_index), float32 (D,)) <- RunInference.

A video's snippets go downstream as they are decoded (long videos never sit in memory
whole); its META record is emitted only after the last frame decoded cleanly, so a
video that fails half-way has snippets but no META and :class:`AssembleVideoFn` drops
those (counter ``orphan_snippets``) -- the video itself is on the dead letter already.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np

from beam import build_shards_dofns, sinks
from beam.segments import clean_segments
from tags_tf.data.annotations import Instance
from beam.video_decode import DecodeOptions, VideoDecodeError, iter_snippets, probe

log = logging.getLogger(__name__)

META = "meta"

# Dead-letter reasons produced here; the ones shared with build_shards come from
# beam.build_shards_dofns (VideoDecodeError adds file_not_found, unreadable_container,
# no_video_stream, no_frame_rate, decode_error, no_frames, truncated).
MISSING_VIDEO = "missing_video"
NOT_IN_ANNOTATIONS = "not_in_annotations"
MISSING_SNIPPETS = "missing_snippets"
DUPLICATE_VIDEO_ID = build_shards_dofns.DUPLICATE_VIDEO_ID
UNSAFE_VIDEO_ID = build_shards_dofns.UNSAFE_VIDEO_ID
TOO_FEW_SNIPPETS = build_shards_dofns.TOO_FEW_SNIPPETS
NON_FINITE_VALUES = build_shards_dofns.NON_FINITE_VALUES
UNKNOWN_LABEL = build_shards_dofns.UNKNOWN_LABEL

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")


def task(video_id: str, path: str | None, subset: str, segments=(), labels=(), reject=None) -> dict:
    """One input video (see module docstring)."""
    return {
        "video_id": video_id,
        "path": path,
        "subset": subset,
        "segments": [[float(s), float(e)] for s, e in segments],
        "labels": list(labels),
        "reject": list(reject) if reject else None,
    }


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path.rstrip("/")))[0]


def list_videos(spec: str) -> list[str]:
    """Video files named by ``spec``: a directory (files with a video extension directly
    inside it), one file, or a glob (every match). Sorted. Local or any Beam FileSystem.
    """
    from apache_beam.io.filesystems import FileSystems

    if "://" not in spec and os.path.isdir(spec):
        return sorted(
            os.path.join(spec, n)
            for n in os.listdir(spec)
            if os.path.isfile(os.path.join(spec, n)) and os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS
        )
    if "://" not in spec and os.path.isfile(spec):
        return [spec]
    pattern = spec
    if not any(c in spec for c in "*?[") and not os.path.splitext(spec)[1]:
        pattern = spec.rstrip("/") + "/*"  # a remote "directory"
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception as e:  # BeamIOError on a bad pattern or bucket
        raise FileNotFoundError(f"--videos {spec}: cannot list ({e})") from e
    files = [m.path for m in matches]
    if pattern != spec:  # a directory: keep video files only
        files = [f for f in files if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS]
    return sorted(files)


def plan_tasks(video_files: Sequence[str], annotations=None, subset: str = "inference") -> list[dict]:
    """One task per input video, rejections decided up front included.

    Without ``annotations`` every file is a video of ``subset`` (no segments), id =
    file name without extension. With an AnnotationSet, every annotated video and every
    file is an input: an annotated video with no file is rejected ``missing_video``, a
    file no annotation names ``not_in_annotations``. Ids match file names with the
    ActivityNet ``v_`` prefix tolerated either way; a video answered by several files
    (``a.mp4`` and ``a.mkv``) is rejected ``duplicate_video_id``.
    """
    from beam.feature_readers import candidate_keys

    by_stem: dict[str, list[str]] = {}
    for path in video_files:
        by_stem.setdefault(_stem(path), []).append(path)
    tasks: list[dict] = []

    def one(video_id, paths, sub, segments=(), labels=()):
        problem = build_shards_dofns.unsafe_id_problem(video_id)
        if problem:
            return task(video_id, None, sub, reject=(UNSAFE_VIDEO_ID, f"video id {video_id!r}: {problem}"))
        if len(paths) > 1:
            return task(video_id, None, sub, reject=(DUPLICATE_VIDEO_ID, f"several files: {', '.join(sorted(paths))}"))
        return task(video_id, paths[0], sub, segments, labels)

    if annotations is None:
        for stem in sorted(by_stem):
            tasks.append(one(stem, by_stem[stem], subset))
        return tasks
    used: set[str] = set()
    for video_id in sorted(annotations.videos):
        ann = annotations.videos[video_id]
        keys = [k for k in dict.fromkeys(candidate_keys(video_id)) if k in by_stem]
        paths = [p for k in keys for p in by_stem[k]]
        used.update(keys)
        if not paths:
            reject = (MISSING_VIDEO, "no video file for this annotated video")
            tasks.append(task(video_id, None, ann.subset, reject=reject))
            continue
        segs = [(i.start, i.end) for i in ann.instances]
        tasks.append(one(video_id, paths, ann.subset, segs, [i.label for i in ann.instances]))
    src = getattr(annotations, "source", "") or "the annotation file"
    kept = ", ".join(sorted({v.subset for v in annotations.videos.values()})) or "none"
    for stem in sorted(set(by_stem) - used):
        detail = f"{by_stem[stem][0]}: no annotated video of {src} (subsets kept: {kept}) has this name"
        tasks.append(task(stem, None, "", reject=(NOT_IN_ANNOTATIONS, detail)))
    return tasks


class DecodeSnippetsFn(beam.DoFn):
    """task -> snippets ((video_id, index), clip (N, H, W, 3) uint8) on the main output,
    then (video_id, meta) on META; failures -> sinks.REJECTED with the decode reason.

    Use with ``.with_outputs(META, sinks.REJECTED, main="snippets")``.
    """

    def __init__(self, options: DecodeOptions, min_snippets: int = 2):
        self._options = options
        self._min_snippets = int(min_snippets)

    def process(self, t: Mapping[str, Any]) -> Iterable:
        vid, subset = t["video_id"], t["subset"]
        sinks.count("input")
        if t.get("reject"):
            reason, detail = t["reject"]
            yield sinks.reject(vid, reason, detail, subset)
            return
        times = []
        end = 0.0  # end time of the last real frame: the duration when the container has none
        try:
            info = probe(t["path"])  # header only: duration and fps from the container
            rate = self._options.fps or info.fps
            for snip in iter_snippets(t["path"], self._options, info=info):
                times.append(snip.center_time)
                end = snip.center_time + snip.num_real_frames / (2.0 * rate)
                yield (vid, snip.index), snip.frames
        except VideoDecodeError as e:
            yield sinks.reject(vid, e.reason, f"{e.path}: {e.detail}", subset)
            return
        sinks.count("read")
        if len(times) < self._min_snippets:
            yield sinks.reject(
                vid, TOO_FEW_SNIPPETS, f"{t['path']}: {len(times)} snippet(s), need >= {self._min_snippets}", subset
            )
            return
        sinks.count("snippets", len(times))
        meta = dict(t)
        meta.update(
            duration=info.duration if info.duration > 0 else end,
            fps=info.fps,
            snippet_times=times,
            num_snippets=len(times),
        )
        yield beam.pvalue.TaggedOutput(META, (vid, meta))


class DecodeBatchesFn(DecodeSnippetsFn):
    """DecodeSnippetsFn whose snippets leave in lists of up to ``batch_size`` (one video's
    snippets, in order) -- ready for ``RunInference(handler.with_no_batching())``.

    The batches are made in ``process``: Beam's BatchElements emits its last batch in
    ``finish_bundle``, which the DaskRunner (2.77) drops, losing snippets.
    """

    def __init__(self, options: DecodeOptions, min_snippets: int = 2, batch_size: int = 8):
        super().__init__(options, min_snippets)
        self._batch_size = int(batch_size)

    def process(self, t: Mapping[str, Any]) -> Iterable:
        batch = []
        for out in super().process(t):
            if isinstance(out, beam.pvalue.TaggedOutput):
                if batch:
                    yield batch
                    batch = []
                yield out
                continue
            batch.append(out)
            if len(batch) >= self._batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


class AssembleVideoFn(beam.DoFn):
    """(video_id, {"meta": [meta], "features": [(index, (D,))...]}) -> ((subset, video_id), bytes).

    Sorts snippet features by index into (T, D), clips segments to the duration and
    writes ``tags_tf.data.features.make_example``; also a ``sinks.summary`` on SUMMARY.
    """

    def __init__(self, class_names: Sequence[str] = ()):
        self._class_names = list(class_names)
        self._class_index: dict[str, int] = {}

    def setup(self):
        from tags_tf.data import features  # TensorFlow, only where examples are made

        self._features = features
        self._class_index = {n: i for i, n in enumerate(self._class_names)}

    def process(self, element) -> Iterable:
        vid, grouped = element
        metas, feats = list(grouped[META]), list(grouped["features"])
        if not metas:  # failed after some snippets were decoded; already rejected
            sinks.count("orphan_snippets", len(feats))
            return
        meta = metas[0]
        subset, t_expected = meta["subset"], meta["num_snippets"]
        feats.sort(key=lambda kv: kv[0])
        indices = [i for i, _ in feats]
        if indices != list(range(t_expected)):
            detail = f"{meta['path']}: got snippet indices {indices[:8]}..., expected 0..{t_expected - 1}"
            yield sinks.reject(vid, MISSING_SNIPPETS, detail, subset)
            return
        stacked = np.stack([np.asarray(f, np.float32) for _, f in feats])  # T x (D,) -> (T, D)
        reason, features = build_shards_dofns.check_features(vid, stacked, None)
        if reason is not None:  # too_few_snippets, non_finite_values; features is the detail
            yield sinks.reject(vid, reason, f"{meta['path']}: {features}", subset)
            return
        duration = meta["duration"]
        # Same segment policy as build_shards: clip to [0, duration], drop end <= start.
        clean = clean_segments(
            (Instance(s, e, n) for (s, e), n in zip(meta["segments"], meta["labels"])), duration, vid, subset
        )
        missing = sorted({n for n in clean.labels if n not in self._class_index})
        if missing:  # cannot happen with classes from the same annotation file; guard anyway
            yield sinks.reject(vid, UNKNOWN_LABEL, f"labels {missing} not in the class map", subset)
            return
        sinks.count("clipped_segments", clean.clipped)
        sinks.count("dropped_segments", clean.dropped)
        example = self._features.make_example(
            vid,
            subset,
            duration,
            features,
            segments=clean.segments,
            labels=[self._class_index[n] for n in clean.labels],
            label_names=list(clean.labels),
            snippet_times=np.asarray(meta["snippet_times"], np.float64),
        )
        sinks.count("written")
        yield (subset, vid), self._features.serialize(example)
        yield beam.pvalue.TaggedOutput(
            sinks.SUMMARY,
            sinks.summary(
                vid, subset, features.shape[0], features.shape[1], len(clean.labels), clean.clipped, clean.dropped,
                duration=duration, segments=clean.segments.tolist(), segment_log=clean.log,
            ),
        )
