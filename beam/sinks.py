"""Pipeline pieces shared by the Beam jobs (build_shards, extract_features).

What a job built on these looks like::

    options, runner = make_pipeline_options(pipeline_args)     # no Prism download
    prepare_output(output, overwrite)                          # refuse an earlier run's shards
    with beam.Pipeline(runner=runner, options=options) as p:
        ...  # DoFns emit (subset, serialized SequenceExample) on the main output,
             # rejection(...) dicts on the REJECTED tag (see reject()),
             # summary(...) dicts on the SUMMARY tag for every written video.
        files = encoded | WriteShards(output, num_shards={"training": 4}, compression="GZIP")
        (summaries, rejections, files) | WriteManifest(output, base_manifest, num_inputs=n)

Outputs in ``output``:
  ``{subset}-NNNNN-of-NNNNN.tfrecord[.gz]``  shards (tags_tf.features schema)
  ``manifest.json`` (features.MANIFEST_NAME)  counts, classes, feature dim, sources, options
  ``rejected.jsonl`` (features.DEAD_LETTER_NAME)  one JSON object per rejected video:
      {"video_id", "subset", "reason", "detail"}, sorted by video id; empty if none.

Beam counters (namespace ``NAMESPACE``): ``input``, ``read``, ``written``,
``rejected_<reason>``, ``clipped_segments``, ``dropped_segments``.

Every input video must end up either written or rejected: :class:`WriteManifest`
fails the pipeline (ManifestError) when written + rejected != num_inputs.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Any, Iterable, Mapping

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

_LOG = logging.getLogger(__name__)

NAMESPACE = "tags_tf"
REJECTED = "rejected"  # tag of the dead-letter output of every DoFn
SUMMARY = "summary"  # tag of the per-written-video summary output

# Kept in sync with tags_tf.features (not imported: that module imports TensorFlow).
MANIFEST_NAME = "manifest.json"
DEAD_LETTER_NAME = "rejected.jsonl"
SHARD_SUFFIX = ".tfrecord"
MANIFEST_VERSION = 1

# Runner names that mean "run locally in this process".
_LOCAL_RUNNERS = {None, "", "DirectRunner", "direct", "SwitchingDirectRunner", "FnApiRunner"}
_SUBSET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
) -> dict:
    """What the manifest needs to know about one written video."""
    return {
        "video_id": video_id,
        "subset": subset,
        "num_snippets": int(num_snippets),
        "feature_dim": int(feature_dim),
        "num_segments": int(num_segments),
        "clipped_segments": int(clipped_segments),
        "dropped_segments": int(dropped_segments),
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
    ``--flink_master``, ``--direct_num_workers`` ...). When the runner is unset or
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
    return options, None


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


def check_subset_name(subset: str) -> str:
    """Subset names become file-name prefixes: letters, digits, ``_.-`` only."""
    if not _SUBSET_RE.match(subset or ""):
        raise ValueError(
            f"subset name {subset!r} cannot be used as a shard prefix; "
            "expected letters, digits, '_', '.', '-'"
        )
    return subset


def auto_num_shards(num_videos: int, videos_per_shard: int = 256, max_shards: int = 1024) -> int:
    """Default shard count: ~``videos_per_shard`` videos a shard, at least 1."""
    return max(1, min(max_shards, math.ceil(num_videos / videos_per_shard)))


def compression_type(compression: str | None) -> str:
    """Normalizes ``--compression`` to the tf.data spelling: "" or "GZIP"."""
    c = (compression or "").strip().upper()
    if c in ("", "NONE", "UNCOMPRESSED"):
        return ""
    if c in ("GZIP", "GZ"):
        return "GZIP"
    raise ValueError(f"--compression {compression!r}: expected 'gzip' or none")


def shard_suffix(compression: str) -> str:
    return SHARD_SUFFIX + (".gz" if compression_type(compression) == "GZIP" else "")


# ------------------------------------------------------------------------------- shards


class WriteShards(beam.PTransform):
    """PCollection[(subset, serialized bytes)] -> PCollection[str] of written shard paths.

    Writes ``{output}/{subset}-NNNNN-of-NNNNN.tfrecord[.gz]`` for every subset in
    ``num_shards`` (a subset with no videos gets empty shards, so a fixed count always
    holds; a count of 0 lets the runner choose). Elements of other subsets fail the
    pipeline.
    """

    def __init__(self, output_dir: str, num_shards: Mapping[str, int], compression: str = ""):
        super().__init__()
        self._output_dir = output_dir
        self._subsets = [check_subset_name(s) for s in num_shards]
        self._num_shards = dict(num_shards)
        self._compression = compression_type(compression)

    def expand(self, pcoll):
        index = {s: i for i, s in enumerate(self._subsets)}

        def which(element, n):
            subset = element[0]
            if subset not in index:
                raise ValueError(f"example of subset {subset!r}; shards exist for {sorted(index)}")
            return index[subset]

        parts = pcoll | "BySubset" >> beam.Partition(which, max(len(self._subsets), 1))
        files = []
        for subset, part in zip(self._subsets, parts):
            files.append(
                part
                | f"Values_{subset}" >> beam.Values()
                | f"Write_{subset}"
                >> beam.io.WriteToTFRecord(
                    FileSystems.join(self._output_dir, subset),
                    file_name_suffix=shard_suffix(self._compression),
                    num_shards=self._num_shards[subset],
                    compression_type=(
                        CompressionTypes.GZIP if self._compression else CompressionTypes.UNCOMPRESSED
                    ),
                )
            )
        if not files:
            return pcoll.pipeline | "NoShards" >> beam.Create([])
        return files | "AllShards" >> beam.Flatten()


# -------------------------------------------------------------- streamed TFRecord files

TMP_DIR = ".tmp"  # under the output directory; removed by WriteManifest


def shard_name(subset: str, index: int, num_shards: int, compression: str = "") -> str:
    """``{subset}-{index:05d}-of-{num_shards:05d}.tfrecord[.gz]`` (WriteToTFRecord's names)."""
    return f"{subset}-{index:05d}-of-{num_shards:05d}{shard_suffix(compression)}"


def temp_path(output_dir: str, name: str) -> str:
    """A unique temporary path for ``name`` (one per attempt, so retries never collide)."""
    import uuid

    return FileSystems.join(output_dir, TMP_DIR, f"{name}.{uuid.uuid4().hex}")


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frame(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked crc32c(length), data, masked crc32c(data)."""
    import struct

    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class TFRecordFileWriter:
    """Streams records into one TFRecord file through Beam's FileSystems (local, gs://...).

    Write to a temporary path, then :meth:`commit` renames it to the final name::

        with TFRecordFileWriter(temp_path(out, name), "GZIP") as w:
            w.write(serialized)
        w.commit(FileSystems.join(out, name))

    A writer left by an exception is closed and its file deleted.
    """

    def __init__(self, path: str, compression: str = ""):
        self.path = path
        self.count = 0
        comp = CompressionTypes.GZIP if compression_type(compression) == "GZIP" else CompressionTypes.UNCOMPRESSED
        self._f = FileSystems.create(path, compression_type=comp)

    def write(self, record: bytes) -> None:
        self._f.write(tfrecord_frame(record))
        self.count += 1

    def __enter__(self) -> "TFRecordFileWriter":
        return self

    def __exit__(self, exc_type, *unused) -> None:
        self._f.close()
        if exc_type is not None:
            try:
                FileSystems.delete([self.path])
            except Exception:  # best effort; the temp dir goes with WriteManifest
                pass

    def commit(self, final_path: str) -> None:
        """Renames the (closed) file to ``final_path``, replacing any earlier attempt."""
        if FileSystems.exists(final_path):
            FileSystems.delete([final_path])
        FileSystems.rename([self.path], [final_path])


# ----------------------------------------------------------------------------- manifest


class SummaryStatsFn(beam.CombineFn):
    """Sums summary() dicts into per-subset and total statistics."""

    def create_accumulator(self):
        return {"subsets": {}, "written": 0, "clipped": 0, "dropped": 0, "dims": {}, "t_min": None, "t_max": None}

    def add_input(self, acc, s):
        sub = acc["subsets"].setdefault(s["subset"], {"videos": 0, "segments": 0})
        sub["videos"] += 1
        sub["segments"] += s["num_segments"]
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
                o = out["subsets"].setdefault(name, {"videos": 0, "segments": 0})
                o["videos"] += sub["videos"]
                o["segments"] += sub["segments"]
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
    subsets = {}
    for subset, num_shards in (base.get("num_shards") or {}).items():
        sub = stats["subsets"].get(subset, {"videos": 0, "segments": 0})
        subsets[subset] = {
            "videos": sub["videos"],
            "segments": sub["segments"],
            "rejected": sum(1 for r in rejections if r.get("subset") == subset),
            "files": [n for n in names if re.match(rf"{re.escape(subset)}-\d+-of-\d+", n)],
        }
    manifest["subsets"] = subsets
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


class _WriteManifestFn(beam.DoFn):
    def __init__(self, output_dir, base, num_inputs):
        self._output_dir = output_dir
        self._base = base
        self._num_inputs = num_inputs

    def process(self, unused, stats, rejections, files):
        rejections = sorted(rejections, key=lambda r: (r["video_id"], r["reason"]))
        manifest = build_manifest(self._base, stats, rejections, list(files), self._num_inputs, self._output_dir)
        write_text_atomic(
            FileSystems.join(self._output_dir, DEAD_LETTER_NAME),
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejections),
        )
        tmp = FileSystems.join(self._output_dir, TMP_DIR)
        if FileSystems.exists(tmp):
            FileSystems.delete([tmp])
        # The manifest goes last: its presence means the directory is complete.
        write_text_atomic(
            FileSystems.join(self._output_dir, MANIFEST_NAME), json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )
        yield manifest


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


class WriteManifest(beam.PTransform):
    """(summaries, rejections, shard_files) -> PCollection with the one manifest dict.

    Writes ``rejected.jsonl`` then ``manifest.json`` once every shard is finalized.
    ``base`` must be JSON-serializable; the manifest adds ``subsets`` (videos,
    segments, rejected, files per subset), ``num_snippets`` and ``counts`` (input,
    written, rejected per reason, rejected_total, clipped_segments, dropped_segments),
    and fills ``feature_dim`` from the written videos when ``base`` has None.
    Raises ManifestError (fails the pipeline) when written + rejected != num_inputs.
    """

    def __init__(self, output_dir: str, base: Mapping[str, Any], num_inputs: int):
        super().__init__()
        json.dumps(base)  # fail at construction, not on a worker
        self._output_dir = output_dir
        self._base = dict(base)
        self._num_inputs = int(num_inputs)

    def expand(self, pcolls):
        summaries, rejections, files = pcolls
        stats = summaries | "Stats" >> beam.CombineGlobally(SummaryStatsFn())
        return (
            summaries.pipeline
            | "ManifestTrigger" >> beam.Create([None])
            | "WriteManifest"
            >> beam.ParDo(
                _WriteManifestFn(self._output_dir, self._base, self._num_inputs),
                stats=beam.pvalue.AsSingleton(stats),
                rejections=beam.pvalue.AsList(rejections),
                files=beam.pvalue.AsList(files),
            )
        )
