"""Temporal statistics of a dataset, and the model size they call for (TF-free).

``beam.build_shards`` writes :func:`temporal_statistics` of each subset into
``manifest.json`` (key ``statistics``); ``tags_tf.train --dataset SHARD_DIR`` reads them
to pick a preset with :func:`choose_preset`. What decides a model's cost and fit is the
time axis, not the class count: the number of snippets a video is resampled to must
resolve its instances. ActivityNet's median instance covers about a quarter of its
video (24 snippets of the anet preset's 100); THUMOS14's about 2 % (2 snippets of 100,
10 of the thumos preset's 512), with about 15 instances per video.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

QUANTILES = (0.1, 0.5, 0.9)
# The anet preset (100 snippets at scale 1) resolves a median instance of >= 4 snippets;
# videos with more instances than this on average are THUMOS-like (many short actions).
MIN_MEDIAN_INSTANCE_FRACTION = 0.04
MAX_ANET_INSTANCES_PER_VIDEO = 5.0


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    if not len(v):
        return {}
    return {f"p{int(q * 100)}": round(float(np.quantile(v, q)), 6) for q in QUANTILES}


def temporal_statistics(videos: Iterable[tuple[int, float, Sequence[Sequence[float]]]]) -> dict:
    """Statistics of ``(num_snippets, duration_s, segments [(start_s, end_s), ...])`` per video.

    Returns ``{"videos", "snippets_per_video": {p10, p50, p90}, "duration_s": {...},
    "instances_per_video": {"mean", p10, p50, p90}, "instance_length_fraction": {...}}``
    (quantiles with numpy's default linear interpolation; instance lengths are clipped
    to the video and taken relative to its duration).
    """
    snippets, durations, counts, fractions = [], [], [], []
    for num_snippets, duration, segments in videos:
        snippets.append(num_snippets)
        durations.append(duration)
        counts.append(len(segments))
        for start, end in segments:
            if duration > 0:
                length = min(end, duration) - max(start, 0.0)
                fractions.append(max(length, 0.0) / duration)
    return {
        "videos": len(snippets),
        "snippets_per_video": _quantiles(snippets),
        "duration_s": _quantiles(durations),
        "instances_per_video": {"mean": round(float(np.mean(counts)), 6) if counts else 0.0, **_quantiles(counts)},
        "instance_length_fraction": _quantiles(fractions),
    }


def choose_preset(statistics: Mapping) -> tuple[str, str]:
    """(``"anet"`` or ``"thumos"``, a one-line reason naming the statistics).

    ``statistics``: :func:`temporal_statistics` of the training videos. thumos when the
    median instance is shorter than ``MIN_MEDIAN_INSTANCE_FRACTION`` of its video or
    videos hold more than ``MAX_ANET_INSTANCES_PER_VIDEO`` instances on average;
    otherwise anet (5x fewer snippets, so much cheaper).
    """
    median_fraction = statistics.get("instance_length_fraction", {}).get("p50")
    per_video = statistics.get("instances_per_video", {}).get("mean")
    if median_fraction is None or per_video is None:
        raise ValueError("the statistics have no instances (instance_length_fraction / instances_per_video)")
    short = median_fraction < MIN_MEDIAN_INSTANCE_FRACTION
    crowded = per_video > MAX_ANET_INSTANCES_PER_VIDEO
    preset = "thumos" if short or crowded else "anet"
    snippets = statistics.get("snippets_per_video", {}).get("p50")
    duration = statistics.get("duration_s", {}).get("p50")
    reason = (
        f"median instance {100 * median_fraction:.1f} % of its video, {per_video:.1f} instances per video"
        + (f", median {snippets:.0f} snippets / {duration:.0f} s per video" if snippets and duration else "")
        + f" -> {preset} (thumos when the median instance is under {100 * MIN_MEDIAN_INSTANCE_FRACTION:.0f} % "
        f"or videos hold over {MAX_ANET_INSTANCES_PER_VIDEO:.0f} instances on average)"
    )
    return preset, reason
