"""A development/test gRPC server speaking TF Serving's API for one exported model.

NOT a replacement for TF Serving: no request batching, no version policy or hot
reload, no REST API, no monitoring; it exists so that tests and laptops can exercise
the real gRPC protocol (``tensorflow_serving.apis``) against our SavedModel without the
TF Serving binary (a Docker image or an apt package). It implements

* ``PredictionService.Predict`` and ``PredictionService.GetModelMetadata``
  (``metadata_field: "signature_def"``),
* ``ModelService.GetModelStatus``,

for the newest numeric version under ``--model_base_path``, loaded once at start in a
background thread (``GetModelStatus`` reports LOADING, then AVAILABLE, or END with the
load error); the version's ``assets.extra/tf_serving_warmup_requests`` are replayed
before it becomes AVAILABLE, as TF Serving does. Signatures run the way TF Serving runs them: the ``serve`` MetaGraph is
loaded into a TF1 Session and tensors are fed/fetched by their SignatureDef names; every
signature is served so, the video ones of ``serving.export --video-encoder`` included.

Bad requests get INVALID_ARGUMENT or NOT_FOUND with a one-line message and the server
keeps serving. Limits (flags; the one set, ``serving.servable.Limits``):
``--max_batch`` videos per request (64), ``--max_snippets`` per video (20000),
``--max_elements`` per input tensor (32 Mi float32 = 128 MiB) -> INVALID_ARGUMENT,
checked on the TensorProto's *declared* dtype and shape before any tensor is
materialized (a tiny request declaring a huge shape costs nothing); messages above
``--max_message_mb`` (256 MiB) are refused by gRPC itself with RESOURCE_EXHAUSTED.
``--request_timeout_s`` (60) is a server-side deadline per Predict (the client's when
shorter) -> DEADLINE_EXCEEDED; ``--maximum_concurrent_rpcs`` (64) bounds the RPCs in
flight or queued for the ``--workers`` threads (16), beyond which gRPC answers
RESOURCE_EXHAUSTED at once instead of queueing without bound. Binds 127.0.0.1 unless
``--host`` says otherwise.

    python -m serving.dev_server --model_name tags --model_base_path MODELS/tags --port 8500
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Sequence

if __name__ == "__main__":  # TensorFlow reads TF_ENABLE_ONEDNN_OPTS (and its log level) once, at import
    from tags_tf import console as _console
    from tags_tf import kernels as _kernels

    _console.setup(_console.verbose_in(sys.argv[1:]), fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _KERNELS_LINE = _kernels.select_from_argv(sys.argv[1:], "latency")

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from serving.servable import Limits, RequestError, Servable, newest_version
from tags_tf import console, kernels

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_RPCS = 64  # 4 x the default 16 workers: a short queue, never an unbounded one
_STATE = get_model_status_pb2.ModelVersionStatus.State


class _Model:
    """The served model's state machine: LOADING -> AVAILABLE, or END on a load error."""

    def __init__(self, name: str, base_path: Path, limits: Limits):
        self.name = name
        self.base_path = base_path
        self.limits = limits
        self.version: int | None = None
        self.state = _STATE.START
        self.error = ""
        self.servable: Servable | None = None
        self.loaded = threading.Event()  # set when AVAILABLE or END

    def load(self) -> None:
        try:
            self.version, path = newest_version(self.base_path)
            self.state = _STATE.LOADING
            servable = Servable(path, self.version, self.limits)
            try:
                servable.warm_up()  # as TF Serving does, before the version becomes AVAILABLE
            except Exception:
                servable.close()
                raise
            self.servable = servable
            self.state = _STATE.AVAILABLE
        except Exception as e:  # any load failure is reported through GetModelStatus
            logger.error("cannot load model %r from %s: %s", self.name, self.base_path, e)
            self.error = f"{type(e).__name__}: {e}"
            self.state = _STATE.END
        finally:
            self.loaded.set()

    def resolve(self, spec) -> Servable:
        """The servable a request's ModelSpec names (raises NOT_FOUND like TF Serving)."""
        if spec.name != self.name:
            raise RequestError("NOT_FOUND", f"model {spec.name!r} not found; this server serves {self.name!r}")
        if spec.version_label:
            raise RequestError("NOT_FOUND", f"version label {spec.version_label!r} not found (labels are not "
                                            "supported by the development server; omit it or give a version)")
        if self.servable is None:
            why = f"load failed: {self.error}" if self.state == _STATE.END else "it is still loading"
            raise RequestError("NOT_FOUND", f"servable not found for model {self.name!r}: {why}")
        if spec.HasField("version") and spec.version.value != self.version:
            raise RequestError("NOT_FOUND", f"model {self.name!r} version {spec.version.value} not found; "
                                            f"version {self.version} is loaded")
        return self.servable


def _abort(context: grpc.ServicerContext, e: RequestError):
    logger.info("refused request: %s %s", e.code, e.message)
    context.abort(grpc.StatusCode[e.code], e.message)


def _deadline(servable: Servable, context: grpc.ServicerContext) -> float:
    """Seconds this request may run: the server's limit, or the client's deadline if sooner."""
    limit = servable.limits.request_timeout_s
    remaining = context.time_remaining()  # None without a client deadline
    if remaining is not None and remaining < limit:
        return max(remaining, 0.001)
    return limit


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model: _Model):
        self._model = model

    def Predict(self, request, context):
        try:
            servable = self._model.resolve(request.model_spec)
            signature = request.model_spec.signature_name
            servable.validate_protos(signature, request.inputs)  # declared shapes: before allocating
            inputs = {}
            for key, proto in request.inputs.items():
                try:
                    inputs[key] = tf.make_ndarray(proto)
                except Exception as e:  # malformed TensorProto (size/dtype mismatch, ...)
                    raise RequestError("INVALID_ARGUMENT", f"input {key!r} is not a valid TensorProto: {e}") from e
            outputs = servable.run(signature, inputs, tuple(request.output_filter), _deadline(servable, context))
        except RequestError as e:
            _abort(context, e)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self._model.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = servable.signature(signature)[0]
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        return response

    def GetModelMetadata(self, request, context):
        try:
            servable = self._model.resolve(request.model_spec)
            fields = list(request.metadata_field)
            if not fields:
                raise RequestError("INVALID_ARGUMENT", "GetModelMetadataRequest must name a metadata_field "
                                                       "(only 'signature_def' is supported)")
            unsupported = [f for f in fields if f != "signature_def"]
            if unsupported:
                raise RequestError("INVALID_ARGUMENT", f"metadata_field {unsupported} not supported "
                                                       "(only 'signature_def')")
        except RequestError as e:
            _abort(context, e)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self._model.name
        response.model_spec.version.value = servable.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        response.metadata["signature_def"].Pack(sig_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, model: _Model):
        self._model = model

    def GetModelStatus(self, request, context):
        m = self._model
        spec = request.model_spec
        if spec.name != m.name:
            _abort(context, RequestError("NOT_FOUND", f"model {spec.name!r} not found; this server serves {m.name!r}"))
        if m.version is None:
            _abort(context, RequestError("NOT_FOUND", f"no version of model {m.name!r} found yet "
                                                      f"({m.error or 'loading'})"))
        if spec.HasField("version") and spec.version.value != m.version:
            _abort(context, RequestError("NOT_FOUND", f"model {m.name!r} version {spec.version.value} not found"))
        status = get_model_status_pb2.ModelVersionStatus(version=m.version, state=m.state)
        status.status.CopyFrom(status_pb2.StatusProto(error_code=2 if m.error else 0, error_message=m.error))
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=[status])


class DevServer:
    """In-process development server (tests use it directly; the CLI wraps it).

    ``start()`` binds and returns the port (``port=0`` picks a free one) and loads the
    model in the background; ``wait_until_available()`` blocks until it is loaded.
    """

    def __init__(
        self,
        model_name: str,
        model_base_path: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: Limits = Limits(),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_workers: int = 16,
        maximum_concurrent_rpcs: int | None = DEFAULT_MAX_CONCURRENT_RPCS,
    ):
        self.host = host
        self.model = _Model(model_name, Path(model_base_path), limits)
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        # Bounded queue: past maximum_concurrent_rpcs gRPC answers RESOURCE_EXHAUSTED at once.
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options,
                                   maximum_concurrent_rpcs=maximum_concurrent_rpcs)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.model), self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.model), self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")
        self._loader = threading.Thread(target=self.model.load, name="model-loader", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> int:
        self._server.start()
        self._loader.start()
        logger.info("development server for model %r listening on %s", self.model.name, self.address)
        return self.port

    def wait_until_available(self, timeout: float | None = None) -> int:
        """Blocks until the model is loaded; returns its version (raises on failure)."""
        if not self.model.loaded.wait(timeout):
            raise TimeoutError(f"model {self.model.name!r} not loaded after {timeout} s")
        if self.model.servable is None:
            raise RuntimeError(f"model {self.model.name!r} failed to load: {self.model.error}")
        return self.model.version

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace).wait()
        if self._loader.is_alive():
            self._loader.join()
        if self.model.servable is not None:
            self.model.servable.close()

    def wait_for_termination(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> "DevServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.dev_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model_name", default="tags")
    p.add_argument("--model_base_path", required=True, help="folder with numeric version dirs, e.g. MODELS/tags")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1 = this machine only)")
    p.add_argument("--max_batch", type=int, default=Limits.max_batch)
    p.add_argument("--max_snippets", type=int, default=Limits.max_snippets)
    p.add_argument("--max_elements", type=int, default=Limits.max_elements)
    p.add_argument("--max_message_mb", type=int, default=DEFAULT_MAX_MESSAGE_BYTES // 2**20)
    p.add_argument("--workers", type=int, default=16, help="gRPC worker threads (concurrent requests)")
    p.add_argument("--maximum_concurrent_rpcs", "--maximum-concurrent-rpcs", type=int,
                   default=DEFAULT_MAX_CONCURRENT_RPCS,
                   help="RPCs running or queued; more are refused with RESOURCE_EXHAUSTED")
    p.add_argument("--request_timeout_s", "--request-timeout-s", type=float, default=Limits.request_timeout_s,
                   help="server-side deadline of one Predict, seconds (DEADLINE_EXCEEDED)")
    _kernels_argument(p)
    args = p.parse_args(argv)
    bad = [f"--{k} {v}" for k, v in (("max_batch", args.max_batch), ("max_snippets", args.max_snippets),
                                      ("max_elements", args.max_elements), ("workers", args.workers),
                                      ("maximum_concurrent_rpcs", args.maximum_concurrent_rpcs),
                                      ("request_timeout_s", args.request_timeout_s),
                                      ("max_message_mb", args.max_message_mb)) if not v > 0]
    if bad:
        print(f"error: {', '.join(bad)}: expected a positive number", file=sys.stderr)
        return 2
    console.setup(args.verbose, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if globals().get("_KERNELS_LINE"):  # set before TensorFlow loaded (run as python -m)
        logging.getLogger(__name__).info("%s", _KERNELS_LINE)
    try:
        newest_version(args.model_base_path)  # fail fast on a wrong path
        server = DevServer(
            args.model_name, args.model_base_path, host=args.host, port=args.port,
            limits=Limits(args.max_batch, args.max_snippets, args.max_elements, args.request_timeout_s),
            max_message_bytes=args.max_message_mb * 2**20, max_workers=args.workers,
            maximum_concurrent_rpcs=args.maximum_concurrent_rpcs)
    except (FileNotFoundError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    server.start()
    try:
        version = server.wait_until_available()
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        server.stop()
        return 1
    print(f"serving model {args.model_name!r} version {version} on {server.address} "
          "(development server; use tensorflow/serving in production)", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(grace=2.0)
    return 0


def _kernels_argument(parser) -> None:
    """``--kernels``: applied before TensorFlow loads when run as ``python -m``; logged."""
    kernels.add_argument(parser)
    console.add_argument(parser)


if __name__ == "__main__":
    sys.exit(main())
