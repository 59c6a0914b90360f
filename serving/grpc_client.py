"""gRPC client of the exported TAGS model (TF Serving or ``serving.dev_server``).

:class:`DetectionClient` (one video or a batch per call), :func:`split_detections`,
:func:`resample`. The command line (``python -m serving.client``) is
:mod:`serving.client`; its file/shard inputs, batching and outputs are
:mod:`serving.batch_client`.

Every call has a deadline (``timeout`` seconds); calls failing with UNAVAILABLE are
retried ``retries`` times with exponential backoff; before its first call the client
waits (up to ``wait`` seconds) until ``ModelService.GetModelStatus`` reports a version
AVAILABLE.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import signatures
from tags_tf.data.resample import resample_features
from tags_tf.evaluation.detections import result_entry, unpad_detections

logger = logging.getLogger(__name__)

_AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
_END = get_model_status_pb2.ModelVersionStatus.State.END
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ClientInputError(ValueError):
    """A feature file, duration table or shard is unusable (message names it)."""


class ServingError(RuntimeError):
    """A call that failed for good; ``code`` is the grpc.StatusCode, ``details`` its message."""

    def __init__(self, code: grpc.StatusCode, details: str, server: str = ""):
        super().__init__(f"{server + ': ' if server else ''}{code.name}: {details}")
        self.code = code
        self.details = details


@dataclasses.dataclass(frozen=True)
class VideoDetections:
    """The detections of one video, unpadded (n = num_detections)."""

    segments: np.ndarray  # (n, 2) float32, (start, end) seconds
    scores: np.ndarray  # (n,) float32, descending
    classes: np.ndarray  # (n,) int32 class ids
    labels: tuple[str, ...] | None = None  # (n,) class names, when the server sent them

    def __len__(self) -> int:
        return len(self.scores)

    def records(self, class_names: Sequence[str] | None = None) -> list[dict]:
        """ActivityNet result entries: {"label", "score", "segment": [start, end]}.

        Labels: ``class_names[c]`` when given, else the names the server sent, else the
        class ids as strings."""
        if class_names:
            labels = [class_names[c] for c in self.classes]
        else:
            labels = list(self.labels) if self.labels is not None else [str(int(c)) for c in self.classes]
        return [result_entry(lab, float(s), float(a), float(b))
                for (a, b), s, lab in zip(self.segments, self.scores, labels)]


def split_detections(outputs: Mapping[str, np.ndarray]) -> list[VideoDetections]:
    """Padded ``detect`` outputs (B, N, ...) -> one :class:`VideoDetections` per video."""
    per_video = unpad_detections(outputs)
    names_sent = outputs.get(signatures.DETECTION_CLASS_NAMES)
    out = []
    for b, (seg, score, cls) in enumerate(per_video):
        labels = None
        if names_sent is not None:
            labels = tuple(x.decode() if isinstance(x, bytes) else str(x) for x in names_sent[b, : len(score)])
        out.append(VideoDetections(segments=np.asarray(seg, np.float32), scores=np.asarray(score, np.float32),
                                   classes=np.asarray(cls, np.int32), labels=labels))
    return out


class DetectionClient:
    """Calls the model's signatures over gRPC.

    Thread-safe: one client (one channel) may be shared by many threads.

    Args:
      server: ``HOST:PORT`` of TF Serving's gRPC port (8500) or the dev server.
      model_name: the model's name in the server's model config.
      signature: default signature of :meth:`predict` (``detect``).
      timeout: deadline of every call, seconds.
      retries: extra attempts of a call that fails with UNAVAILABLE.
      backoff: first retry delay, seconds; doubles each retry.
      wait_timeout: how long the first call waits for the model to be AVAILABLE.
    """

    def __init__(
        self,
        server: str,
        model_name: str = "tags",
        *,
        signature: str = signatures.DETECT,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        wait_timeout: float = 60.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        self.server = server
        self.model_name = model_name
        self.signature = signature
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.wait_timeout = wait_timeout
        self._channel = grpc.insecure_channel(server, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._ready_lock = threading.Lock()
        self.version: int | None = None

    # -- plumbing ---------------------------------------------------------------------

    def _error(self, e: grpc.RpcError) -> ServingError:
        return ServingError(e.code(), e.details() or "", self.server)

    def _call(self, method, request):
        """One unary call with a deadline, retried with backoff on UNAVAILABLE."""
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise self._error(e) from None
                delay = self.backoff * 2**attempt
                logger.warning("%s unavailable (%s); retry %d/%d in %.1f s",
                               self.server, e.details(), attempt + 1, self.retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def wait_until_available(self, timeout: float | None = None) -> int:
        """Polls GetModelStatus until a version is AVAILABLE; returns that version.

        UNAVAILABLE (server not up yet) and NOT_FOUND (model not loaded yet) are
        retried until ``timeout`` (default ``wait_timeout``); a version in state END
        with an error (load failure) raises at once.
        """
        timeout = self.wait_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        delay, last = self.backoff, "no answer"
        while True:
            try:
                call_timeout = max(0.1, min(self.timeout, deadline - time.monotonic()))
                response = self._models.GetModelStatus(request, timeout=call_timeout)
                available = [s.version for s in response.model_version_status if s.state == _AVAILABLE]
                if available:
                    self.version = max(available)
                    return self.version
                failed = [s for s in response.model_version_status if s.state == _END and s.status.error_code]
                if failed:
                    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                       f"model {self.model_name!r} failed to load: {failed[0].status.error_message}",
                                       self.server)
                last = "states " + ", ".join(
                    f"v{s.version}={get_model_status_pb2.ModelVersionStatus.State.Name(s.state)}"
                    for s in response.model_version_status)
            except grpc.RpcError as e:
                retryable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED)
                if e.code() not in retryable:
                    raise self._error(e) from None
                last = f"{e.code().name}: {e.details()}"
            if time.monotonic() + delay > deadline:
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"model {self.model_name!r} not AVAILABLE after {timeout:.0f} s ({last})",
                                   self.server)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _ensure_ready(self) -> None:
        if self.version is None:
            with self._ready_lock:
                if self.version is None:
                    self.wait_until_available()

    # -- API --------------------------------------------------------------------------

    def predict(self, inputs: Mapping[str, np.ndarray], signature: str | None = None,
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Calls ``signature`` with named numpy inputs; returns named numpy outputs."""
        self._ensure_ready()
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature or self.signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        request.output_filter.extend(output_filter)
        response = self._call(self._predict.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def detect(self, features: np.ndarray, duration: float | Sequence[float] | np.ndarray) -> list[VideoDetections]:
        """VideoDetections of one video (features (T, D)) or a batch ((B, T, D), duration (B,))."""
        features = np.asarray(features, np.float32)
        if features.ndim == 2:
            features = features[None]  # (T, D) -> (1, T, D)
        duration = np.atleast_1d(np.asarray(duration, np.float32))
        outputs = self.predict({signatures.FEATURES: features, signatures.DURATION: duration}, signatures.DETECT)
        return split_detections(outputs)

    def signature_defs(self) -> dict:
        """The model's SignatureDefs (GetModelMetadata ``signature_def``)."""
        self._ensure_ready()
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        response = self._call(self._predict.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return dict(sig_map.signature_def)

    def input_snippets(self) -> int:
        """T, the model's fixed number of snippets (``serving_default`` features dim 1)."""
        info = self.signature_defs()[signatures.SERVING_DEFAULT].inputs[signatures.FEATURES]
        return int(info.tensor_shape.dim[1].size)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "DetectionClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resample(features: np.ndarray, num_snippets: int) -> np.ndarray:
    """(T_in, D) or (B, T_in, D) -> T snippets with the model's own resampling
    (:func:`tags_tf.data.resample.resample_features`, run eagerly). Resampling to the
    model's T on the client makes the graph's resampling an identity, so detections
    match the server's on the original features."""
    x = np.asarray(features, np.float32)
    if x.ndim < 2 or x.shape[-2] < 1:
        raise ClientInputError(f"features have 0 snippets (shape {list(x.shape)}); at least 1 is needed")
    return resample_features(tf.constant(x), num_snippets).numpy()
