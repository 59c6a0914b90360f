"""``python -m serving.export --video-encoder SPEC``: the video encoder of
``beam.extract_features`` and the trained model in one SavedModel.

The encoder is built from the same SPEC grammar (``beam.encoders``) and checked against
the ``encoder`` block of the manifest of the shards the model was trained on (found
through the run's ``dataset.json``, or ``--manifest``; its hash must be the one the run
recorded): feature width, clip size, snippet frames, stride and frame rate must all be
the trained ones, else the export stops with one line. The signatures ``encode``,
``encode_jpeg`` and ``detect_video`` (``serving.video_graph``) join ``detect``; the layout
is written to ``assets.extra/video_layout.json`` and sent with every encode reply.

MoViNet is exported on its plain-TF convolution path (``fast_conv=true``, the same
weights and outputs): the XLA-compiled path of tf-models-official needs a JIT that a
stock TF Serving build may not have.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from beam.encoders import Encoder, EncoderError, EncoderSpec, build_encoder
from serving import signatures
from serving.video_graph import input_signatures, make_video_fns
from serving.video_layout import (
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_VIDEO_BYTES,
    LayoutError,
    VideoLayout,
    check_encoder,
    layout_from_manifest,
)
from tags_tf.config import TagsConfig
from tags_tf.data.schema import MANIFEST_NAME, Manifest, ManifestFormatError
from tags_tf.training.fingerprint import FINGERPRINT_NAME, dataset_fingerprint

logger = logging.getLogger(__name__)


class VideoEndpoints:
    """The encoder and layout an export adds (``export_saved_model(..., video=...)``)."""

    def __init__(self, encoder: Encoder, layout: VideoLayout, spec: str):
        self.encoder = encoder
        self.layout = layout
        self.spec = spec

    def track(self, archive) -> None:
        for resource in self.encoder.resources:
            archive.track(resource)

    def add_endpoints(self, archive, detect) -> list[str]:
        fns = make_video_fns(self.layout, self.encoder.graph_fn, detect)
        for name, specs in input_signatures().items():
            archive.add_endpoint(name=name, fn=fns[name], input_signature=specs)
        return list(fns)

    def write_extra(self, extra_dir: Path) -> None:
        (extra_dir / signatures.VIDEO_LAYOUT_FILE).write_text(
            json.dumps({**self.layout.to_dict(), "encoder_spec": self.spec}, indent=1, sort_keys=True))

    def warmup_requests(self, model_name: str) -> list[predict_pb2.PredictRequest]:
        """One request per video signature on one snippet of black frames (TF Serving
        replays them at load: the first real request pays for no graph optimisation)."""
        n, h, w = self.layout.snippet_frames, self.layout.height, self.layout.width
        black = np.zeros([1, n, h, w, 3], np.uint8)
        jpegs = np.array([[tf.io.encode_jpeg(black[0, 0]).numpy()] * n], dtype=object)
        inputs = {
            signatures.ENCODE: {signatures.FRAMES: black},
            signatures.ENCODE_JPEG: {signatures.JPEG_FRAMES: jpegs},
            signatures.DETECT_VIDEO: {signatures.JPEG_FRAMES: jpegs,
                                      signatures.DURATION: np.array([n / (self.layout.fps or 25.0)], np.float32)},
        }
        requests = []
        for name, tensors in inputs.items():
            req = predict_pb2.PredictRequest()
            req.model_spec.name = model_name
            req.model_spec.signature_name = name
            for key, value in tensors.items():
                req.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            requests.append(req)
        return requests


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("serving from video (--video-encoder)")
    g.add_argument("--video-encoder", "--video_encoder", dest="video_encoder", metavar="SPEC",
                   help="also export the encode, encode_jpeg and detect_video signatures with this encoder "
                        "(the --encoder SPEC of beam.extract_features, e.g. movinet:a0:checkpoint=DIR)")
    g.add_argument("--manifest", help="manifest.json (or its shard folder) the model was trained on "
                                      "(default: the shard folder named in RUN_DIR/dataset.json)")
    g.add_argument("--allow-random-init", "--allow_random_init", dest="allow_random_init", action="store_true",
                   help="allow an encoder without weights (tests and smoke runs only)")
    g.add_argument("--snippet-frames", "--snippet_frames", dest="snippet_frames", type=int,
                   help="must equal the manifest's (default: the manifest's)")
    g.add_argument("--snippet-stride", "--snippet_stride", dest="snippet_stride", type=int,
                   help="must equal the manifest's (default: the manifest's)")
    g.add_argument("--fps", type=float, help="must equal the manifest's (default: the manifest's)")
    g.add_argument("--max-chunk-bytes", "--max_chunk_bytes", dest="max_chunk_bytes", type=int,
                   default=DEFAULT_MAX_CHUNK_BYTES,
                   help=f"largest frame payload of one encode request (default {DEFAULT_MAX_CHUNK_BYTES})")
    g.add_argument("--max-video-bytes", "--max_video_bytes", dest="max_video_bytes", type=int,
                   default=DEFAULT_MAX_VIDEO_BYTES,
                   help=f"largest JPEG payload of one detect_video request (default {DEFAULT_MAX_VIDEO_BYTES})")


def manifest_of_run(workdir: Path | None, manifest: str | None) -> tuple[Manifest, Path]:
    """The manifest the run was trained on: ``--manifest`` (a file or its folder), else
    the one in the shard folder that ``RUN_DIR/dataset.json`` names. When the run has a
    ``dataset.json``, the manifest's hash must be the recorded one. Raises LayoutError."""
    fingerprint = None
    if workdir is not None and (workdir / FINGERPRINT_NAME).is_file():
        fingerprint = json.loads((workdir / FINGERPRINT_NAME).read_text())
    if manifest:
        path = Path(manifest)
        path = path / MANIFEST_NAME if path.is_dir() else path
    elif fingerprint and fingerprint.get("shard_dir"):
        path = Path(fingerprint["shard_dir"]) / MANIFEST_NAME
    else:
        raise LayoutError("--video-encoder needs the manifest the model was trained on: give --manifest "
                          f"PATH (or a --workdir whose {FINGERPRINT_NAME} names its shard folder)")
    try:
        data = json.loads(path.read_text())
        parsed = Manifest.from_dict(data, str(path))
    except OSError as e:
        raise LayoutError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    except (ValueError, ManifestFormatError) as e:
        raise LayoutError(f"{path}: {e}") from None
    if fingerprint and fingerprint.get("manifest_sha256"):
        if dataset_fingerprint(parsed)["manifest_sha256"] != fingerprint["manifest_sha256"]:
            raise LayoutError(f"{path} is not the manifest this model was trained on "
                              f"(its hash differs from {workdir / FINGERPRINT_NAME}'s)")
    return parsed, path


def served_spec(spec: str) -> str:
    """``spec`` as exported: MoViNet on its plain-TF convolutions unless fast_conv is set."""
    parsed = EncoderSpec.parse(spec)
    if parsed.kind == "movinet" and parsed.get("fast_conv") is None:
        parsed = EncoderSpec(parsed.kind, parsed.name, tuple(sorted(parsed.options + (("fast_conv", "true"),))))
    return str(parsed)


def build_video_endpoints(spec: str, manifest: Manifest, manifest_path: str | Path, cfg: TagsConfig, *,
                          allow_random_init: bool = False, snippet_frames: int | None = None,
                          snippet_stride: int | None = None, fps: float | None = None,
                          max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
                          max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES) -> VideoEndpoints:
    """Builds the encoder of ``spec`` and checks it against ``manifest``. Raises
    LayoutError (layout or width mismatch) or EncoderError (a bad spec or weights)."""
    if cfg.postprocess.class_fusion == "external":
        raise LayoutError("--video-encoder: this model fuses external video-level class scores "
                          "(postprocess.class_fusion=external), which a video request cannot carry")
    trained = layout_from_manifest(manifest, str(manifest_path), max_chunk_bytes=max_chunk_bytes,
                                   max_video_bytes=max_video_bytes)
    requested = {"snippet_frames": snippet_frames, "snippet_stride": snippet_stride, "fps": fps}
    check_encoder(trained, spec, snippet_frames or trained.snippet_frames, trained.height, trained.width,
                  trained.feature_dim, requested)  # the layout flags, before building anything
    if cfg.model.feature_dim != trained.feature_dim:
        raise LayoutError(f"{manifest_path}: features of width {trained.feature_dim}, but the model takes "
                          f"{cfg.model.feature_dim}")
    exported = served_spec(spec)
    encoder = build_encoder(exported, trained.snippet_frames, allow_random_init)
    clip = encoder.clip
    check_encoder(trained, spec, clip.frames, clip.height, clip.width, encoder.feature_dim)
    logger.info("video encoder %s: %d frames every %d at %s fps, %dx%d -> D=%d", trained.encoder,
                trained.snippet_frames, trained.snippet_stride, trained.fps or "native", clip.height,
                clip.width, encoder.feature_dim)
    return VideoEndpoints(encoder, trained, exported)


def endpoints_from_args(args: argparse.Namespace, cfg: TagsConfig) -> VideoEndpoints | None:
    """The CLI's VideoEndpoints (None without --video-encoder). Raises LayoutError/EncoderError."""
    if not args.video_encoder:
        return None
    workdir = Path(args.workdir) if args.workdir else None
    manifest, path = manifest_of_run(workdir, args.manifest)
    return build_video_endpoints(
        args.video_encoder, manifest, path, cfg, allow_random_init=args.allow_random_init,
        snippet_frames=args.snippet_frames, snippet_stride=args.snippet_stride, fps=args.fps,
        max_chunk_bytes=args.max_chunk_bytes, max_video_bytes=args.max_video_bytes)


VIDEO_ERRORS: Sequence[type[Exception]] = (LayoutError, EncoderError)
