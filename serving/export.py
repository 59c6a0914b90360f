"""Exports a trained TAGS model as a versioned SavedModel for TF Serving.

Library: :func:`export_saved_model`. CLI::

    python -m serving.export --workdir RUN_DIR --output MODELS/tags/1
    python -m serving.export --checkpoint best.keras --config config.json --output MODELS/tags/1

The SavedModel (Keras 3 ``ExportArchive``) has two signatures whose input and output
names are listed in ``serving/signatures.py``: ``serving_default`` (raw model outputs for
features already resampled to ``cfg.model.input_snippets``) and ``detect`` (features of
any length + duration in seconds -> padded detections). ``detect`` resamples inside the
graph, runs the model and ``tags_tf.decode.decoder.DetectionDecoder`` (mask thresholds,
scoring, Soft-NMS), so clients need nothing but features. Bad inputs fail in the graph
with ``InvalidArgumentError`` messages that name the input ("assertion failed:
[detect: duration must be finite and > 0 seconds] ..."). Only core TF ops are used, so the
model loads in a stock ``tensorflow/serving`` build; ``serving.export.graph_op_types``
and the export test check this.

The version directory is written to a temporary sibling first and renamed at the end,
so a TF Serving instance polling the base path never sees a half-written version.

``--video-encoder SPEC`` adds the video signatures (``serving/video_export.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

if __name__ == "__main__":  # TensorFlow reads TF_ENABLE_ONEDNN_OPTS (and its log level) once, at import
    from tags_tf import console as _console
    from tags_tf import kernels as _kernels

    _console.setup(_console.verbose_in(sys.argv[1:]), fmt="%(levelname)s %(name)s: %(message)s")
    _KERNELS_LINE = _kernels.select_from_argv(sys.argv[1:], "batch")

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from serving import signatures, video_export
from tags_tf import console, kernels
from tags_tf.config import ConfigError, TagsConfig, from_dict
from tags_tf.decode.decoder import DetectionDecoder
from tags_tf.model.tags_model import TagsModel  # noqa: F401  (registers TagsModel and its layers)

logger = logging.getLogger(__name__)


class ExportError(ValueError):
    """The run directory, checkpoint, config or class names are unusable."""


def default_decoder(cfg: TagsConfig) -> keras.layers.Layer:
    """The post-processing layer shared with ``TagsModel.predict_step``."""
    return DetectionDecoder.from_tags_config(cfg)


def _check_inputs(features: tf.Tensor, duration: tf.Tensor | None, signature: str) -> list[tf.Operation]:
    """Graph asserts on the request; failures surface as InvalidArgumentError.

    Messages start with the signature name and the input so that a TF Serving error
    reply is readable without the graph.
    """
    shape = tf.shape(features)  # (3,) = [B, T, D]
    checks = [
        tf.debugging.Assert(
            shape[0] >= 1,
            [f"{signature}: {signatures.FEATURES} must hold at least one video (B >= 1), got B =", shape[0]]),
        tf.debugging.Assert(
            shape[1] >= 1,
            [f"{signature}: {signatures.FEATURES} must hold at least one snippet (T >= 1), got T =", shape[1]]),
        tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(features)),
            [f"{signature}: {signatures.FEATURES} must be finite (found NaN or Inf)"]),
    ]
    if duration is not None:
        checks += [
            tf.debugging.Assert(
                tf.equal(tf.shape(duration)[0], shape[0]),
                [f"{signature}: {signatures.DURATION} must have one value per video; got",
                 tf.shape(duration)[0], "durations for", shape[0], "videos"]),
            tf.debugging.Assert(
                tf.reduce_all(tf.math.is_finite(duration) & (duration > 0.0)),
                [f"{signature}: {signatures.DURATION} must be finite and > 0 seconds; got", duration],
                summarize=16),
        ]
    return checks


def make_serving_fns(
    model: keras.Model,
    decoder: keras.layers.Layer,
    cfg: TagsConfig,
    class_names: Sequence[str],
) -> tuple[Callable[[tf.Tensor], dict], Callable[[tf.Tensor, tf.Tensor], dict]]:
    """The Python bodies of the two signatures (traced by ExportArchive).

    Returns ``(serve_raw, detect)``: ``serve_raw(features (B, T, D))`` -> raw model
    outputs; ``detect(features (B, T_in, D), duration (B,)[, external_scores (B, K)])``
    -> detection dict (``external_scores`` only with ``postprocess.class_fusion ==
    "external"``).
    """

    def serve_raw(features):
        with tf.control_dependencies(_check_inputs(features, None, signatures.SERVING_DEFAULT)):
            features = tf.identity(features)
        outputs = model(features, training=False)
        return {k: tf.identity(v, name=k) for k, v in sorted(outputs.items())}

    def detect(features, duration, external_scores=None):
        checks = _check_inputs(features, duration, signatures.DETECT)
        if external_scores is not None:
            checks.append(tf.debugging.Assert(
                tf.equal(tf.shape(external_scores)[0], tf.shape(features)[0])
                & tf.reduce_all(tf.math.is_finite(external_scores)),
                [f"{signatures.DETECT}: {signatures.EXTERNAL_SCORES} must be finite with one row per video"]))
        with tf.control_dependencies(checks):
            features = tf.identity(features)
            duration = tf.identity(duration)
        # TagsModel.detect: resample (B, T_in, D) -> (B, T, D), model, decoder.
        out = _detections_dict(model.detect(features, duration, decoder=decoder, external_scores=external_scores))
        classes = out[signatures.DETECTION_CLASSES]  # (B, N), -1 in padded rows
        label = tf.gather(tf.constant(list(class_names), tf.string), tf.maximum(classes, 0))  # (B, N)
        out[signatures.DETECTION_CLASS_NAMES] = tf.identity(tf.where(classes >= 0, label, ""),
                                                       name=signatures.DETECTION_CLASS_NAMES)
        return out

    if cfg.postprocess.class_fusion == "external":
        return serve_raw, detect

    def detect_without_fusion(features, duration):
        return detect(features, duration)

    return serve_raw, detect_without_fusion


def _detections_dict(dets: Any) -> dict[str, tf.Tensor]:
    """Normalizes the decoder's result (dict or 4-tuple) to the named output dict."""
    if not isinstance(dets, Mapping):
        dets = dict(zip(signatures.DETECTION_OUTPUTS, dets))
    dtypes = {
        signatures.DETECTION_SEGMENTS: tf.float32,
        signatures.DETECTION_SCORES: tf.float32,
        signatures.DETECTION_CLASSES: tf.int32,
        signatures.NUM_DETECTIONS: tf.int32,
    }
    return {k: tf.identity(tf.cast(dets[k], dtypes[k]), name=k) for k in signatures.DETECTION_OUTPUTS}


def export_saved_model(
    model: keras.Model,
    cfg: TagsConfig,
    output_dir: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    *,
    decoder: keras.layers.Layer | None = None,
    overwrite: bool = False,
    video: video_export.VideoEndpoints | None = None,
) -> Path:
    """Writes the SavedModel of ``model`` to ``output_dir`` (e.g. ``MODELS/tags/1``).

    Args:
      model: a built ``TagsModel`` (call(features (B, T, D)) -> raw output dict).
      cfg: its config; fixes T = ``cfg.model.input_snippets`` and D.
      output_dir: the version directory; written atomically (temp dir + rename).
      class_names: K names (index = class id); default ``class_0 .. class_{K-1}``.
      decoder: post-processing layer; default ``DetectionDecoder`` built from ``cfg``.
      overwrite: replace an existing ``output_dir``.
      video: the encoder and layout of ``serving.video_export`` (adds ``encode``,
        ``encode_jpeg`` and ``detect_video``).

    Returns:
      ``Path(output_dir)``.
    """
    output_dir = Path(output_dir)
    k = cfg.model.num_classes
    class_names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(k)]
    if len(class_names) != k:
        raise ExportError(f"class_names has {len(class_names)} names but the model has num_classes={k}")
    if output_dir.exists() and not overwrite:
        raise ExportError(f"{output_dir} already exists; export to a new version directory or pass overwrite")
    if decoder is None:  # the decoder predict_step uses, else one built from cfg
        decoder = getattr(model, "decoder", None)
        decoder = decoder if decoder is not None else default_decoder(cfg)

    t, d = cfg.model.input_snippets, cfg.model.feature_dim
    if not model.built:
        model(tf.zeros([1, t, d]), training=False)
    serve_raw, detect = make_serving_fns(model, decoder, cfg, class_names)

    archive = keras.export.ExportArchive()
    archive.track(model)
    if decoder.weights:
        archive.track(decoder)
    archive.add_endpoint(
        name=signatures.SERVING_DEFAULT,
        fn=serve_raw,
        input_signature=[tf.TensorSpec([None, t, d], tf.float32, name=signatures.FEATURES)],
    )
    archive.add_endpoint(
        name=signatures.DETECT,
        fn=detect,
        input_signature=[
            tf.TensorSpec([None, None, d], tf.float32, name=signatures.FEATURES),
            tf.TensorSpec([None], tf.float32, name=signatures.DURATION),
        ] + ([tf.TensorSpec([None, k], tf.float32, name=signatures.EXTERNAL_SCORES)]
             if cfg.postprocess.class_fusion == "external" else []),
    )
    names = [signatures.SERVING_DEFAULT, signatures.DETECT]
    if video is not None:
        video.track(archive)
        names += video.add_endpoints(archive, detect)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # A non-numeric sibling: TF Serving ignores it while it is being written.
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        archive.write_out(str(tmp), verbose=False)
        extra = tmp / signatures.EXTRA_DIR
        extra.mkdir(exist_ok=True)
        (extra / signatures.CLASS_NAMES_FILE).write_text(json.dumps(class_names, indent=1))
        (extra / signatures.CONFIG_FILE).write_text(cfg.to_json())
        write_warmup_requests(extra / signatures.WARMUP_FILE, cfg,
                              extra=video.warmup_requests("tags") if video is not None else ())
        if video is not None:
            video.write_extra(extra)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported SavedModel with signatures %s to %s", names, output_dir)
    return output_dir


def write_warmup_requests(path: Path, cfg: TagsConfig, model_name: str = "tags", extra=()) -> None:
    """TF Serving warm-up file: one ``detect`` and one ``serving_default`` request, then ``extra``.

    A TFRecord of ``PredictionLog`` protos (TF Serving's ``assets.extra`` convention);
    inputs are zeros of one video at the model's T (duration 1 s).
    """
    t, d = cfg.model.input_snippets, cfg.model.feature_dim
    zeros = tf.make_tensor_proto(tf.zeros([1, t, d]).numpy())
    requests = []
    for signature in (signatures.DETECT, signatures.SERVING_DEFAULT):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model_name
        req.model_spec.signature_name = signature
        req.inputs[signatures.FEATURES].CopyFrom(zeros)
        if signature == signatures.DETECT:
            req.inputs[signatures.DURATION].CopyFrom(tf.make_tensor_proto([1.0], tf.float32))
            if cfg.postprocess.class_fusion == "external":
                ext = tf.fill([1, cfg.model.num_classes], 1.0 / cfg.model.num_classes).numpy()
                req.inputs[signatures.EXTERNAL_SCORES].CopyFrom(tf.make_tensor_proto(ext))
        requests.append(req)
    requests += list(extra)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for req in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
            writer.write(log.SerializeToString())


# ----------------------------------------------------------------------------------
# Static checks of an exported SavedModel (used by tests and by the CLI after export).

# Ops that need a Python interpreter or libraries outside a stock TF Serving build.
DENIED_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc", "NumpyFunction"})
# Custom-op namespaces (tensorflow-addons, tensorflow-text, sentencepiece, ...).
DENIED_OP_PREFIXES = ("Addons>", "TFText>", "SentencepieceOp>", "Text>", "Custom>")


def graph_op_types(saved_model_dir: str | os.PathLike, tag: str = signatures.SERVE_TAG) -> set[str]:
    """Every op type in the MetaGraph of ``tag``: top-level nodes and all function defs."""
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    ops: set[str] = set()
    for mg in sm.meta_graphs:
        if tag not in mg.meta_info_def.tags:
            continue
        ops.update(n.op for n in mg.graph_def.node)
        for fn in mg.graph_def.library.function:
            ops.update(n.op for n in fn.node_def)
        fn_names = {fn.signature.name for fn in mg.graph_def.library.function}
        ops -= fn_names  # calls of library functions appear as ops named after them
    return ops


def unsupported_ops(op_types: set[str]) -> list[str]:
    """Op types a stock TF Serving build may not have (sorted; empty means OK).

    An op is accepted when core TF registers it (``tf.raw_ops`` / the op registry of a
    TF without extra op libraries loaded) and it is neither a Python-callback op nor in a
    custom-op namespace.
    """
    bad = []
    for op in sorted(op_types):
        core = hasattr(tf.raw_ops, op) or op_def_registry.get(op) is not None
        if not core or op in DENIED_OPS or op.startswith(DENIED_OP_PREFIXES) or ">" in op:
            bad.append(op)
    return bad


# ----------------------------------------------------------------------------------
# CLI


def _resolve_inputs(args: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    """(checkpoint, config, class_names or None) from --workdir / --checkpoint / --config."""
    workdir = Path(args.workdir) if args.workdir else None
    ckpt = Path(args.checkpoint) if args.checkpoint else (workdir / "best.keras" if workdir else None)
    config = Path(args.config) if args.config else (workdir / "config.json" if workdir else None)
    if ckpt is None or config is None:
        raise ExportError("give --workdir RUN_DIR, or both --checkpoint PATH.keras and --config PATH.json")
    if args.class_names:
        labels = Path(args.class_names)
    else:
        labels = next((p for p in (workdir / "class_names.json",) if p.is_file()), None) if workdir else None
    for what, p in (("checkpoint", ckpt), ("config", config)):
        if not p.is_file():
            raise ExportError(f"{what} file {p} not found")
    return ckpt, config, labels


def load_run(checkpoint: Path, config: Path) -> tuple[keras.Model, TagsConfig]:
    """Loads ``config.json`` (TagsConfig.to_dict) and the ``.keras`` checkpoint."""
    try:
        cfg = from_dict(json.loads(config.read_text()))
    except (json.JSONDecodeError, ConfigError) as e:
        raise ExportError(f"{config}: not a TagsConfig json ({e})") from e
    try:
        model = keras.saving.load_model(str(checkpoint), compile=False)
    except Exception as e:  # Keras raises several types for a bad archive.
        raise ExportError(f"{checkpoint}: cannot load the Keras model ({type(e).__name__}: {e})") from e
    return model, cfg


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", help="training run dir with config.json and best.keras")
    p.add_argument("--checkpoint", help="a .keras model file (overrides RUN_DIR/best.keras)")
    p.add_argument("--config", help="the run's config.json (overrides RUN_DIR/config.json)")
    p.add_argument("--class-names", "--class_names", dest="class_names",
                   help="JSON list of class names (default RUN_DIR/class_names.json, else class_<id>)")
    p.add_argument("--output", required=True, help="version directory, e.g. MODELS/tags/1")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version directory")
    video_export.add_arguments(p)
    _kernels_argument(p)
    args = p.parse_args(argv)
    console.setup(args.verbose, fmt="%(levelname)s %(name)s: %(message)s")
    if globals().get("_KERNELS_LINE"):  # set before TensorFlow loaded (run as python -m)
        logging.getLogger(__name__).info("%s", _KERNELS_LINE)
    try:
        if not Path(args.output).name.isdigit():
            raise ExportError(f"--output {args.output}: the last path component must be a numeric version "
                              "(TF Serving loads MODEL_BASE_PATH/<version>), e.g. MODELS/tags/1")
        ckpt, config, labels = _resolve_inputs(args)
        model, cfg = load_run(ckpt, config)
        class_names = signatures.read_class_names(labels, ExportError) if labels else None
        video = video_export.endpoints_from_args(args, cfg)
        out = export_saved_model(model, cfg, args.output, class_names, overwrite=args.overwrite, video=video)
        bad = unsupported_ops(graph_op_types(out))
        if bad:
            raise ExportError(f"{out}: graph uses ops a stock TF Serving build lacks: {bad}")
    except (ExportError, *video_export.VIDEO_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = [signatures.SERVING_DEFAULT, signatures.DETECT] + (list(video_export.input_signatures())
                                                               if video is not None else [])
    print(f"exported {out} (signatures: {', '.join(names)}; "
          f"T={cfg.model.input_snippets}, D={cfg.model.feature_dim}, K={cfg.model.num_classes})")
    return 0


def _kernels_argument(parser) -> None:
    """``--kernels``: applied before TensorFlow loads when run as ``python -m``; logged."""
    kernels.add_argument(parser)
    console.add_argument(parser)


if __name__ == "__main__":
    sys.exit(main())
