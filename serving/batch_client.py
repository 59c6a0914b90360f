"""Command line of the gRPC client (``python -m serving.client``): inputs, batching, outputs.

Reads (video_id, features, duration) from .npy files, folders or TFRecord shards, sends
them through :class:`serving.grpc_client.DetectionClient` (optionally resampled and batched,
several requests in flight), prints a table and writes ActivityNet-format JSON::

    python -m serving.client --server HOST:8500 --model tags --features video.npy --duration 120.5 \\
        [--signature detect] [--labels classes.json] [--json out.json] [--timeout 10] [--retries 3]
    # batch mode: every .npy in a folder (durations from a CSV/JSON or an annotation file)
    python -m serving.client --server HOST:8500 --features FEATURE_DIR --durations durations.csv --json out.json
    python -m serving.client --server HOST:8500 --features FEATURE_DIR --annotations anet.json
    # batch mode: TFRecord shards in the tags_tf.data.features schema (duration from each example)
    python -m serving.client --server HOST:8500 --shards 'shards/validation-*.tfrecord*' --json out.json
    # video files: decoded here, encoded by the model's encode_jpeg signature (serving.video_client)
    python -m serving.client --server HOST:8500 --video clip.mp4 [more.mp4 ...] --json out.json
    # fixed-shape requests of 16 videos (what TF Serving's --enable_batching needs)
    python -m serving.client --server HOST:8500 --shards '...' --resample --batch-size 16 --concurrency 4

Every call has a deadline (``--timeout`` seconds); calls failing with UNAVAILABLE are
retried ``--retries`` times with exponential backoff; before its first call the client
waits (up to ``--wait`` seconds) until ``ModelService.GetModelStatus`` reports a version
AVAILABLE. Feature files hold one (T, D) float32 array per video; T may be any length
(the ``detect`` signature resamples).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import logging
import sys
from concurrent import futures
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf

from serving import signatures, video_client
from serving.grpc_client import ClientInputError, DetectionClient, ServingError, VideoDetections, resample
from tags_tf import console
from tags_tf.data import features as schema
from tags_tf.data.annotation_files import load_annotations
from tags_tf.data.annotations import AnnotationError
from tags_tf.data.schema import alternate_video_id
from tags_tf.evaluation.submission import ResultsWriter

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------
# Inputs of the CLI: (video_id, features (T, D), duration) from files, folders, shards.


def load_class_names(path: str | Path) -> list[str]:
    """A JSON list of names (index = class id) or {"class_names": [...]}; ClientInputError otherwise."""
    return signatures.read_class_names(path, ClientInputError)


def load_durations(path: str | Path) -> dict[str, float]:
    """Video durations (seconds) from a CSV or JSON file.

    CSV: a header with a video column (``video_id``/``video``/``id``) and a duration
    column (``duration``/``seconds``, e.g. BMN's video_info_new.csv). JSON: ``{video_id:
    seconds}`` or ``{video_id: {"duration": seconds}}``.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ClientInputError(f"{path}: cannot read durations ({e})") from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            return {str(k): float(v["duration"] if isinstance(v, Mapping) else v) for k, v in data.items()}
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as e:
            raise ClientInputError(
                f"{path}: expected {{video_id: seconds}} or {{video_id: {{\"duration\": s}}}} ({e})") from e
    rows = list(csv.DictReader(text.splitlines()))
    header = rows[0].keys() if rows else []
    vid = next((c for c in ("video_id", "video", "id") if c in header), None)
    dur = next((c for c in ("duration", "seconds") if c in header), None)
    if not vid or not dur:
        raise ClientInputError(f"{path}: CSV needs a header with video_id (or video) and duration (or seconds) columns")
    try:
        return {r[vid]: float(r[dur]) for r in rows}
    except (TypeError, ValueError) as e:
        raise ClientInputError(f"{path}: bad duration value ({e})") from e


def durations_from_annotations(path: str | Path) -> dict[str, float]:
    """Durations of every video of an annotation file (``tags_tf.data.annotations`` formats)."""
    try:
        videos = load_annotations(str(path)).videos
    except AnnotationError as e:
        raise ClientInputError(str(e)) from e
    return {vid: float(v.duration) for vid, v in videos.items() if v.duration is not None}


def _lookup(durations: Mapping[str, float], video_id: str) -> float | None:
    for key in (video_id, alternate_video_id(video_id)):  # the v_ rule of tags_tf.data.schema
        if key in durations:
            return durations[key]
    return None


def load_features(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ClientInputError(f"{path}: cannot read features ({e})") from e
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise ClientInputError(f"{path}: features must be a (T, D) float array, got {arr.dtype} {list(arr.shape)}")
    return arr.astype(np.float32)


def iter_feature_files(
    path: Path, duration: float | None, durations: Mapping[str, float] | None
) -> Iterator[tuple[str, np.ndarray | ClientInputError, float]]:
    """(video_id, features or the error reading them, duration) per .npy file."""
    files = sorted(path.glob("*.npy")) if path.is_dir() else [path]
    if not files:
        raise ClientInputError(f"{path}: no .npy feature files")
    return _feature_files(files, duration, durations)


def _feature_files(files, duration, durations):
    for f in files:
        video_id = f.stem
        d = duration if duration is not None else (_lookup(durations, video_id) if durations else None)
        if d is None:
            yield video_id, ClientInputError(f"{f}: no duration for video {video_id!r} "
                                       "(give --duration, --durations or --annotations)"), 0.0
            continue
        try:
            yield video_id, load_features(f), d
        except ClientInputError as e:
            yield video_id, e, d


def iter_shards(pattern: str) -> Iterator[tuple[str, np.ndarray, float]]:
    """(video_id, features (T, D), duration) of every example of the matching shards."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ClientInputError(f"--shards {pattern}: no files match")
    return _shard_examples(files)


def _shard_examples(files):
    for f in files:
        compression = "GZIP" if f.endswith(".gz") else ""
        try:
            for record in tf.data.TFRecordDataset(f, compression_type=compression).as_numpy_iterator():
                ex = schema.example_to_numpy(record)
                yield ex[schema.VIDEO_ID], ex[schema.FEATURES], float(ex[schema.DURATION])
        except tf.errors.OpError as e:
            raise ClientInputError(f"{f}: cannot read shard ({e.message.splitlines()[0]})") from e


# ----------------------------------------------------------------------------------
# Output


def format_table(results: Mapping[str, VideoDetections], class_names: Sequence[str] | None, top: int) -> str:
    lines = [f"{'video':<24} {'#':>3} {'label':<28} {'score':>7} {'start':>9} {'end':>9}"]
    for video_id, dets in results.items():
        if not len(dets):
            lines.append(f"{video_id:<24} {'-':>3} (no detections)")
        for i, r in enumerate(dets.records(class_names)[:top]):
            lines.append(f"{video_id:<24} {i + 1:>3} {r['label'][:28]:<28} {r['score']:>7.4f} "
                         f"{r['segment'][0]:>9.2f} {r['segment'][1]:>9.2f}")
    return "\n".join(lines)


def write_results_json(path: str | Path, results: Mapping[str, VideoDetections], class_names: Sequence[str] | None) -> None:
    """ActivityNet-1.3 results file via ``tags_tf.evaluation.submission.ResultsWriter``.

    Without ``class_names`` the labels are the names the server sent with the detections
    (the exported model's class names), else the class ids as strings.
    """
    if class_names is None:
        k = max((int(d.classes.max()) + 1 for d in results.values() if len(d)), default=0)
        sent = {int(c): lab for d in results.values() if d.labels is not None for c, lab in zip(d.classes, d.labels)}
        class_names = [sent.get(i, str(i)) for i in range(k)]
    writer = ResultsWriter(class_names, external_data={"used": False, "details": "TAGS over TF Serving gRPC"})
    for video_id, dets in results.items():
        writer.add(video_id, dets.segments, dets.scores, dets.classes)
    if not results:
        logger.warning("no detections to write to %s", path)
    writer.write(path)


def _batches(videos, batch_size: int, num_snippets: int | None):
    """Groups consecutive videos of equal T into request batches of up to ``batch_size``.

    Unreadable inputs come out alone, as their error. With ``num_snippets`` every video
    is first resampled to that T (so all of them can share a batch).
    """
    batch: list = []
    for video_id, feats, duration in videos:
        if isinstance(feats, (ClientInputError, ServingError)):
            yield [(video_id, feats)]
            continue
        if num_snippets is not None:
            try:
                feats = resample(feats, num_snippets)
            except ClientInputError as e:
                yield [(video_id, ClientInputError(f"{video_id}: {e}"))]
                continue
        if batch and (len(batch) == batch_size or batch[0][1].shape != feats.shape):
            yield batch
            batch = []
        batch.append((video_id, feats, duration))
    if batch:
        yield batch


def _ordered_map(pool: futures.Executor, fn, items, limit: int):
    """pool.map that keeps at most ``limit`` items in flight (features are not all loaded)."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="127.0.0.1:8500", help="HOST:PORT of the gRPC endpoint")
    p.add_argument("--model", default="tags", help="model name in the server's model config")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", help="a (T, D) .npy file, or a folder of them (batch mode)")
    src.add_argument("--shards", help="TFRecord shard glob in the tags_tf.data.features schema (batch mode)")
    src.add_argument("--video", nargs="+", metavar="FILE",
                     help="video files, decoded here at the model's frame rate and encoded by the server "
                          "(a model exported with --video-encoder)")
    p.add_argument("--raw-frames", "--raw_frames", dest="raw_frames", action="store_true",
                   help="with --video: send raw uint8 frames (exact, ~50x the bytes) instead of JPEG")
    p.add_argument("--jpeg-quality", "--jpeg_quality", dest="jpeg_quality", type=int,
                   default=video_client.DEFAULT_JPEG_QUALITY, help="with --video: JPEG quality (default 90)")
    p.add_argument("--chunk-bytes", "--chunk_bytes", dest="chunk_bytes", type=int,
                   help="with --video: payload bytes per encode request (default and maximum: the model's limit)")
    p.add_argument("--duration", type=float, help="duration in seconds (single file)")
    p.add_argument("--durations", help="CSV (video_id,duration) or JSON {video_id: seconds} for a folder")
    p.add_argument("--annotations", help="annotation file giving every video's duration (ActivityNet/THUMOS)")
    p.add_argument("--signature", default=signatures.DETECT, choices=[signatures.DETECT],
                   help="signature to call (only detect yields detections)")
    p.add_argument("--labels", help="JSON list of class names, e.g. MODELS/tags/1/assets.extra/class_names.json")
    p.add_argument("--json", help="write ActivityNet-style results to this file")
    p.add_argument("--top", type=int, default=10, help="detections printed per video")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
    p.add_argument("--retries", type=int, default=3, help="retries of a call failing with UNAVAILABLE")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the model to be AVAILABLE")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight in batch mode")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=1,
                   help="videos per request (consecutive videos of equal length; see --resample)")
    p.add_argument("--resample", action="store_true",
                   help="resample features to the model's T on the client (same linear rule as the "
                        "graph): fixed-shape requests, needed for TF Serving --enable_batching")
    console.add_argument(p)
    args = p.parse_args(argv)
    console.setup(args.verbose, level=logging.WARNING, fmt="%(levelname)s %(name)s: %(message)s")

    try:
        class_names = load_class_names(args.labels) if args.labels else None
        if args.shards:
            videos = iter_shards(args.shards)
        elif args.video:
            videos = None  # needs the client: made below
        else:
            path = Path(args.features)
            if not path.exists():
                raise ClientInputError(f"--features {path}: no such file or folder")
            if path.is_file() and args.duration is None and not (args.durations or args.annotations):
                raise ClientInputError("--duration SECONDS is required with a single feature file")
            table = (load_durations(args.durations) if args.durations
                     else durations_from_annotations(args.annotations) if args.annotations else None)
            videos = iter_feature_files(path, args.duration if path.is_file() else None, table)
    except ClientInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    client = DetectionClient(args.server, args.model, signature=args.signature, timeout=args.timeout,
                             retries=args.retries, wait_timeout=args.wait)
    results: dict[str, VideoDetections] = {}
    failures = 0

    def run_batch(batch):
        """[(video_id, features, duration)] of equal T -> [(video_id, VideoDetections | error)]."""
        if len(batch[0]) == 2:  # an input error, passed through
            return batch
        try:
            dets = client.detect(np.stack([f for _, f, _ in batch]), [d for _, _, d in batch])
            return [(vid, det) for (vid, _, _), det in zip(batch, dets)]
        except ServingError as e:
            return [(vid, e) for vid, _, _ in batch]

    try:
        client.wait_until_available()
        if videos is None:
            videos = video_client.iter_videos(client, args.video, raw=args.raw_frames,
                                              jpeg_quality=args.jpeg_quality, chunk_bytes=args.chunk_bytes)
        num_snippets = client.input_snippets() if args.resample else None
        batches = _batches(videos, max(1, args.batch_size), num_snippets)
        with futures.ThreadPoolExecutor(max(1, args.concurrency)) as pool:
            for outs in _ordered_map(pool, run_batch, batches, 2 * max(1, args.concurrency)):
                for video_id, out in outs:
                    if isinstance(out, VideoDetections):
                        results[video_id] = out
                        continue
                    failures += 1
                    print(f"error: {video_id}: {out}", file=sys.stderr)
                if any(isinstance(out, ServingError) and out.code in (
                        grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) for _, out in outs):
                    break  # the server is gone; do not grind through the rest
    except (ServingError, ClientInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()

    print(format_table(results, class_names, args.top))
    if args.json:
        write_results_json(args.json, results, class_names)
        print(f"wrote {len(results)} videos to {args.json}")
    if failures:
        print(f"{failures} video(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
