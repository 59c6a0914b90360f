"""Annotations + pre-extracted features -> sharded TFRecords, manifest, dead letter.

    python -m beam.build_shards --annotations FILE [--video_info CSV] \\
        --features DIR_OR_FILE_OR_GLOB [--features2 DIR_OR_FILE_OR_GLOB] --output DIR \\
        [--num_shards N] [--compression gzip] [--subsets training,validation] \\
        [--feature_dim D] [--class_map FILE] [--reject_bad_segments] [--overwrite] \\
        [--dry_run] [any Beam option: --runner DataflowRunner --project P --region R \\
         --temp_location gs://... --setup_file ./pyproject.toml --machine_type n2-standard-4 ...]

Runs locally by default (the in-process FnApiRunner, never the Prism download; see
beam.pipeline_options.make_pipeline_options). Unrecognized flags go to Beam unchanged. To ship this
package to remote workers use ``--setup_file /path/to/repo/pyproject.toml`` (Beam
builds an sdist with ``python -m build``, which must be installed where you launch).

Outputs in DIR: ``{subset}-NNNNN-of-NNNNN.tfrecord[.gz]`` (tags_tf.data.features schema),
``manifest.json`` and ``rejected.jsonl`` (see beam.accounting). Library entry point:
:func:`run_build_shards`. Every selected annotated video is either written or listed in
``rejected.jsonl`` with its reason; feature files without annotations are ignored (their
number is in the manifest as ``unannotated_features``).

``--dry_run`` checks the options (for Dataflow: beam.dataflow.check_options), builds the
graph and prints what would be submitted; nothing is run, written or submitted, and no
remote file is read (remote feature sources are not listed).

Long because it is a whole job: argument checks, planning, the graph, the dry run and
the CLI.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Mapping, Sequence

import apache_beam as beam

from beam import build_shards_dofns, dataflow
from beam import feature_readers as fr
from beam import shard_io, sinks
from beam.accounting import WriteAccounting, finalize_output
from beam.class_map import load_class_map
from beam.manifest import ManifestError, base_manifest, format_summary
from beam.output_dir import prepare_output
from beam.pipeline_options import make_pipeline_options, options_for_manifest, run_pipeline
from tags_tf import console, kernels
from tags_tf.data.schema import DEAD_LETTER_NAME, MANIFEST_NAME, Manifest
from tags_tf.data.annotation_files import load_annotations
from tags_tf.data.annotations import AnnotationError, AnnotationSet

_LOG = logging.getLogger(__name__)


def _shard_counts(subsets: Sequence[str], per_subset: Mapping[str, int], num_shards) -> dict[str, int]:
    if isinstance(num_shards, Mapping):
        return {s: int(num_shards.get(s, 0)) or shard_io.auto_num_shards(per_subset[s]) for s in subsets}
    n = int(num_shards or 0)
    if n < 0:
        raise ValueError(f"--num_shards {n}: expected >= 0 (0 = automatic)")
    return {s: n or shard_io.auto_num_shards(per_subset[s]) for s in subsets}


def _canonical_key(video):
    return fr.canonical_id(video.video_id), video


def run_build_shards(
    annotations: str | AnnotationSet,
    features: str | Sequence[str],
    output: str,
    video_info: str | None = None,
    num_shards: int | Mapping[str, int] = 0,
    compression: str | None = None,
    pipeline_args: Sequence[str] | None = None,
    *,
    features2: str | None = None,
    subsets: Sequence[str] | str | None = None,
    feature_dim: int | None = None,
    class_map: str | Sequence[str] | None = None,
    reject_bad_segments: bool = False,
    video_ids: Sequence[str] | None = None,
    annotation_format: str = "auto",
    overwrite: bool = False,
    dry_run: bool = False,
) -> dict:
    """Builds shards; returns the manifest dict written to ``output`` plus, in the
    returned dict only, ``beam_counters`` ({counter: value}, see beam.pipeline_options).

    With ``dry_run`` nothing is run or written: returns beam.dataflow.dry_run_report's
    dict (``summary``, ``num_transforms``, ...) once the options are checked and the
    graph is built.

    Args:
      annotations: an annotation file (any layout of tags_tf.data.annotations) or an
        already loaded AnnotationSet.
      features: feature source (see beam.feature_readers), or a pair of sources for
        two-stream features (same as ``features2``).
      output: output directory (local or any Beam file system).
      video_info: BSN/BMN ``video_info_new.csv``.
      num_shards: shards per subset; 0 = about 256 videos a shard; or {subset: n}.
      compression: None or "gzip".
      pipeline_args: Beam options (``["--runner", "DataflowRunner", ...]``).
      features2: second stream, concatenated after ``features`` on the channel axis.
      subsets: subsets to write (default: every subset of the file).
      feature_dim: expected D; default: the most common D among the inputs.
      class_map: class names in id order, or a file for load_class_map (a video
        with a label outside it is rejected as unknown_label). Default: the sorted
        labels of the annotation file (AnnotationSet.class_names, the evaluator's ids).
      reject_bad_segments: reject a video having a bad segment -- end <= start after
        clipping, or malformed in the annotation file (default: drop and count it).
        An unusable annotation entry (tags_tf.data.annotations' ``problem``, e.g. an id
        listed twice) is always rejected; the run completes either way.
      video_ids: restrict the inputs to these ids, ``v_`` prefix tolerated (other
        videos are not inputs at all).
      annotation_format: ``fmt`` of load_annotations.
      overwrite: replace the shards/manifest of an earlier run in ``output``.
      dry_run: check the options and build the graph only (see above).

    Raises AnnotationError / ValueError / FileNotFoundError / FileExistsError with a
    one-line message for bad arguments; bad *videos* never raise, they are rejected.
    """
    output = os.fspath(output)
    if isinstance(annotations, AnnotationSet):
        ann = annotations
    else:
        annotations = os.fspath(annotations)
        ann = load_annotations(annotations, video_info=video_info, fmt=annotation_format)
    if isinstance(subsets, str):
        subsets = [s for s in subsets.split(",") if s]
    selected = ann.subset(subsets) if subsets else ann
    if isinstance(class_map, (str, os.PathLike)):
        class_map = os.fspath(class_map)
        class_names = load_class_map(class_map)
    else:
        class_names = list(class_map) if class_map is not None else list(ann.class_names)
    class_index = {n: i for i, n in enumerate(class_names)}

    videos = sorted(selected.videos.values(), key=lambda v: v.video_id)
    if video_ids is not None:
        wanted = {fr.canonical_id(i) for i in video_ids}  # "v_" prefix either way
        videos = [v for v in videos if fr.canonical_id(v.video_id) in wanted]
    # Spelled as in the file; a video without a usable subset is rejected, never sharded.
    subset_names = sorted({v.subset for v in selected.videos.values() if v.problem is None})
    for s in subset_names:
        shard_io.check_subset_name(s)
    per_subset = {s: sum(1 for v in videos if v.subset == s) for s in subset_names}
    shard_counts = _shard_counts(subset_names, per_subset, num_shards)
    comp = shard_io.compression_type(compression)

    if isinstance(features, (str, os.PathLike)):
        features = os.fspath(features)
    else:
        features = [os.fspath(f) for f in features]
        if len(features) == 2 and features2 is None:
            features, features2 = features
        elif len(features) == 1:
            features = features[0]
        else:
            raise ValueError(f"features: expected one source or two (two-stream), got {features}")
    sources = [features] + ([os.fspath(features2)] if features2 else [])
    options, runner = make_pipeline_options(pipeline_args)
    warnings = dataflow.check_options(
        options, {"--output": output, "--features": sources[0], "--features2": features2}, dry_run=dry_run
    )
    # A dry run reads no remote file (no network): a remote source is not listed.
    unlisted = [s for s in sources if dry_run and not dataflow.is_local(s)]
    indexes = [{} if s in unlisted else fr.index_features(s) for s in sources]
    known = {fr.canonical_id(v) for v in ann.videos}
    unannotated = sum(1 for k in indexes[0] if fr.canonical_id(k) not in known)

    if not dry_run:
        prepare_output(output, overwrite)
    base = base_manifest(
        "beam.build_shards",
        class_names,
        feature_dim,
        comp,
        shard_counts,
        snippet_times="uniform over the duration",
        segment_policy="reject_bad_segments" if reject_bad_segments else "clip_to_duration_drop_empty",
        sources={
            "annotations": getattr(ann, "source", "") if isinstance(annotations, AnnotationSet) else str(annotations),
            "annotation_format": ann.fmt,
            "video_info": video_info,
            "features": sources,
            "class_map": class_map if isinstance(class_map, str) else None,
        },
        pipeline_options=options_for_manifest(options),
        unannotated_features=unannotated,
    )
    _LOG.info("build_shards: %d videos in %s -> %s", len(videos), subset_names, output)

    pipeline = beam.Pipeline(runner=runner, options=options)
    build_pipeline(
        pipeline, videos, indexes, sources, output, base, shard_counts, comp, class_index, feature_dim,
        reject_bad_segments,
    )
    if dry_run:
        details = [f"{len(videos)} annotated videos in {subset_names}", f"shards per subset {shard_counts}"]
        details += [f"features {s} not listed (remote; the workers read them)" for s in unlisted]
        details.append(f"output {output}")
        return dataflow.dry_run_report(pipeline, options, "beam.build_shards", details, warnings)
    counters = run_pipeline(pipeline)
    # Checked against the records on disk: a runner that lost records fails here.
    manifest = {**finalize_output(output, base, num_inputs=len(videos)).to_dict(), "beam_counters": counters}
    _LOG.info("build_shards counters: %s", manifest["beam_counters"])
    return manifest


def assign_shards(videos, shard_counts: Mapping[str, int]) -> dict[str, tuple[str, int]]:
    """video id -> (subset, shard index): round robin over the ids of each subset, sorted.

    Deterministic and balanced (shard sizes differ by at most one before rejections).
    """
    out, seen = {}, {}
    for v in sorted(videos, key=lambda v: v.video_id):
        i = seen.get(v.subset, 0)
        out[v.video_id] = (v.subset, i % shard_counts[v.subset])
        seen[v.subset] = i + 1
    return out


def _shard_key(element, shard_of):
    video, _ = element
    return shard_of[video.video_id], element


def build_pipeline(
    p, videos, indexes, sources, output, base, shard_counts, compression, class_index, feature_dim,
    reject_bad_segments,
):
    """Adds the build_shards graph to pipeline ``p`` (see beam.build_shards_dofns for the stages)."""
    rej, select = sinks.REJECTED, sinks.select
    keyed = p | "Annotations" >> beam.Create(videos) | "KeyByCanonicalId" >> beam.Map(_canonical_key)
    # Every DoFn runs in TagOutputs (one output of (tag, value)): see beam.sinks for why.
    dedup = (
        keyed
        | "GroupIds" >> beam.GroupByKey()
        | "Dedupe" >> beam.ParDo(sinks.TagOutputs(build_shards_dofns.DedupeFn()))
    )
    resolved = select(dedup, sinks.MAIN, "DedupeOk") | "Resolve" >> beam.ParDo(
        sinks.TagOutputs(build_shards_dofns.ResolveFeaturesFn(indexes, sources))
    )
    resolved_ok = select(resolved, sinks.MAIN, "ResolveOk")
    side = []
    if feature_dim is None:
        majority = (
            resolved_ok
            | "PeekDim" >> beam.ParDo(build_shards_dofns.PeekDimFn())
            | "MajorityDim" >> beam.CombineGlobally(build_shards_dofns.MajorityDimFn())
        )
        side.append(beam.pvalue.AsSingleton(majority))  # expected_dim of BuildShardFn.process
    # Only (video, refs) pairs are shuffled; every shard gets a marker so it exists even if empty.
    markers = p | "ShardMarkers" >> beam.Create([((s, i), None) for s, n in shard_counts.items() for i in range(n)])
    shard_of = assign_shards([v for v in videos if v.problem is None], shard_counts)
    work = resolved_ok | "KeyByShard" >> beam.Map(_shard_key, shard_of)
    shards = (
        (markers, work)
        | "ShardWork" >> beam.Flatten()
        | "GroupShards" >> beam.GroupByKey()
        | "BuildShards"
        >> beam.ParDo(
            sinks.TagOutputs(
                build_shards_dofns.BuildShardFn(
                    output, shard_counts, compression, class_index, feature_dim, reject_bad_segments
                )
            ),
            *side,
        )
    )
    rejected = (
        select(dedup, rej, "DedupeRejected"),
        select(resolved, rej, "ResolveRejected"),
        select(shards, rej, "BuildRejected"),
    ) | "AllRejected" >> beam.Flatten()
    summaries = select(shards, sinks.SUMMARY, "Summaries")
    files = select(shards, sinks.MAIN, "ShardFiles")
    # Last: on the DaskRunner only the last transform's ancestors run.
    return (summaries, rejected, files) | "Accounting" >> WriteAccounting(output)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m beam.build_shards",
        description="Annotations + pre-extracted features -> TFRecord shards (unknown flags go to Beam).",
    )
    ap.add_argument("--annotations", required=True, help="annotation file (ActivityNet/ActionFormer/G-TAD/BSN json)")
    ap.add_argument("--video_info", "--video-info", default=None, help="BSN/BMN video_info_new.csv")
    ap.add_argument("--annotation_format", "--annotation-format", default="auto")
    ap.add_argument("--features", required=True, help="directory / .h5 / .npy / .csv / glob")
    ap.add_argument("--features2", default=None, help="second stream (e.g. flow), concatenated on channels")
    ap.add_argument("--output", required=True)
    ap.add_argument("--num_shards", "--num-shards", type=int, default=0, help="per subset; 0 = ~256 videos a shard")
    ap.add_argument("--compression", default=None, choices=[None, "gzip", "GZIP", "none"])
    ap.add_argument("--subsets", default=None, help="comma-separated, default: all subsets of the file")
    ap.add_argument("--feature_dim", "--feature-dim", type=int, default=None, help="default: majority of inputs")
    ap.add_argument("--class_map", "--class-map", default=None, help="manifest.json / json / csv / txt of class names")
    ap.add_argument("--reject_bad_segments", "--reject-bad-segments", action="store_true")
    ap.add_argument("--video_ids", "--video-ids", default=None, help="comma-separated ids or @file (one a line)")
    ap.add_argument("--overwrite", action="store_true", help="replace shards of an earlier run in --output")
    ap.add_argument(
        "--dry_run", "--dry-run", action="store_true",
        help="check the options, build the graph and print what would be submitted; run nothing",
    )
    ap.add_argument("--log_level", "--log-level", default="INFO")
    console.add_argument(ap)
    kernels.add_argument(ap)
    return ap


def _video_ids(arg: str | None) -> list[str] | None:
    if not arg:
        return None
    if arg.startswith("@"):
        with open(arg[1:]) as f:
            return [line.strip() for line in f if line.strip()]
    return [s for s in arg.split(",") if s]


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    console.setup(args.verbose, level=args.log_level.upper(), fmt="%(levelname)s %(name)s: %(message)s")
    _LOG.info("%s", kernels.select(args.kernels))  # before anything imports TensorFlow
    try:
        manifest = run_build_shards(
            args.annotations,
            args.features,
            args.output,
            video_info=args.video_info,
            num_shards=args.num_shards,
            compression=args.compression,
            pipeline_args=beam_args,
            features2=args.features2,
            subsets=args.subsets,
            feature_dim=args.feature_dim,
            class_map=args.class_map,
            reject_bad_segments=args.reject_bad_segments,
            video_ids=_video_ids(args.video_ids),
            annotation_format=args.annotation_format,
            overwrite=args.overwrite,
            dry_run=args.dry_run,
        )
    except (AnnotationError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"build_shards: error: {e}", file=sys.stderr)
        return 2
    except ManifestError as e:
        print(f"build_shards: error: the output does not account for every input: {e}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(manifest["summary"])
        return 0
    print(format_summary(Manifest.from_dict(manifest), args.output))
    print(f"wrote {args.output}/{MANIFEST_NAME} and {DEAD_LETTER_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
