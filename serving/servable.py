"""One loaded SavedModel version, executed the way TF Serving executes it.

The SavedModel is loaded with the TF1 loader (``tf.compat.v1.saved_model.loader.load``
of the ``serve`` tag into its own Graph/Session); a request's tensors are fed and
fetched by the tensor names of the SignatureDef (``session.run``), which is what TF
Serving's C++ ``Predict`` does. Requests are validated against the SignatureDef before
running (dtype, rank, static dims, size limits), and TF errors raised by the graph's
asserts become :class:`RequestError` with a one-line message.

Used by ``serving.dev_server``; gRPC-free so it can be tested directly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving import signatures

logger = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the server refuses. ``code`` is a grpc.StatusCode name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Limits:
    """Request size limits, the one documented set (docs/serving.md, dev_server).

    max_batch: largest B (first dim) of any input (64).
    max_snippets: largest T (second dim) of a rank-3 ``features`` input (20000).
    max_elements: largest element count of one input tensor: 32 Mi float32 = 128 MiB,
      half of the default gRPC message cap (256 MiB), so this limit answers first with
      a clear INVALID_ARGUMENT. Checked on the *declared* shape, before materializing.
    request_timeout_s: server-side deadline of one Predict (the client's deadline when
      shorter); past it the session run stops with DEADLINE_EXCEEDED (60 s).
    """

    max_batch: int = 64
    max_snippets: int = 20000
    max_elements: int = 32 * 1024 * 1024
    request_timeout_s: float = 60.0


def newest_version(base_path: str | Path) -> tuple[int, Path]:
    """The numeric version directory with the largest number under ``base_path``."""
    base = Path(base_path)
    if not base.is_dir():
        raise FileNotFoundError(f"model base path {base} is not a directory")
    versions = sorted((int(p.name), p) for p in base.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise FileNotFoundError(f"no numeric version directory (e.g. {base}/1) under {base}")
    return versions[-1]


_NODE_TRACE = re.compile(r"\s*\[\[\{\{node .*", re.S)


def tf_error_message(e: tf.errors.OpError) -> str:
    """The readable line of a TF error (drops 'Graph execution error' and node traces)."""
    text = _NODE_TRACE.sub("", e.message or str(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Graph execution error", "Detected at node"))]
    for ln in lines:
        if ln.startswith("assertion failed:"):
            return ln
    return lines[0] if lines else type(e).__name__


_TF_CODES = {
    tf.errors.InvalidArgumentError: "INVALID_ARGUMENT",
    tf.errors.ResourceExhaustedError: "RESOURCE_EXHAUSTED",
    tf.errors.DeadlineExceededError: "DEADLINE_EXCEEDED",
    tf.errors.OutOfRangeError: "OUT_OF_RANGE",
    tf.errors.FailedPreconditionError: "FAILED_PRECONDITION",
}


def _dtype_name(arr: np.ndarray) -> str:
    if arr.dtype.kind in "OSU":
        return "string"
    try:
        return tf.dtypes.as_dtype(arr.dtype).name
    except TypeError:
        return str(arr.dtype)


class Servable:
    """A SavedModel version loaded in a TF1 session.

    ``session.run`` is thread-safe, so concurrent requests run concurrently; the
    object itself is read-only after construction.
    """

    def __init__(self, path: str | Path, version: int, limits: Limits = Limits(),
                 session_config: tf.compat.v1.ConfigProto | None = None):
        self.path = Path(path)
        self.version = version
        self.limits = limits
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph, config=session_config)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, [signatures.SERVE_TAG], str(self.path))
        self.graph.finalize()  # nothing may add ops once requests run concurrently
        self.signature_defs = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
        logger.info("loaded %s (version %d), signatures %s", self.path, version, sorted(self.signature_defs))

    def warm_up(self) -> int:
        """Replays ``assets.extra/tf_serving_warmup_requests`` like TF Serving; returns the count."""
        path = self.path / signatures.EXTRA_DIR / signatures.WARMUP_FILE
        if not path.is_file():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            if log.WhichOneof("log_type") != "predict_log":
                continue
            request = log.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            self.run(request.model_spec.signature_name, inputs, tuple(request.output_filter))
            count += 1
        logger.info("ran %d warm-up requests from %s", count, path)
        return count

    def close(self) -> None:
        self.session.close()

    def signature(self, name: str):
        key = name or signatures.SERVING_DEFAULT
        if key not in self.signature_defs:
            raise RequestError(
                "NOT_FOUND", f"signature {key!r} not found; this model has {sorted(self.signature_defs)}")
        return key, self.signature_defs[key]

    def validate(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> None:
        """Checks ``inputs`` against the SignatureDef and the limits (raises RequestError)."""
        self._check(signature_name, {k: (_dtype_name(a), tuple(a.shape)) for k, a in inputs.items()})

    def validate_protos(self, signature_name: str, protos: Mapping[str, tensor_pb2.TensorProto]) -> None:
        """The same checks on the *declared* dtype and shape of request TensorProtos,
        before any tensor is materialized: a few bytes declaring shape [1, 32000000, 8]
        with one ``float_val`` (which ``tf.make_ndarray`` would broadcast to 1 GB) are
        refused here in microseconds. Raises RequestError (INVALID_ARGUMENT)."""
        specs = {}
        for name, proto in protos.items():
            if proto.tensor_shape.unknown_rank:
                raise RequestError("INVALID_ARGUMENT", f"input {name!r}: the TensorProto must declare its shape")
            shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
            if any(d < 0 for d in shape):
                raise RequestError("INVALID_ARGUMENT", f"input {name!r}: negative dimension in shape {list(shape)}")
            try:
                dtype = tf.dtypes.as_dtype(proto.dtype).name
            except TypeError:
                raise RequestError("INVALID_ARGUMENT", f"input {name!r}: unknown dtype enum {proto.dtype}") from None
            specs[name] = (dtype, shape)
        self._check(signature_name, specs)

    def _check(self, signature_name: str, specs: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
        """``specs``: {input name: (dtype name, shape)} -> raises RequestError if refused."""
        key, sig = self.signature(signature_name)
        missing = sorted(set(sig.inputs) - set(specs))
        extra = sorted(set(specs) - set(sig.inputs))
        if missing or extra:
            raise RequestError(
                "INVALID_ARGUMENT",
                f"signature {key!r} expects inputs {sorted(sig.inputs)}; "
                + (f"missing {missing}" if missing else "") + ("; " if missing and extra else "")
                + (f"unexpected {extra}" if extra else ""))
        batch = None
        for name, (dtype, shape) in specs.items():
            info = sig.inputs[name]
            want = tf.dtypes.as_dtype(info.dtype)
            if dtype != want.name:
                raise RequestError("INVALID_ARGUMENT", f"input {name!r} must be {want.name}, got {dtype}")
            if not info.tensor_shape.unknown_rank:
                dims = [d.size for d in info.tensor_shape.dim]
                if len(shape) != len(dims):
                    pretty = "[" + ", ".join("?" if d < 0 else str(d) for d in dims) + "]"
                    raise RequestError(
                        "INVALID_ARGUMENT",
                        f"input {name!r} must have rank {len(dims)} {pretty}, got shape {list(shape)}")
                for axis, (want_d, got_d) in enumerate(zip(dims, shape)):
                    if want_d >= 0 and want_d != got_d:
                        raise RequestError(
                            "INVALID_ARGUMENT",
                            f"input {name!r} dim {axis} must be {want_d}, got {got_d} (shape {list(shape)})")
            if shape:
                if shape[0] > self.limits.max_batch:
                    raise RequestError(
                        "INVALID_ARGUMENT",
                        f"input {name!r}: batch {shape[0]} exceeds this server's max batch "
                        f"{self.limits.max_batch}; split the request")
                if batch is not None and shape[0] != batch:
                    raise RequestError(
                        "INVALID_ARGUMENT", f"inputs disagree on the batch size: {batch} vs {shape[0]} ({name!r})")
                batch = shape[0]
            if name == signatures.FEATURES and len(shape) == 3 and shape[1] > self.limits.max_snippets:
                raise RequestError(
                    "INVALID_ARGUMENT",
                    f"input {name!r}: {shape[1]} snippets exceed this server's limit "
                    f"{self.limits.max_snippets}")
            size = math.prod(shape)  # Python ints: no overflow whatever the declared dims
            if size > self.limits.max_elements:
                raise RequestError(
                    "INVALID_ARGUMENT",
                    f"input {name!r}: {size} elements exceed this server's limit {self.limits.max_elements}")

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
            output_filter: tuple[str, ...] = (), timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """Runs a signature by its SignatureDef tensor names. Raises RequestError
        (DEADLINE_EXCEEDED past ``timeout_s``, default ``limits.request_timeout_s``)."""
        self.validate(signature_name, inputs)
        key, sig = self.signature(signature_name)
        unknown = sorted(set(output_filter) - set(sig.outputs))
        if unknown:
            raise RequestError("INVALID_ARGUMENT", f"output_filter names unknown outputs {unknown}; "
                                                   f"signature {key!r} has {sorted(sig.outputs)}")
        wanted = output_filter or tuple(sig.outputs)
        fetches = {k: sig.outputs[k].name for k in wanted}
        feed = {sig.inputs[k].name: v for k, v in inputs.items()}
        timeout_s = self.limits.request_timeout_s if timeout_s is None else timeout_s
        options = None
        if timeout_s and timeout_s > 0:
            options = tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(timeout_s * 1000)))
        start = time.monotonic()
        try:
            out = self.session.run(fetches, feed_dict=feed, options=options)
        except tf.errors.OpError as e:
            code = next((c for t, c in _TF_CODES.items() if isinstance(e, t)), "INTERNAL")
            msg = tf_error_message(e)
            raise RequestError(code, msg if f"{key}:" in msg else f"{key}: {msg}") from e
        # TF stops a run at its timeout only where it waits; a run that ends past the
        # deadline anyway is answered the same way (the caller has given up on it).
        elapsed = time.monotonic() - start
        if timeout_s and timeout_s > 0 and elapsed > timeout_s:
            raise RequestError("DEADLINE_EXCEEDED", f"{key}: took {elapsed:.3f} s, past the {timeout_s:g} s deadline")
        return out
