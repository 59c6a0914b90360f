"""Pipeline pieces shared by the Beam jobs (build_shards, extract_features): dead letter
and counters, pipeline options, the runner-portable tagging and accounting, the manifest
and the final on-disk check. Shard files themselves are :mod:`beam.shard_io`.

What a job built on these looks like::

    options, runner = make_pipeline_options(pipeline_args)     # no Prism download; --runner dask
    prepare_output(output, overwrite)                          # refuse an earlier run's shards
    p = beam.Pipeline(runner=runner, options=options)
    tagged = pcoll | beam.ParDo(TagOutputs(SomeFn()))          # DoFns yield main outputs,
    ok = select(tagged, MAIN, "Ok")                            # reject(...) (REJECTED tag) and
    ...                                                        # summary(...) (SUMMARY tag)
    files = examples | shard_io.WriteShards(output, num_shards, shard_of, compression="GZIP")
    (summaries, rejections, files) | WriteAccounting(output)   # always the last transform
    run_pipeline(p)
    manifest = finalize_output(output, base_manifest, num_inputs=n)  # checks the disk, publishes

Outputs in ``output``:
  ``{subset}-NNNNN-of-NNNNN.tfrecord[.gz]``  shards (tags_tf.features schema)
  ``manifest.json`` (features.MANIFEST_NAME)  counts, classes, feature dim, sources, options,
      ``statistics``: {subset: tags_tf.data.statistics.temporal_statistics of its written
      videos (snippets, duration, segments as written)}
  ``rejected.jsonl`` (features.DEAD_LETTER_NAME)  one JSON object per rejected video:
      {"video_id", "subset", "reason", "detail"}, sorted by video id; empty if none.

Beam counters (namespace ``NAMESPACE``): ``input``, ``read``, ``written``,
``rejected_<reason>``, ``clipped_segments``, ``dropped_segments``.

Every input video must end up either written or rejected: :func:`finalize_output`
counts the records actually in the shards after the pipeline and raises ManifestError
(naming the missing count) when records on disk + rejected != num_inputs, so a runner
that loses data fails the job instead of publishing a manifest.

Nothing here imports TensorFlow.

Long because the accounting, the manifest and the on-disk check must agree with each
other; shard files are in beam.shard_io.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Any, Iterable, Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from tags_tf.data.statistics import temporal_statistics  # numpy only
from beam.shard_io import TMP_DIR, ShardFileError, count_records, shard_name
from tags_tf.schema import DEAD_LETTER_NAME, MANIFEST_NAME, SHARD_SUFFIX  # stdlib only

_LOG = logging.getLogger(__name__)

NAMESPACE = "tags_tf"
REJECTED = "rejected"  # tag of the dead-letter output of every DoFn
SUMMARY = "summary"  # tag of the per-written-video summary output

MANIFEST_VERSION = 1

# Runner names that mean "run locally in this process".
_LOCAL_RUNNERS = {None, "", "DirectRunner", "direct", "SwitchingDirectRunner", "FnApiRunner"}
# ``--runner dask`` is a shorthand for Beam's DaskRunner (the ``dask`` extra); with
# ``--dask_client_address HOST:PORT`` it runs on that dask.distributed cluster.
_DASK_RUNNERS = {"dask", "DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"}


class ManifestError(RuntimeError):
    """The per-video accounting does not add up (a bug, never bad input)."""


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
    }


def count(name: str, n: int = 1) -> None:
    """Increments the Beam counter ``NAMESPACE/name``."""
    if n:
        Metrics.counter(NAMESPACE, name).inc(n)


def pipeline_counters(result) -> dict[str, int]:
    """{counter name: value} of the ``NAMESPACE`` counters of a finished pipeline.

    Empty when the runner does not report metrics.
    """
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # some runners do not support metric queries
        return {}
    out: dict[str, int] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------ options


def make_pipeline_options(pipeline_args: Iterable[str] | None) -> tuple[PipelineOptions, Any]:
    """PipelineOptions from unparsed CLI args, plus the runner object to use.

    Every Beam/Dataflow/Flink/Spark flag passes through unchanged (``--runner``,
    ``--project``, ``--region``, ``--temp_location``, ``--setup_file ./setup.py``,
    ``--flink_master``, ``--direct_num_workers`` ...). ``--runner dask`` (or the
    DaskRunner's full name) returns Beam's DaskRunner; ``--dask_client_address`` names
    the dask.distributed scheduler (default: a new local cluster). When the runner is unset or
    ``DirectRunner``, the in-process FnApiRunner is returned explicitly: Beam's
    DirectRunner would otherwise first try the Prism runner, which downloads a binary
    (impossible offline). ``--direct_num_workers N --direct_running_mode
    multi_processing`` still apply. For any other runner ``None`` is returned and
    Beam picks it from the options.
    """
    options = PipelineOptions(list(pipeline_args or []))
    name = options.view_as(StandardOptions).runner
    if name in _LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        return options, fn_runner.FnApiRunner()
    if name in _DASK_RUNNERS:
        try:
            from apache_beam.runners.dask.dask_runner import DaskRunner  # also registers --dask_* options
        except ImportError:
            raise ValueError(f"--runner {name}: needs dask; pip install 'tags-tf[dask]'") from None
        return options, DaskRunner()
    return options, None


def run_pipeline(pipeline) -> dict[str, int]:
    """Runs ``pipeline`` to the end; returns its counters (pipeline_counters).

    Closes the DaskRunner's client, which the runner leaves open.
    """
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
    return pipeline_counters(result)


def options_for_manifest(options: PipelineOptions) -> dict:
    """The options that were set explicitly, JSON-safe (for the manifest)."""
    out = {}
    for k, v in sorted(options.get_all_options(drop_default=True).items()):
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out


def auto_num_shards(num_videos: int, videos_per_shard: int = 256, max_shards: int = 1024) -> int:
    """Default shard count: ~``videos_per_shard`` videos a shard, at least 1."""
    return max(1, min(max_shards, math.ceil(num_videos / videos_per_shard)))


# ----------------------------------------------------------------------------- manifest


class SummaryStatsFn(beam.CombineFn):
    """Sums summary() dicts into per-subset and total statistics.

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
    base: Mapping[str, Any],
    stats: Mapping[str, Any],
    rejections: list[dict],
    files: list[str],
    num_inputs: int,
    output_dir: str,
) -> dict:
    """Assembles manifest.json's content; raises ManifestError if counts do not add up.

    ``base`` holds what the job knows up front (class_names, feature_dim or None,
    sources, pipeline_options, compression, subsets -> num_shards, ...).
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
    manifest = dict(base)
    dims = stats["dims"]
    if manifest.get("feature_dim") is None and dims:
        manifest["feature_dim"] = int(max(dims, key=lambda d: dims[d]))
    if len(dims) > 1:
        raise ManifestError(f"{output_dir}: written videos have several feature dims {sorted(dims)}")
    names = [os.path.basename(f) for f in sorted(files)]
    subsets, statistics = {}, {}
    for subset, num_shards in (base.get("num_shards") or {}).items():
        sub = stats["subsets"].get(subset, {"videos": 0, "segments": 0, "temporal": []})
        statistics[subset] = temporal_statistics(sub["temporal"])  # order-free (quantiles, integer mean)
        subsets[subset] = {
            "videos": sub["videos"],
            "segments": sub["segments"],
            "rejected": sum(1 for r in rejections if r.get("subset") == subset),
            "files": [n for n in names if re.match(rf"{re.escape(subset)}-\d+-of-\d+", n)],
        }
    manifest["subsets"] = subsets
    manifest["statistics"] = statistics
    manifest["num_snippets"] = {"min": stats["t_min"], "max": stats["t_max"]}
    manifest["counts"] = {
        "input": num_inputs,
        "written": written,
        "rejected": dict(sorted(rejected.items())),
        "rejected_total": len(rejections),
        "clipped_segments": stats["clipped"],
        "dropped_segments": stats["dropped"],
    }
    if len(set(ids)) != len(ids):
        _LOG.warning("%s: some video ids were rejected more than once", output_dir)
    return manifest


def prepare_output(output: str, overwrite: bool) -> None:
    """Makes ``output`` ready for a job's shards; refuses an earlier run's unless ``overwrite``.

    Creates a local ``output`` directory. An earlier run's files there (shards
    ``*-of-*.tfrecord[.gz]``, manifest, dead letter) raise FileExistsError naming the
    directory, or with ``overwrite`` are deleted along with an interrupted run's
    ``TMP_DIR``. Other files are left alone.
    """
    if "://" not in output:
        if os.path.exists(output) and not os.path.isdir(output):
            raise ValueError(f"--output {output}: is a file; expected a directory (existing or to create)")
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as e:  # a parent that is a file, no permission, ...
            raise ValueError(f"--output {output}: cannot create the directory ({e.strerror or e})") from None
    old = FileSystems.match([FileSystems.join(output, "*")])[0].metadata_list if FileSystems.exists(output) else []
    names = [(m.path, os.path.basename(m.path)) for m in old]
    ours = [
        path
        for path, name in names
        if name in (MANIFEST_NAME, DEAD_LETTER_NAME)
        or name.startswith((MANIFEST_NAME + ".tmp", DEAD_LETTER_NAME + ".tmp"))  # a killed write
        or ("-of-" in name and SHARD_SUFFIX in name)
    ]
    if ours and not overwrite:
        raise FileExistsError(
            f"--output {output}: holds shards of an earlier run ({len(ours)} files); pass --overwrite"
        )
    tmp = FileSystems.join(output, TMP_DIR)
    if overwrite and FileSystems.exists(tmp):
        FileSystems.delete([tmp])  # leftovers of an interrupted run
    if ours:
        FileSystems.delete(ours)


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through Beam's FileSystems (local, gs://, ...)."""
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to a temporary name next to ``path``, then renames it: readers
    see the old file or the whole new one, never a partial one (a kill mid-write leaves
    ``<name>.tmp-*``, which prepare_output removes with --overwrite)."""
    import uuid

    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        write_text(tmp, text)
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([tmp], [path])
    except BaseException:
        try:
            if FileSystems.exists(tmp):
                FileSystems.delete([tmp])
        except Exception:  # best effort; the error that matters is the one raised
            pass
        raise


# ------------------------------------------------------- runner-portable graph pieces
#
# Beam's DaskRunner (2.77) mishandles three things our jobs relied on; these pieces avoid
# them on every runner (one graph for all):
#   * a multi-output ParDo hands *every* output to each tagged PCollection, so DoFns run
#     inside TagOutputs (one output of (tag, value) pairs) and ``select`` picks a tag;
#   * only the last transform's ancestors are computed, so everything ends in one
#     WriteAccounting stage (a lone side branch, e.g. a WriteToTFRecord, never runs);
#   * a side input recomputes its whole upstream inside each consumer task, so no stage
#     with side effects (shard writing) feeds a side input, and outputs emitted in
#     finish_bundle are lost (see beam.extract_features' pre-batched RunInference).
# The accounting is then checked against the records on disk (finalize_output).

MAIN = "main"  # the tag TagOutputs gives a DoFn's main output
ACCOUNTING_NAME = "accounting.json"  # under TMP_DIR; read by finalize_output


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


class _WriteAccountingFn(beam.DoFn):
    def __init__(self, output_dir: str):
        self._output_dir = output_dir

    def process(self, element):
        _, records = element
        acc = {"summaries": [], "rejections": [], "files": []}
        for kind, value in records:
            if kind != "marker":
                acc[kind].append(value)
        acc["summaries"].sort(key=lambda s: s["video_id"])
        acc["rejections"].sort(key=lambda r: (r["video_id"], r["reason"]))
        acc["files"].sort()
        path = FileSystems.join(self._output_dir, TMP_DIR, ACCOUNTING_NAME)
        write_text_atomic(path, json.dumps(acc, sort_keys=True))
        yield path


class WriteAccounting(beam.PTransform):
    """(summaries, rejections, shard_files) -> ``{output}/.tmp/accounting.json``.

    Every record goes through one GroupByKey into one DoFn that writes them all; apply it
    last: on the DaskRunner only the last transform's ancestors run. The launcher then
    calls :func:`finalize_output`, which checks the accounting against the shards on disk
    and publishes ``rejected.jsonl`` and ``manifest.json``.
    """

    def __init__(self, output_dir: str):
        super().__init__()
        self._output_dir = output_dir

    def expand(self, pcolls):
        summaries, rejections, files = pcolls
        p = summaries.pipeline
        parts = [
            p | "Marker" >> beam.Create([(None, ("marker", None))]),  # one group even with no records
            summaries | "KeySummaries" >> beam.Map(lambda x: (None, ("summaries", x))),
            rejections | "KeyRejections" >> beam.Map(lambda x: (None, ("rejections", x))),
            files | "KeyFiles" >> beam.Map(lambda x: (None, ("files", x))),
        ]
        return (
            parts
            | "AllRecords" >> beam.Flatten()
            | "OneGroup" >> beam.GroupByKey()
            | "WriteAccounting" >> beam.ParDo(_WriteAccountingFn(self._output_dir))
        )


def finalize_output(output_dir: str, base: Mapping[str, Any], num_inputs: int) -> dict:
    """After the pipeline: checks its accounting against the disk, then publishes.

    Reads ``.tmp/accounting.json`` (WriteAccounting), counts the records of every shard
    ``base["num_shards"]`` calls for, and raises ManifestError -- naming the missing
    count -- when a shard is missing, a subset's records on disk differ from its
    written videos, or records on disk + rejected != ``num_inputs``. So a runner that
    loses records, or whole stages, fails the job. Otherwise writes ``rejected.jsonl``,
    removes the temporary directory and writes ``manifest.json`` last (its presence
    means complete). Returns the manifest.
    """
    path = FileSystems.join(output_dir, TMP_DIR, ACCOUNTING_NAME)
    if not FileSystems.exists(path):
        raise ManifestError(
            f"{output_dir}: the pipeline finished without writing its accounting ({TMP_DIR}/{ACCOUNTING_NAME}); "
            "the runner skipped stages -- nothing published"
        )
    with FileSystems.open(path) as f:
        acc = json.loads(f.read().decode("utf-8"))
    compression = base.get("compression") or ""
    fn = SummaryStatsFn()
    stats = fn.create_accumulator()
    for s in acc["summaries"]:
        stats = fn.add_input(stats, s)
    files, on_disk = [], {}
    for subset, n in (base.get("num_shards") or {}).items():
        on_disk[subset] = 0
        for i in range(n):
            shard = FileSystems.join(output_dir, shard_name(subset, i, n, compression))
            if not FileSystems.exists(shard):
                raise ManifestError(f"{output_dir}: shard {os.path.basename(shard)} is missing after the pipeline")
            try:
                on_disk[subset] += count_records(shard, compression)
            except ShardFileError as e:
                raise ManifestError(str(e)) from None
            files.append(shard)
    for subset, n in on_disk.items():
        written = stats["subsets"].get(subset, {"videos": 0})["videos"]
        if n != written:
            raise ManifestError(
                f"{output_dir}: {subset}: {n} records in the shards on disk but {written} videos written by "
                f"the pipeline ({written - n} missing)"
            )
    total = sum(on_disk.values())
    rejections = acc["rejections"]
    if total + len(rejections) != num_inputs:
        raise ManifestError(
            f"{output_dir}: {total} records on disk + {len(rejections)} rejected != {num_inputs} input videos "
            f"({num_inputs - total - len(rejections)} missing)"
        )
    manifest = build_manifest(base, stats, rejections, files, num_inputs, output_dir)
    publish(output_dir, manifest, rejections)
    return manifest


def publish(output_dir: str, manifest: Mapping, rejections: list[dict]) -> None:
    """Writes ``rejected.jsonl``, removes TMP_DIR, then writes ``manifest.json`` (last)."""
    write_text_atomic(
        FileSystems.join(output_dir, DEAD_LETTER_NAME),
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejections),
    )
    tmp = FileSystems.join(output_dir, TMP_DIR)
    if FileSystems.exists(tmp):
        FileSystems.delete([tmp])
    # The manifest goes last: its presence means the directory is complete.
    write_text_atomic(
        FileSystems.join(output_dir, MANIFEST_NAME), json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
