"""What the DoFns of both Beam jobs emit besides their records, and how it is carried:
the dead letter (``reject``, on the REJECTED tag), the per-written-video ``summary`` (on
SUMMARY), Beam counters (``count``), and TagOutputs / select, which carry every tag on
one output so the same graph runs on every runner.

    tagged = pcoll | beam.ParDo(TagOutputs(SomeFn()))   # DoFns yield main outputs,
    ok = select(tagged, MAIN, "Ok")                     # reject(...) and summary(...)
    rejected = select(tagged, REJECTED, "Rejected")

Beam counters (namespace ``NAMESPACE``): ``input``, ``read``, ``written``,
``rejected_<reason>``, ``clipped_segments``, ``dropped_segments``. The rest of a job's
plumbing: beam.pipeline_options (options, runner, counters), beam.output_dir,
beam.shard_io (shard files), beam.accounting (the last stage and the on-disk check),
beam.manifest. Nothing here imports TensorFlow.

Beam's DaskRunner (2.77) mishandles three things the jobs avoid on every runner (one
graph for all):
  * a multi-output ParDo hands *every* output to each tagged PCollection, so DoFns run
    inside TagOutputs (one output of (tag, value) pairs) and ``select`` picks a tag;
  * only the last transform's ancestors are computed, so everything ends in one
    accounting.WriteAccounting stage;
  * a side input recomputes its whole upstream inside each consumer task, so no stage
    with side effects (shard writing) feeds a side input, and outputs emitted in
    finish_bundle are lost (see beam.extract_features' pre-batched RunInference).
"""

from __future__ import annotations

import logging
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

_LOG = logging.getLogger(__name__)

NAMESPACE = "tags_tf"
MAIN = "main"  # the tag TagOutputs gives a DoFn's main output
REJECTED = "rejected"  # tag of the dead-letter output of every DoFn
SUMMARY = "summary"  # tag of the per-written-video summary output


# ------------------------------------------------------------------ dead letter / metrics


def rejection(video_id: str, reason: str, detail: str, subset: str = "") -> dict:
    """One dead-letter record. ``reason`` is snake_case; ``detail`` one line."""
    return {"video_id": video_id, "subset": subset, "reason": reason, "detail": detail}


def reject(video_id: str, reason: str, detail: str, subset: str = "") -> beam.pvalue.TaggedOutput:
    """Counts ``rejected_<reason>`` and returns the record on the REJECTED output.

    Use as ``yield reject(...)`` inside ``DoFn.process``.
    """
    Metrics.counter(NAMESPACE, f"rejected_{reason}").inc()
    _LOG.info("rejected %s (%s): %s", video_id, reason, detail)
    return beam.pvalue.TaggedOutput(REJECTED, rejection(video_id, reason, detail, subset))


def summary(
    video_id: str,
    subset: str,
    num_snippets: int,
    feature_dim: int,
    num_segments: int,
    clipped_segments: int = 0,
    dropped_segments: int = 0,
    *,
    duration: float,
    segments: Iterable[Iterable[float]],
    segment_log: Iterable[dict] = (),
) -> dict:
    """What the manifest needs to know about one written video.

    ``duration`` (seconds) and ``segments`` ([(start_s, end_s), ...] as written to the
    shard, i.e. after clipping/dropping) feed the manifest's temporal ``statistics``.
    """
    return {
        "video_id": video_id,
        "subset": subset,
        "num_snippets": int(num_snippets),
        "feature_dim": int(feature_dim),
        "num_segments": int(num_segments),
        "clipped_segments": int(clipped_segments),
        "dropped_segments": int(dropped_segments),
        "duration_s": float(duration),
        "segments": [[float(a), float(b)] for a, b in segments],
        "segment_log": list(segment_log),  # the segments clipped or dropped (beam.segments)
    }


def count(name: str, n: int = 1) -> None:
    """Increments the Beam counter ``NAMESPACE/name``."""
    if n:
        Metrics.counter(NAMESPACE, name).inc(n)


# ------------------------------------------------------------------ tagged outputs


class TagOutputs(beam.DoFn):
    """Runs ``fn`` and emits each of its outputs on the one main output as ``(tag, value)``
    (``MAIN`` for the main output, the tag of a ``TaggedOutput`` otherwise).

    Use ``select(tagged, tag, label)`` for one tag's values. Positional side inputs are
    passed on to ``fn.process``.
    """

    def __init__(self, fn: beam.DoFn):
        self._fn = fn

    def setup(self):
        self._fn.setup()

    def start_bundle(self):
        self._fn.start_bundle()

    def process(self, element, *side_inputs):
        for out in self._fn.process(element, *side_inputs) or ():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield out.tag, out.value
            else:
                yield MAIN, out

    def finish_bundle(self):
        if self._fn.finish_bundle():
            raise ValueError(f"{type(self._fn).__name__}.finish_bundle emits outputs; TagOutputs does not carry them")

    def teardown(self):
        self._fn.teardown()


def _pick(element, tag):
    if element[0] == tag:
        yield element[1]


def select(tagged, tag: str, label: str):
    """The values of ``tag`` in a TagOutputs PCollection."""
    return tagged | label >> beam.FlatMap(_pick, tag)
