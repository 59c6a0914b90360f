"""Reading annotation files of every public layout into one :class:`AnnotationSet`
(pure Python, no TensorFlow or numpy; the bad-input policy: :mod:`tags_tf.data.annotations`).

Layouts read by :func:`load_annotations` (``fmt="auto"`` tells them apart):

* ``"activitynet"``: the official ActivityNet file
  ``{"version", "taxonomy", "database": {id: {"subset", "duration",
  "annotations": [{"segment": [s, e], "label"}]}}}``.
* ``"actionformer"``: the same ``database`` layout with ``fps`` and ``label_id``
  per entry, e.g. ActionFormer's ``thumos14.json`` (subsets ``Validation``/``Test``).
* ``"gtad"``: G-TAD's ``thumos_gt.json``, the same layout with segments stored as
  strings and no duration.
* ``"bsn"``: BSN/BMN/TAGS ``anet_anno_action.json`` (``{"v_<id>": {"duration_second",
  "annotations"}}``) plus ``video_info_new.csv`` (``video,...,seconds,fps,...,subset``),
  which gives each video its subset. The ``v_`` prefix is stripped so ids agree with
  the official file (``strip_v_prefix=False`` keeps it).

"""

from __future__ import annotations

import csv
import logging
import math
import os
from typing import Any, Iterable, Mapping

from tags_tf.data.annotations import FORMATS, AnnotationError, AnnotationSet, Instance, VideoAnnotation
from tags_tf.data.jsonio import read_json, repeated_keys
from tags_tf.data.schema import BAD_ANNOTATION, DUPLICATE_VIDEO_ID, canonical_video_id

logger = logging.getLogger(__name__)


BSN_VIDEO_INFO_NAME = "video_info_new.csv"


def load_annotations(
    path: str | os.PathLike,
    video_info: str | os.PathLike | None = None,
    fmt: str = "auto",
    subset: str | Iterable[str] | None = None,
    strip_v_prefix: bool = True,
) -> AnnotationSet:
    """Reads a ground-truth file in any supported layout (see module docstring).

    Args:
      path: the JSON annotation file.
      video_info: BSN/BMN ``video_info_new.csv``; if ``None`` for a BSN file, the
        csv of that name next to ``path`` is used.
      fmt: one of ``FORMATS``.
      subset: optional subset name(s) to keep (case-insensitive).
      strip_v_prefix: BSN only, drop the ``v_`` of ``v_<youtube id>`` keys.

    Returns:
      AnnotationSet. Raises AnnotationError on any malformed input.
    """
    path = os.fspath(path)
    if fmt not in FORMATS:
        raise AnnotationError(f"{path}: unknown annotation format {fmt!r}; expected one of {FORMATS}")
    wanted = None
    if subset is not None:
        wanted = {str(s).lower() for s in ([subset] if isinstance(subset, str) else subset)}
    data = _read_json(path)
    if fmt == "auto":
        fmt = _detect_format(path, data)
    if fmt == "bsn":
        info_path = os.fspath(video_info) if video_info is not None else os.path.join(
            os.path.dirname(path), BSN_VIDEO_INFO_NAME)
        result = _parse_bsn(path, data, info_path, strip_v_prefix, wanted)
    else:
        result = _parse_database(path, data, fmt, wanted)
    logger.debug("Loaded %d videos (%s layout) from %s", len(result), fmt, path)
    _warn_problems(result)
    # Only the requested subsets were parsed; this checks the names (case-insensitive).
    return result.subset(subset) if subset is not None else result


def _read_json(path: str) -> Any:
    # Repeated keys are marked, not fatal: a video id listed twice rejects that video only.
    data = read_json(path, AnnotationError, duplicates="mark")
    if not isinstance(data, dict) or "database" in data:
        top = repeated_keys(data)
        if top:
            raise AnnotationError(f"{path}: key {next(iter(top))!r} appears twice at the top level")
    return data


def _warn_problems(result: AnnotationSet) -> None:
    """One warning for the bad videos and bad segments of a file (never silent)."""
    problems, bad = result.problems(), result.num_bad_segments
    if not problems and not bad:
        return
    first = next((f"{p[0]!r}: {p[3]}" for p in problems), None) or next(
        f"{v.video_id!r}: {v.bad_segments[0]}" for v in result.videos.values() if v.bad_segments)
    logger.warning("%s: %d unusable video(s), %d bad segment(s) left out (first: %s)",
                   result.source, len(problems), bad, first)


def _detect_format(path: str, data: Any) -> str:
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    if "database" in data:
        database = data["database"]
        if not isinstance(database, dict):
            raise AnnotationError(f"{path}: 'database' must be an object of videos")
        if "taxonomy" in data:
            return "activitynet"
        for entry in database.values():
            anns = entry.get("annotations") if isinstance(entry, dict) else None
            if anns:
                first = anns[0]
                segment = first.get("segment") if isinstance(first, dict) else None
                if isinstance(segment, (list, tuple)) and segment and isinstance(segment[0], str):
                    return "gtad"
                if isinstance(first, dict) and "label_id" in first and "fps" in entry:
                    return "actionformer"
                return "activitynet"
        return "activitynet"
    first = next(iter(data.values()), None)
    if isinstance(first, dict) and "annotations" in first and (
        "duration_second" in first or "subset" not in first):
        return "bsn"
    raise AnnotationError(
        f"{path}: unrecognized annotation layout; expected a 'database' object "
        "(ActivityNet/ActionFormer/G-TAD) or BSN/BMN {'v_<id>': {'duration_second', 'annotations'}}"
    )


def _number(path: str, where: str, value: Any, what: str) -> float:
    """float(value) for numbers and numeric strings, else AnnotationError."""
    if isinstance(value, bool):
        raise AnnotationError(f"{path}: {where}: {what} must be a number, got {value!r}")
    text = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: {where}: {what} must be a number, got {text}") from None
    except OverflowError:  # an integer too large for a float (e.g. 400 digits)
        out = math.inf
    if not math.isfinite(out):
        raise AnnotationError(f"{path}: {where}: {what} must be finite, got {text}")
    return out


def _optional_number(path: str, where: str, value: Any, what: str) -> float | None:
    return None if value is None else _number(path, where, value, what)


def _segment_problem(path: str, where: str, ann: Any) -> tuple[Instance | None, str | None]:
    """(Instance, None) for a good annotation entry, else (None, one-line problem)."""
    if not isinstance(ann, dict):
        return None, f"{where}: expected an object with 'segment' and 'label'"
    twice = repeated_keys(ann)
    if twice:
        return None, f"{where}: key {next(iter(twice))!r} appears twice"
    try:
        segment, label = ann["segment"], ann["label"]
    except KeyError as err:
        return None, f"{where}: missing key {err.args[0]!r}"
    if not isinstance(segment, (list, tuple)) or len(segment) != 2:
        return None, f"{where}: 'segment' must be [start, end], got {segment!r}"
    try:
        start = _number(path, where, segment[0], "segment start")
        end = _number(path, where, segment[1], "segment end")
    except AnnotationError as err:
        return None, str(err)[len(path) + 2:]
    if end < start:
        return None, f"{where}: segment end {end} < start {start}"
    if not isinstance(label, str) or not label:
        return None, f"{where}: 'label' must be a non-empty string, got {label!r}"
    return Instance(start, end, label), None


def _parse_instances(path: str, video_id: str, anns: Any) -> tuple[tuple[Instance, ...], tuple[str, ...]]:
    """(good instances, descriptions of the bad entries). A non-list raises (video-level)."""
    if not isinstance(anns, list):
        raise AnnotationError(f"{path}: video {video_id!r}: 'annotations' must be a list")
    out, bad = [], []
    for i, ann in enumerate(anns):
        inst, problem = _segment_problem(path, f"video {video_id!r} annotation {i}", ann)
        if problem is None:
            out.append(inst)
        else:
            bad.append(problem)
    return tuple(out), tuple(bad)


def _bad_video(video_id: str, subset: str, reason: str, detail: str) -> VideoAnnotation:
    """A video kept only to be accounted for: no instances, ``problem`` set."""
    return VideoAnnotation(video_id, subset, None, None, (), (), (reason, detail))


def _video(path: str, video_id: str, key: str, subset: str, duration: Any, fps: Any, fps_path: str,
           entry: Any) -> VideoAnnotation:
    """One parsed video, or a ``_bad_video`` when its entry is unusable as a whole."""
    where = f"video {key!r}"
    if not isinstance(entry, dict):
        return _bad_video(video_id, subset, BAD_ANNOTATION, f"{path}: {where}: expected an object")
    twice = repeated_keys(entry)
    if twice:
        return _bad_video(video_id, subset, BAD_ANNOTATION,
                          f"{path}: {where}: key {next(iter(twice))!r} appears twice")
    try:
        instances, bad = _parse_instances(path, key, entry.get("annotations", []))
        return VideoAnnotation(
            video_id=video_id,
            subset=subset,
            duration=_optional_number(path, where, duration, "duration"),
            fps=_optional_number(fps_path, where, fps, "fps"),
            instances=instances,
            bad_segments=bad,
        )
    except AnnotationError as err:
        return _bad_video(video_id, subset, BAD_ANNOTATION, str(err))


def _finish(path: str, fmt: str, videos: dict[str, VideoAnnotation], labels: set[str],
            subsets: set[str]) -> AnnotationSet:
    """``labels`` and ``subsets`` cover the whole file, also when only a subset was parsed."""
    labels = labels | {inst.label for v in videos.values() for inst in v.instances}
    return AnnotationSet(videos, tuple(sorted(labels)), path, fmt, tuple(sorted(subsets)))


def _file_labels(entries: Iterable[Any]) -> set[str]:
    """Labels of entries that were not parsed (subset filter); malformed ones are skipped."""
    out = set()
    for entry in entries:
        anns = entry.get("annotations") if isinstance(entry, dict) else None
        if isinstance(anns, list):
            out.update(a["label"] for a in anns
                       if isinstance(a, dict) and isinstance(a.get("label"), str) and a["label"])
    return out


def _parse_database(path: str, data: Any, fmt: str, wanted: set[str] | None) -> AnnotationSet:
    """Official ActivityNet, ActionFormer and G-TAD layouts (all share 'database')."""
    if not isinstance(data, dict) or "database" not in data:
        raise AnnotationError(f"{path}: missing key 'database' ({fmt} layout)")
    database = data["database"]
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: 'database' must be an object of videos")
    videos, skipped, subsets = {}, [], set()
    twice = repeated_keys(database)
    for video_id, entry in database.items():
        if video_id in twice:  # the first entry's subset places it (the others are unseen)
            subset = str(entry.get("subset", "")) if isinstance(entry, dict) else ""
            if subset:
                subsets.add(subset)
            skipped.append(entry)  # its labels still name classes
            if wanted is None or subset.lower() in wanted:
                videos[video_id] = _bad_video(video_id, subset, DUPLICATE_VIDEO_ID,
                                              f"{path}: video {video_id!r} is listed {twice[video_id]} times")
            continue
        if not isinstance(entry, dict) or "subset" not in entry:
            what = "missing key 'subset'" if isinstance(entry, dict) else "expected an object"
            videos[video_id] = _bad_video(video_id, "", BAD_ANNOTATION, f"{path}: video {video_id!r}: {what}")
            continue
        subsets.add(str(entry["subset"]))
        if wanted is not None and str(entry["subset"]).lower() not in wanted:
            skipped.append(entry)
            continue
        videos[video_id] = _video(path, video_id, video_id, str(entry["subset"]), entry.get("duration"),
                                  entry.get("fps"), path, entry)
    return _finish(path, fmt, videos, _file_labels(skipped), subsets)


def _read_video_info(info_path: str) -> dict[str, Mapping[str, str]]:
    try:
        with open(info_path, newline="") as fobj:
            reader = csv.DictReader(fobj)
            missing = {"video", "subset"} - set(reader.fieldnames or ())
            if missing:
                raise AnnotationError(
                    f"{info_path}: video-info csv lacks column(s) {sorted(missing)}; "
                    "expected video,numFrame,seconds,fps,rfps,subset,featureFrame")
            return {row["video"]: row for row in reader}
    except FileNotFoundError:
        raise AnnotationError(
            f"{info_path}: file not found (BSN/BMN annotations need video_info_new.csv "
            "for the subsets; pass video_info=...)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AnnotationError(f"{info_path}: cannot read csv ({err})") from None


def _parse_bsn(path: str, data: Any, info_path: str, strip_v_prefix: bool,
               wanted: set[str] | None) -> AnnotationSet:
    """BSN/BMN anet_anno_action.json + video_info_new.csv (the csv lists the videos)."""
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object of videos (BSN/BMN layout)")
    info = _read_video_info(info_path)
    twice = repeated_keys(data)
    videos, skipped, subsets = {}, [], set()
    for key, row in info.items():
        entry = data.get(key, {})
        subsets.add(row["subset"])
        if wanted is not None and row["subset"].lower() not in wanted:
            skipped.append(entry)
            continue
        video_id = canonical_video_id(key) if strip_v_prefix else key
        if key in twice:
            videos[video_id] = _bad_video(video_id, row["subset"], DUPLICATE_VIDEO_ID,
                                          f"{path}: video {key!r} is listed {twice[key]} times")
            continue
        duration = entry.get("duration_second", row.get("seconds") or None) if isinstance(entry, dict) else None
        videos[video_id] = _video(path, video_id, key, row["subset"], duration, row.get("fps") or None,
                                  info_path, entry)
    unlisted = len(set(data) - set(info))
    if unlisted:
        logger.warning("%s: %d videos are not in %s and were skipped", path, unlisted, info_path)
    return _finish(path, "bsn", videos, _file_labels(skipped), subsets)
