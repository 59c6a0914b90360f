"""Raw videos -> snippet features -> TFRecord shards (the tags_tf.data.features schema).

    python -m beam.extract_features --videos DIR_OR_GLOB [--annotations FILE] \\
        --encoder SPEC --output DIR [--snippet_frames 16 --snippet_stride 16 --fps F \\
        --batch_size B --allow_random_init] [--dry_run] [Beam options ...]

Pipeline: plan (launcher: list files, match annotations) -> decode with PyAV into
N-frame snippets every S frames (``beam.video_decode``) -> the encoder
(``beam.encoders``) through ``RunInference`` with our ``EncoderModelHandler``, keyed by
(video_id, snippet_index) -> regroup per video, sort by snippet index -> (T, D) ->
``make_example`` -> shards + ``manifest.json`` + ``rejected.jsonl`` (``beam.accounting``).

Without ``--annotations`` every video goes to subset ``--subset`` (default
"inference") with no segments, so the shards feed ``tags-evaluate``/serving batch
inference directly. With annotations, subsets and segments come from the file
(``--subset`` then keeps only those subsets); segments are clipped to the duration
read from the video container.

Every input video is accounted for: written + rejected = inputs (the job fails
otherwise). The local runner is used unless ``--runner`` names another one
(Dataflow/Flink/Spark options pass through; ``--setup_file ./setup.py`` ships the
package; workers need the ``video`` extra: PyAV, tf-models-official for MoViNet).

``--dry_run`` checks the options (for Dataflow: beam.dataflow.check_options, with a
machine-type recommendation for the CPU-bound encoder), builds the graph and prints what
would be submitted; nothing is run, written or submitted, and no remote file is read
(remote videos are not listed, remote encoder weights not opened).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from beam import dataflow, shard_io, sinks
from beam.accounting import WriteAccounting, finalize_output
from beam.encoders import ClipSpec, EncoderError, EncoderSpec, clip_spec
from beam.extract_features_dofns import META, AssembleVideoFn, DecodeBatchesFn, list_videos, plan_tasks
from beam.manifest import ManifestError, base_manifest, format_summary
from beam.model_handler import EncoderModelHandler
from beam.output_dir import prepare_output
from beam.pipeline_options import make_pipeline_options, options_for_manifest, run_pipeline
from beam.video_decode import RESIZE_MODES, DecodeOptions
from tags_tf import console, kernels
from tags_tf.data.annotation_files import load_annotations
from tags_tf.data.annotations import AnnotationError
from tags_tf.data.schema import Manifest

log = logging.getLogger(__name__)

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m beam.extract_features",
        description="Extract snippet features from raw videos into TAGS TFRecord shards.",
        epilog="Unknown flags are passed to Beam (e.g. --runner DataflowRunner --project P ...).",
    )
    p.add_argument("--videos", required=True, help="directory of videos, one video file, or a glob")
    p.add_argument("--annotations", help="annotation file (ActivityNet/ActionFormer/G-TAD json, BSN json)")
    p.add_argument("--video_info", help="BSN/BMN video_info_new.csv (default: next to --annotations)")
    p.add_argument(
        "--subset",
        help="without --annotations: the subset name written (default 'inference'); "
        "with --annotations: comma-separated subsets to keep",
    )
    p.add_argument(
        "--encoder",
        required=True,
        help="movinet:a0[:checkpoint=P] | keras_app:NAME[:weights=P] | savedmodel:PATH (see beam.encoders)",
    )
    p.add_argument("--output", required=True, help="output directory (local or any Beam file system)")
    p.add_argument("--snippet_frames", type=int, default=16, help="frames per snippet N (default 16, as the paper)")
    p.add_argument("--snippet_stride", type=int, default=16, help="frames between snippet starts S (default 16)")
    p.add_argument("--fps", type=float, default=None, help="resample videos to this frame rate first (default: native)")
    p.add_argument("--resize_mode", choices=RESIZE_MODES, default="crop", help="crop: shorter side + centre crop")
    p.add_argument(
        "--drop_last", action="store_true", help="no padded last snippet for the frames after the last full window"
    )
    p.add_argument("--min_snippets", type=int, default=2, help="reject videos with fewer snippets (default 2)")
    p.add_argument("--batch_size", type=int, default=8, help="max snippets per encoder call (default 8)")
    p.add_argument("--num_shards", type=int, default=0, help="shards per subset (0: ~256 videos a shard)")
    p.add_argument("--compression", default="", help="'gzip' or none")
    p.add_argument("--overwrite", action="store_true", help="replace the shards of an earlier run in --output")
    p.add_argument(
        "--allow_random_init",
        action="store_true",
        help="allow an encoder without weights (random features: tests and smoke runs only)",
    )
    p.add_argument(
        "--dry_run",
        "--dry-run",
        action="store_true",
        help="check the options, build the graph and print what would be submitted; run nothing",
    )
    kernels.add_argument(p)
    console.add_argument(p)
    return p


def _load_annotations(args):
    subset = [s for s in args.subset.split(",") if s] if args.subset else None
    return load_annotations(args.annotations, video_info=args.video_info, subset=subset)


def _offline_clip_spec(spec: str, snippet_frames: int):
    """The clip size of ``spec`` without opening its remote weights (a dry run).

    A SavedModel's size is read from its signature at submission; until then its
    ``size=`` option or 224 x 224 stands in (the graph's transforms are the same).
    """
    parsed = EncoderSpec.parse(spec)
    if parsed.kind == "savedmodel":
        m = re.fullmatch(r"([1-9]\d*)(?:x([1-9]\d*))?", parsed.get("size") or "224")
        if not m:
            raise EncoderError(f"encoder spec {spec}: size must be H or HxW (positive ints)")
        return ClipSpec(snippet_frames, int(m.group(1)), int(m.group(2) or m.group(1)))
    bare = ":".join([parsed.kind, parsed.name] + [f"{k}={v}" for k, v in parsed.options
                                                  if k not in ("checkpoint", "weights")])
    return clip_spec(bare, snippet_frames, allow_random_init=True)


def run(argv: Sequence[str] | None = None) -> dict:
    """Runs the job; returns the manifest dict. Raises on bad arguments.

    With ``--dry_run``: returns beam.dataflow.dry_run_report's dict (``summary``,
    ``num_transforms``, ...) once the options are checked and the graph is built.
    """
    args, pipeline_args = build_parser().parse_known_args(argv)
    for name in ("snippet_frames", "snippet_stride", "min_snippets", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.num_shards < 0:
        raise ValueError(f"--num_shards must be >= 0, got {args.num_shards}")
    compression = shard_io.compression_type(args.compression)
    options, runner = make_pipeline_options(pipeline_args)
    weights = dataflow.encoder_weights_path(args.encoder)
    warnings = dataflow.check_options(
        options, {"--output": args.output, "--videos": args.videos, "--encoder": weights},
        dry_run=args.dry_run, encoder_job=True,
    )
    # A dry run reads no remote file (no network): remote weights and videos are not opened.
    offline = args.dry_run and weights is not None and not dataflow.is_local(weights)
    if offline:
        clip = _offline_clip_spec(args.encoder, args.snippet_frames)
    else:
        clip = clip_spec(args.encoder, args.snippet_frames, args.allow_random_init)
    decode = DecodeOptions(
        snippet_frames=args.snippet_frames,
        snippet_stride=args.snippet_stride,
        fps=args.fps,
        height=clip.height,
        width=clip.width,
        resize_mode=args.resize_mode,
        pad_last=not args.drop_last,
    )
    unlisted = args.dry_run and not dataflow.is_local(args.videos)
    files = [] if unlisted else list_videos(args.videos)
    annotations = None
    if args.annotations:
        annotations = _load_annotations(args)
        tasks = plan_tasks(files, annotations)
    else:
        if not files and not unlisted:
            raise FileNotFoundError(f"--videos {args.videos}: no video files found")
        tasks = plan_tasks(files, None, shard_io.check_subset_name(args.subset or "inference"))
    counts: dict[str, int] = {}
    for t in tasks:
        if t["subset"]:
            counts[t["subset"]] = counts.get(t["subset"], 0) + (0 if t["reject"] else 1)
    num_shards = {
        shard_io.check_subset_name(s): args.num_shards or shard_io.auto_num_shards(n) for s, n in sorted(counts.items())
    }
    class_names = list(annotations.class_names) if annotations is not None else []
    if not args.dry_run:
        prepare_output(args.output, args.overwrite)
    base = base_manifest(
        "beam.extract_features",
        class_names,
        None,  # feature_dim: filled from the written videos
        compression,
        num_shards,
        snippet_times="centres of the decoded snippets (seconds)",
        segment_policy="clip_to_duration_drop_empty",
        sources={
            "videos": args.videos,
            "num_video_files": len(files),
            "annotations": args.annotations,
            "annotation_format": annotations.fmt if annotations is not None else None,
            "video_info": args.video_info,
        },
        pipeline_options=options_for_manifest(options),
        encoder={
            "spec": args.encoder,
            "clip_frames": clip.frames,
            "height": clip.height,
            "width": clip.width,
            "snippet_stride": args.snippet_stride,
            "fps": args.fps,
            "resize_mode": args.resize_mode,
            "pad_last": not args.drop_last,
            "random_init": bool(args.allow_random_init),
        },
    )
    # Pre-batched (DecodeBatchesFn): no BatchElements, whose last batch the DaskRunner drops.
    handler = KeyedModelHandler(
        EncoderModelHandler(
            args.encoder,
            snippet_frames=args.snippet_frames,
            allow_random_init=args.allow_random_init,
            max_batch_size=args.batch_size,
        )
    ).with_no_batching()
    shard_of = assign_shards(tasks, num_shards)
    log.info("%d input videos (%d video files) -> %s", len(tasks), len(files), args.output)
    p = beam.Pipeline(runner=runner, options=options)
    build_pipeline(p, tasks, decode, args.min_snippets, args.batch_size, handler, class_names, args.output,
                   num_shards, shard_of, compression)
    if args.dry_run:
        details = [f"encoder {args.encoder} on {clip.frames}x{clip.height}x{clip.width} clips"]
        if offline and EncoderSpec.parse(args.encoder).kind == "savedmodel":
            details[0] += " (a stand-in size: the SavedModel's own is read at submission)"
        if unlisted:
            details.append(f"videos {args.videos} not listed (remote; the workers read them)")
        else:
            details.append(f"{len(tasks)} input videos ({len(files)} video files)")
        details.append(f"output {args.output}")
        return dataflow.dry_run_report(p, options, "beam.extract_features", details, warnings)
    run_pipeline(p)
    # Checked against the records on disk: a runner that lost records fails here.
    return finalize_output(args.output, base, num_inputs=len(tasks)).to_dict()


def assign_shards(tasks: Sequence[dict], num_shards: dict[str, int]) -> dict[str, tuple[str, int]]:
    """video id -> (subset, shard): round robin over the sorted ids of each subset's
    videos that may be written (tasks not rejected up front)."""
    out, seen = {}, {}
    for t in sorted((t for t in tasks if not t["reject"] and t["subset"]), key=lambda t: t["video_id"]):
        i = seen.get(t["subset"], 0)
        out[t["video_id"]] = (t["subset"], i % num_shards[t["subset"]])
        seen[t["subset"]] = i + 1
    return out


def build_pipeline(p, tasks, decode, min_snippets, batch_size, handler, class_names, output, num_shards, shard_of,
                   compression):
    """Adds the extract graph to ``p``; every DoFn runs in sinks.TagOutputs (see beam.sinks for why)."""
    select = sinks.select
    decoded = (
        p
        | "Tasks" >> beam.Create(tasks)
        | "Decode" >> beam.ParDo(sinks.TagOutputs(DecodeBatchesFn(decode, min_snippets, batch_size)))
    )
    features = (
        select(decoded, sinks.MAIN, "Snippets")
        | "Encode" >> RunInference(handler)  # [((vid, idx), clip)] -> ((vid, idx), (D,)) each
        | "ByVideo" >> beam.MapTuple(lambda key, feat: (key[0], (key[1], feat)))
    )
    assembled = (
        {META: select(decoded, META, "Meta"), "features": features}
        | "GroupByVideo" >> beam.CoGroupByKey()
        | "Assemble" >> beam.ParDo(sinks.TagOutputs(AssembleVideoFn(class_names)))
    )
    shard_files = select(assembled, sinks.MAIN, "Examples") | "WriteShards" >> shard_io.WriteShards(
        output, num_shards, shard_of, compression
    )
    rejected = (
        select(decoded, sinks.REJECTED, "DecodeRejected"),
        select(assembled, sinks.REJECTED, "AssembleRejected"),
    ) | "AllRejected" >> beam.Flatten()
    summaries = select(assembled, sinks.SUMMARY, "Summaries")
    # Last: on the DaskRunner only the last transform's ancestors run.
    return (summaries, rejected, shard_files) | "Accounting" >> WriteAccounting(output)


def main(argv: Sequence[str] | None = None) -> int:
    argv_ = sys.argv[1:] if argv is None else argv
    console.setup(console.verbose_in(argv_), fmt="%(levelname)s %(name)s: %(message)s")
    # Before the encoder imports TensorFlow; DoFns on remote workers keep their image's setting.
    logging.getLogger(__name__).info("%s", kernels.select_from_argv(argv_))

    try:
        manifest = run(argv)
    except (EncoderError, AnnotationError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"extract_features: error: {e}", file=sys.stderr)
        return 2
    except ManifestError as e:
        print(f"extract_features: error: the output does not account for every input: {e}", file=sys.stderr)
        return 1
    if manifest.get("dry_run"):
        print(manifest["summary"])
        return 0
    output = build_parser().parse_known_args(argv_)[0].output
    print(format_summary(Manifest.from_dict(manifest), output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
