"""Every input video ends up written or rejected: the last stage of both jobs gathers the
per-video records (WriteAccounting), and after the pipeline :func:`finalize_output`
checks them against the shards on disk, then publishes the dead letter and the manifest.

    (summaries, rejections, files) | WriteAccounting(output)   # always the last transform
    run_pipeline(p)                                            # beam.pipeline_options
    manifest = finalize_output(output, base_manifest, num_inputs=n)  # checks the disk, publishes

Outputs in ``output``:
  ``manifest.json`` (schema.MANIFEST_NAME)  see beam.manifest; written last, its presence
      means the directory is complete. ``shard_checksums`` holds each shard file's size
      and SHA-256 (the records are byte-identical from run to run and runner to runner:
      tags_tf.data.features.serialize), which ``tags_tf.train`` verifies on start.
  ``rejected.jsonl`` (schema.DEAD_LETTER_NAME)  one JSON object per rejected video:
      {"video_id", "subset", "reason", "detail"}, sorted by video id; empty if none.
  ``segments.jsonl`` (schema.SEGMENT_LOG_NAME)  one JSON object per ground-truth segment
      of a written video that was clipped or dropped (beam.segments): {"video_id",
      "subset", "action", "reason", "detail", "label", "segment"[, "written"]}, sorted
      by video id; empty if none.

:func:`finalize_output` counts the records actually in the shards and raises
ManifestError (naming the missing count) when records on disk + rejected != num_inputs,
so a runner that loses data fails the job instead of publishing a manifest.

Beam's DaskRunner (2.77) computes only the last transform's ancestors, so everything
ends in the one WriteAccounting stage (a lone side branch, e.g. a WriteToTFRecord, never
runs); see beam.sinks for the other DaskRunner pitfalls the jobs avoid. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam.manifest import ManifestError, SummaryStatsFn, build_manifest
from beam.output_dir import write_text_atomic
from beam.shard_io import TMP_DIR, count_and_checksum, shard_name
from tags_tf.data.schema import DEAD_LETTER_NAME, MANIFEST_NAME, SEGMENT_LOG_NAME, Manifest  # stdlib only
from tags_tf.data.tfrecord import TFRecordError  # stdlib only

ACCOUNTING_NAME = "accounting.json"  # under TMP_DIR; read by finalize_output


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


def finalize_output(output_dir: str, base: Manifest, num_inputs: int) -> Manifest:
    """After the pipeline: checks its accounting against the disk, then publishes.

    Reads ``.tmp/accounting.json`` (WriteAccounting), counts the records of every shard
    ``base.num_shards`` calls for, and raises ManifestError -- naming the missing
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
    compression = base.compression or ""
    fn = SummaryStatsFn()
    stats = fn.create_accumulator()
    for s in acc["summaries"]:
        stats = fn.add_input(stats, s)
    files, on_disk, checksums = [], {}, {}
    for subset, n in (base.num_shards or {}).items():
        on_disk[subset] = 0
        for i in range(n):
            shard = FileSystems.join(output_dir, shard_name(subset, i, n, compression))
            if not FileSystems.exists(shard):
                raise ManifestError(f"{output_dir}: shard {os.path.basename(shard)} is missing after the pipeline")
            try:  # one read of each shard: its records and the checksum of its bytes as written
                records, checksums[os.path.basename(shard)] = count_and_checksum(shard, compression)
            except TFRecordError as e:
                raise ManifestError(str(e)) from None
            on_disk[subset] += records
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
    manifest = dataclasses.replace(build_manifest(base, stats, rejections, files, num_inputs, output_dir),
                                   shard_checksums=checksums)
    segment_log = [entry for s in acc["summaries"] for entry in s.get("segment_log", [])]
    publish(output_dir, manifest, rejections, segment_log)
    return manifest


def publish(output_dir: str, manifest: Manifest, rejections: list[dict], segment_log: list[dict] = ()) -> None:
    """Writes ``rejected.jsonl`` and ``segments.jsonl``, removes TMP_DIR, then writes
    ``manifest.json`` (last)."""
    for name, rows in ((DEAD_LETTER_NAME, rejections), (SEGMENT_LOG_NAME, segment_log)):
        write_text_atomic(FileSystems.join(output_dir, name), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    tmp = FileSystems.join(output_dir, TMP_DIR)
    if FileSystems.exists(tmp):
        FileSystems.delete([tmp])
    # The manifest goes last: its presence means the directory is complete.
    write_text_atomic(FileSystems.join(output_dir, MANIFEST_NAME), manifest.to_json())
