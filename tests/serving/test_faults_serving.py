"""Fault injection for serving.dev_server: bad TensorProtos, a tiny request declaring a
huge shape, the per-request deadline and the bounded RPC queue.

``BAD_PROTOS`` is the corpus (name, TensorProto builder, expected message): each must be
refused with INVALID_ARGUMENT *before* any tensor is materialized, and the server must
keep serving. Add a row to extend it.
"""

import re
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import signatures
from serving import testing
from serving.servable import Limits, Servable
from serving.dev_server import DevServer, main


def _declared(shape, dtype=types_pb2.DT_FLOAT, **values) -> tensor_pb2.TensorProto:
    """A TensorProto declaring ``shape`` with just the given value fields."""
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))
    return proto


BAD_PROTOS = [
    ("huge_declared_shape", lambda: _declared([1, 32_000_000, 8], float_val=[0.0]),
     "32000000 snippets exceed"),
    ("huge_elements_small_dims", lambda: _declared([1, 200, 2**40], float_val=[0.0]),
     "dim 2 must be 8"),
    ("int64_overflowing_dims", lambda: _declared([2**62, 2**62, 8], float_val=[0.0]),
     "batch 4611686018427387904 exceeds"),
    ("negative_dim", lambda: _declared([1, -5, 8], float_val=[0.0]), "negative dimension"),
    ("unknown_rank", lambda: tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True)),
     "must declare its shape"),
    ("string_dtype_huge", lambda: _declared([1, 10**9, 8], dtype=types_pb2.DT_STRING, string_val=[b"x"]),
     "must be float32, got string"),
    ("short_tensor_content", lambda: _declared([1, 9, 8], tensor_content=b"\x00" * 12), "not a valid TensorProto"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "tags"
    testing.export_model(base, testing.tiny_config())
    srv = DevServer("tags", base, port=0, limits=Limits(max_batch=4, max_snippets=256, max_elements=2048))
    srv.start()
    srv.wait_until_available(timeout=120)
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(features_proto, duration=(10.0,)):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "tags"
    req.model_spec.signature_name = signatures.DETECT
    req.inputs[signatures.FEATURES].CopyFrom(features_proto)
    req.inputs[signatures.DURATION].CopyFrom(tf.make_tensor_proto(np.asarray(duration, np.float32)))
    return req


def _good_request():
    return _request(tf.make_tensor_proto(np.ones((1, 9, 8), np.float32)))


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.parametrize("case", [c[0] for c in BAD_PROTOS])
def test_bad_proto_is_refused_before_materializing(stub, case):
    _, build, message = next(c for c in BAD_PROTOS if c[0] == case)
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(_request(build()), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, err.value.details()), err.value.details()
    assert "\n" not in err.value.details()
    assert set(stub.Predict(_good_request(), timeout=30).outputs) == set(signatures.DETECT_OUTPUTS)


def test_83_byte_huge_shape_request_refused_fast_without_memory_growth(server):
    """The issue's probe: shape [1, 32000000, 8], one float_val, against the default limits."""
    with DevServer("tags", server.model.base_path, port=0) as srv:  # default Limits
        srv.wait_until_available(timeout=120)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "tags"
        req.inputs[signatures.FEATURES].CopyFrom(_declared([1, 32_000_000, 8], float_val=[0.0]))
        assert req.ByteSize() < 100
        with grpc.insecure_channel(srv.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(_good_request(), timeout=30)  # warm the channel and the session
            before = _rss_bytes()
            start = time.perf_counter()
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(req, timeout=30)
            elapsed = time.perf_counter() - start
            grown = _rss_bytes() - before
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "32000000" in err.value.details()
    print(f"huge-shape refusal: {elapsed * 1000:.1f} ms, RSS growth {grown / 2**20:.1f} MiB")
    assert elapsed < 0.05 and grown < 64 * 2**20  # the old path allocated ~1 GB in ~4 s


def test_default_element_limit_fires_before_the_grpc_message_cap():
    from serving.dev_server import DEFAULT_MAX_MESSAGE_BYTES

    assert Limits().max_elements == 32 * 2**20  # docs/serving.md and the module docstring say 32 Mi
    assert Limits().max_elements * 4 < DEFAULT_MAX_MESSAGE_BYTES


def test_server_side_deadline_is_deadline_exceeded(server):
    servable: Servable = server.model.servable
    x = np.ones((1, 9, 8), np.float32)
    d = np.ones((1,), np.float32) * 10
    from serving.servable import RequestError

    with pytest.raises(RequestError) as err:  # 1 us: the session gives up before finishing
        servable.run(signatures.DETECT, {signatures.FEATURES: x, signatures.DURATION: d}, timeout_s=1e-6)
    assert err.value.code == "DEADLINE_EXCEEDED"
    assert set(servable.run(signatures.DETECT, {signatures.FEATURES: x, signatures.DURATION: d})) == set(signatures.DETECT_OUTPUTS)


def test_bounded_queue_refuses_past_maximum_concurrent_rpcs(server, monkeypatch):
    real_run = Servable.run

    def slow_run(self, *args, **kwargs):
        time.sleep(0.5)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Servable, "run", slow_run)
    with DevServer("tags", server.model.base_path, port=0, maximum_concurrent_rpcs=2) as srv:
        srv.wait_until_available(timeout=120)
        codes = []
        with grpc.insecure_channel(srv.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def call():
                try:
                    stub.Predict(_good_request(), timeout=30)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as e:
                    codes.append(e.code())

            threads = [threading.Thread(target=call) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            monkeypatch.setattr(Servable, "run", real_run)
            stub.Predict(_good_request(), timeout=30)  # still serving
    assert codes.count(grpc.StatusCode.OK) >= 2
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 1
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_cli_refuses_non_positive_limits(capsys):
    assert main(["--model_base_path", ".", "--maximum_concurrent_rpcs", "0"]) == 2
    assert "--maximum_concurrent_rpcs 0: expected a positive number" in capsys.readouterr().err
