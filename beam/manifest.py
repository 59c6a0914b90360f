"""The manifest both shard jobs write: what they know up front (:func:`base_manifest`),
the statistics summed from their per-video summaries (:class:`SummaryStatsFn`), the
whole :class:`tags_tf.data.schema.Manifest` (:func:`build_manifest`) and its CLI table.

``manifest.json`` (schema.MANIFEST_NAME) holds counts, classes, feature dim, sources,
options and ``statistics``: {subset: tags_tf.data.statistics.temporal_statistics of its
written videos (snippets, duration, segments as written)}. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Any, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from tags_tf.data.statistics import temporal_statistics  # numpy only
from tags_tf.data.schema import DEAD_LETTER_NAME, MANIFEST_VERSION, SEGMENT_LOG_NAME, Manifest  # stdlib only

_LOG = logging.getLogger(__name__)

RECORD_SCHEMA = "tags_tf.data.features (tf.train.SequenceExample per video)"  # the manifest's "schema"


class ManifestError(RuntimeError):
    """The per-video accounting does not add up (a bug, never bad input)."""


def base_manifest(
    created_by: str,
    class_names: Sequence[str],
    feature_dim: int | None,
    compression: str,
    num_shards: Mapping[str, int],
    snippet_times: str,
    segment_policy: str,
    sources: Mapping[str, Any],
    pipeline_options: Mapping[str, Any],
    **extra: Any,
) -> Manifest:
    """What a job knows before its pipeline runs; ``extra``: the job's own keys.

    ``feature_dim`` None: taken from the written videos (build_manifest).
    """
    return Manifest(
        class_names=list(class_names),
        feature_dim=feature_dim,
        format_version=MANIFEST_VERSION,
        created_by=created_by,
        schema=RECORD_SCHEMA,
        class_ids={n: i for i, n in enumerate(class_names)},
        num_classes=len(class_names),
        compression=compression,
        num_shards=dict(num_shards),
        snippet_times=snippet_times,
        segment_policy=segment_policy,
        sources=dict(sources),
        pipeline_options=dict(pipeline_options),
        extra=extra,
    )


class SummaryStatsFn(beam.CombineFn):
    """Sums sinks.summary() dicts into per-subset and total statistics.

    Per subset it also keeps ``temporal``: one ``(num_snippets, duration_s, segments)``
    per written video, for temporal_statistics (a few numbers a video; 20k videos fit).
    """

    def create_accumulator(self):
        return {"subsets": {}, "written": 0, "clipped": 0, "dropped": 0, "dims": {}, "t_min": None, "t_max": None}

    def add_input(self, acc, s):
        sub = acc["subsets"].setdefault(s["subset"], {"videos": 0, "segments": 0, "temporal": []})
        sub["videos"] += 1
        sub["segments"] += s["num_segments"]
        sub["temporal"].append((s["num_snippets"], s["duration_s"], s["segments"]))
        acc["written"] += 1
        acc["clipped"] += s["clipped_segments"]
        acc["dropped"] += s["dropped_segments"]
        d = str(s["feature_dim"])
        acc["dims"][d] = acc["dims"].get(d, 0) + 1
        t = s["num_snippets"]
        acc["t_min"] = t if acc["t_min"] is None else min(acc["t_min"], t)
        acc["t_max"] = t if acc["t_max"] is None else max(acc["t_max"], t)
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            for name, sub in a["subsets"].items():
                o = out["subsets"].setdefault(name, {"videos": 0, "segments": 0, "temporal": []})
                o["videos"] += sub["videos"]
                o["segments"] += sub["segments"]
                o["temporal"].extend(sub["temporal"])
            for k in ("written", "clipped", "dropped"):
                out[k] += a[k]
            for d, n in a["dims"].items():
                out["dims"][d] = out["dims"].get(d, 0) + n
            for k, f in (("t_min", min), ("t_max", max)):
                if a[k] is not None:
                    out[k] = a[k] if out[k] is None else f(out[k], a[k])
        return out

    def extract_output(self, acc):
        return acc


def build_manifest(
    base: Manifest,
    stats: Mapping[str, Any],
    rejections: list[dict],
    files: list[str],
    num_inputs: int,
    output_dir: str,
) -> Manifest:
    """``base`` completed with the subsets, statistics, snippet range and counts.

    ``stats``: SummaryStatsFn's output; ``files``: the shard paths. Raises ManifestError
    if the counts do not add up or the written videos have several feature dims.
    """
    rejected: dict[str, int] = {}
    for r in rejections:
        rejected[r["reason"]] = rejected.get(r["reason"], 0) + 1
    written = stats["written"]
    if written + len(rejections) != num_inputs:
        raise ManifestError(
            f"{output_dir}: {written} written + {len(rejections)} rejected != {num_inputs} input videos"
        )
    ids = [r["video_id"] for r in rejections]
    dims = stats["dims"]
    feature_dim = base.feature_dim
    if feature_dim is None and dims:
        feature_dim = int(max(dims, key=lambda d: dims[d]))
    if len(dims) > 1:
        raise ManifestError(f"{output_dir}: written videos have several feature dims {sorted(dims)}")
    names = [os.path.basename(f) for f in sorted(files)]
    subsets, statistics = {}, {}
    for subset in base.num_shards or {}:
        sub = stats["subsets"].get(subset, {"videos": 0, "segments": 0, "temporal": []})
        statistics[subset] = temporal_statistics(sub["temporal"])  # order-free (quantiles, integer mean)
        subsets[subset] = {
            "videos": sub["videos"],
            "segments": sub["segments"],
            "rejected": sum(1 for r in rejections if r.get("subset") == subset),
            "files": [n for n in names if re.match(rf"{re.escape(subset)}-\d+-of-\d+", n)],
        }
    if len(set(ids)) != len(ids):
        _LOG.warning("%s: some video ids were rejected more than once", output_dir)
    return dataclasses.replace(
        base,
        feature_dim=feature_dim,
        subsets=subsets,
        statistics=statistics,
        num_snippets={"min": stats["t_min"], "max": stats["t_max"]},
        counts={
            "input": num_inputs,
            "written": written,
            "rejected": dict(sorted(rejected.items())),
            "rejected_total": len(rejections),
            "clipped_segments": stats["clipped"],
            "dropped_segments": stats["dropped"],
        },
    )


def format_summary(manifest: Manifest, output_dir: str | None = None, first: int = 3) -> str:
    """A small text table of a job's manifest (for the CLIs); ``extra["beam_counters"]``
    (the jobs' returned dicts carry them) is listed when present. With ``output_dir``,
    also the ``first`` rejected videos and clipped/dropped segments, and the files that
    name all of them."""
    lines = [f"{'subset':<14}{'videos':>8}{'segments':>10}{'rejected':>10}{'shards':>8}"]
    for name, s in (manifest.subsets or {}).items():
        lines.append(f"{name:<14}{s['videos']:>8}{s['segments']:>10}{s['rejected']:>10}{len(s['files']):>8}")
    c = manifest.counts or {}
    lines.append(
        f"input {c['input']}  written {c['written']}  rejected {c['rejected_total']}  "
        f"clipped segments {c['clipped_segments']}  dropped segments {c['dropped_segments']}  "
        f"feature_dim {manifest.feature_dim}"
    )
    for reason, n in c["rejected"].items():
        lines.append(f"  rejected {reason}: {n}")
    counters = manifest.extra.get("beam_counters")
    if counters:
        lines.append("beam counters: " + ", ".join(f"{k}={v}" for k, v in counters.items()))
    if output_dir is not None:
        lines += _first_entries(output_dir, first)
    return "\n".join(lines)


def _first_entries(output_dir: str, first: int) -> list[str]:
    """The first rows of ``rejected.jsonl`` and ``segments.jsonl``, each file named."""
    lines = []
    for name, what in ((DEAD_LETTER_NAME, "rejected videos"), (SEGMENT_LOG_NAME, "clipped or dropped segments")):
        path = FileSystems.join(output_dir, name)
        if not FileSystems.exists(path):
            continue
        with FileSystems.open(path) as f:
            rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]
        if not rows:
            continue
        lines.append(f"{len(rows)} {what}, all in {path}; the first:")
        for r in rows[:first]:
            action = r.get("action", "rejected")
            lines.append(f"  {r['video_id']} ({r['subset']}): {action} {r['reason']}: {r.get('detail', '')}")
    return lines
