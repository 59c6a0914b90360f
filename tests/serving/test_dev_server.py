"""serving.dev_server over real gRPC: end-to-end detect, metadata/status, bad requests, load."""

import logging
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import signatures
from serving import testing
from serving.servable import Limits, newest_version, tf_error_message
from serving.client import DetectionClient, ServingError
from serving.dev_server import DevServer
from tags_tf.testing import in_process_detect

LIMITS = Limits(max_batch=4, max_snippets=256, max_elements=2048)
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg = testing.tiny_config()
    base = tmp_path_factory.mktemp("models") / "tags"
    model, path = testing.export_model(base, cfg)
    return cfg, model, base


@pytest.fixture(scope="module")
def server(exported):
    srv = DevServer("tags", exported[2], port=0, limits=LIMITS)
    srv.start()
    assert srv.wait_until_available(timeout=120) == 1
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.address)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def _video(t_in, b=1, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, t_in, d)).astype(np.float32), rng.uniform(5, 200, size=b).astype(np.float32)


def _request(inputs, signature=signatures.DETECT, model="tags"):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(v if isinstance(v, tensor_pb2.TensorProto) else tf.make_tensor_proto(v))
    return req


def test_binds_localhost_by_default(server):
    assert server.address.startswith("127.0.0.1:") and server.port > 0


def test_end_to_end_detect_equals_in_process(exported, server):
    cfg, model, _ = exported
    x, dur = _video(37, b=2)
    ref = in_process_detect(model, x, dur)
    with DetectionClient(server.address, "tags", timeout=30) as client:
        dets = client.detect(x, dur)
        single = client.detect(x[1], float(dur[1]))  # (T, D) + scalar duration
    assert len(dets) == 2 and len(single) == 1
    for b, det in enumerate(dets + single):
        b = min(b, 1)
        n = ref[signatures.NUM_DETECTIONS][b]
        assert len(det) == n > 0
        np.testing.assert_array_equal(det.classes, ref[signatures.DETECTION_CLASSES][b, :n])
        np.testing.assert_allclose(det.scores, ref[signatures.DETECTION_SCORES][b, :n], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(det.segments, ref[signatures.DETECTION_SEGMENTS][b, :n], rtol=1e-5, atol=1e-3)


def test_serving_default_over_grpc(exported, server):
    cfg, model, _ = exported
    x, _ = _video(cfg.model.input_snippets, b=2)
    with DetectionClient(server.address) as client:
        got = client.predict({signatures.FEATURES: x}, signatures.SERVING_DEFAULT, output_filter=["cls_logits_s1"])
    assert list(got) == ["cls_logits_s1"]
    np.testing.assert_allclose(got["cls_logits_s1"], model(x)["cls_logits_s1"].numpy(), rtol=1e-5, atol=1e-5)


def test_response_model_spec_and_default_signature(exported, stubs):
    cfg = exported[0]
    x, _ = _video(cfg.model.input_snippets)
    response = stubs[0].Predict(_request({signatures.FEATURES: x}, signature=""), timeout=30)
    assert response.model_spec.name == "tags"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == signatures.SERVING_DEFAULT


def test_get_model_status_and_metadata(stubs):
    predict, models = stubs
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "tags"
    (status,) = models.GetModelStatus(req, timeout=10).model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
    assert status.status.error_code == 0
    meta_req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_req.model_spec.name = "tags"
    meta = predict.GetModelMetadata(meta_req, timeout=10)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(sig_map)
    assert set(sig_map.signature_def) == {signatures.SERVING_DEFAULT, signatures.DETECT}
    assert set(sig_map.signature_def[signatures.DETECT].outputs) == set(signatures.DETECT_OUTPUTS)


def _bad_cases(cfg):
    good_x, good_d = _video(9)
    nan_x = good_x.copy()
    nan_x[0, 3, 1] = np.nan
    string_proto = tf.make_tensor_proto(np.array([[["a"] * 8] * 9]))
    return {
        "wrong_dtype": ({signatures.FEATURES: good_x.astype(np.float64), signatures.DURATION: good_d},
                        "INVALID_ARGUMENT", "'features' must be float32, got float64"),
        "string_dtype": ({signatures.FEATURES: string_proto, signatures.DURATION: good_d},
                         "INVALID_ARGUMENT", "must be float32, got string"),
        "wrong_rank": ({signatures.FEATURES: good_x[0], signatures.DURATION: good_d},
                       "INVALID_ARGUMENT", r"must have rank 3 \[\?, \?, 8\], got shape \[9, 8\]"),
        "wrong_feature_dim": ({signatures.FEATURES: good_x[..., :5], signatures.DURATION: good_d},
                              "INVALID_ARGUMENT", "dim 2 must be 8, got 5"),
        "zero_snippets": ({signatures.FEATURES: good_x[:, :0], signatures.DURATION: good_d},
                          "INVALID_ARGUMENT", r"at least one snippet \(T >= 1\)"),
        "nan_values": ({signatures.FEATURES: nan_x, signatures.DURATION: good_d},
                       "INVALID_ARGUMENT", r"features must be finite \(found NaN or Inf\)"),
        "negative_duration": ({signatures.FEATURES: good_x, signatures.DURATION: -good_d},
                              "INVALID_ARGUMENT", "duration must be finite and > 0 seconds"),
        "missing_input": ({signatures.FEATURES: good_x}, "INVALID_ARGUMENT", r"missing \['duration'\]"),
        "unknown_input": ({signatures.FEATURES: good_x, signatures.DURATION: good_d, "fps": good_d},
                          "INVALID_ARGUMENT", r"unexpected \['fps'\]"),
        "unknown_signature": ({signatures.FEATURES: good_x, signatures.DURATION: good_d, "@signature": "classify"},
                              "NOT_FOUND", "signature 'classify' not found"),
        "unknown_model": ({signatures.FEATURES: good_x, signatures.DURATION: good_d, "@model": "resnet"},
                          "NOT_FOUND", "model 'resnet' not found"),
        "oversized_batch": ({signatures.FEATURES: np.zeros((5, 9, 8), np.float32),
                             signatures.DURATION: np.ones(5, np.float32)},
                            "INVALID_ARGUMENT", "batch 5 exceeds this server's max batch 4"),
        "oversized_snippets": ({signatures.FEATURES: np.zeros((1, 257, 8), np.float32), signatures.DURATION: good_d},
                               "INVALID_ARGUMENT", "257 snippets exceed this server's limit 256"),
        "oversized_elements": ({signatures.FEATURES: np.zeros((3, 200, 8), np.float32),
                                signatures.DURATION: np.ones(3, np.float32)},
                               "INVALID_ARGUMENT", "4800 elements exceed this server's limit 2048"),
    }


BAD_CASES = list(_bad_cases(None))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_request_is_refused_and_server_keeps_serving(exported, stubs, case):
    inputs, code, message = _bad_cases(exported[0])[case]
    signature = inputs.pop("@signature", signatures.DETECT)
    model = inputs.pop("@model", "tags")
    with pytest.raises(grpc.RpcError) as err:
        stubs[0].Predict(_request(inputs, signature, model), timeout=30)
    assert err.value.code() == getattr(grpc.StatusCode, code)
    details = err.value.details()
    assert __import__("re").search(message, details), details
    assert "\n" not in details and "[[{{node" not in details  # one readable line, no graph dump
    x, d = _video(9)
    ok = stubs[0].Predict(_request({signatures.FEATURES: x, signatures.DURATION: d}), timeout=30)
    assert set(ok.outputs) == set(signatures.DETECT_OUTPUTS)


def test_unknown_model_in_status_and_metadata(stubs):
    predict, models = stubs
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "resnet"
    with pytest.raises(grpc.RpcError) as err:
        models.GetModelStatus(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    meta_req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_req.model_spec.name = "tags"
    meta_req.model_spec.version.value = 7
    with pytest.raises(grpc.RpcError) as err:
        predict.GetModelMetadata(meta_req, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "version 7 not found" in err.value.details()


def test_message_over_grpc_limit_is_resource_exhausted(exported):
    with DevServer("tags", exported[2], limits=LIMITS, max_message_bytes=64 * 1024) as srv:
        srv.wait_until_available(timeout=120)
        with DetectionClient(srv.address, timeout=30) as client:
            with pytest.raises(ServingError) as err:
                client.detect(np.zeros((1, 4096, 8), np.float32), 10.0)  # 128 KiB of features
            assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert len(client.detect(np.ones((1, 9, 8), np.float32), 10.0)) == 1


def test_load_failure_is_reported(tmp_path):
    (tmp_path / "tags" / "3").mkdir(parents=True)  # a version dir without a SavedModel
    with DevServer("tags", tmp_path / "tags") as srv:
        with pytest.raises(RuntimeError, match="failed to load"):
            srv.wait_until_available(timeout=60)
        with DetectionClient(srv.address, timeout=10, wait_timeout=10) as client:
            with pytest.raises(ServingError, match="failed to load") as err:
                client.wait_until_available()
            assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
            client.version = 3  # skip the wait: Predict itself says NOT_FOUND
            with pytest.raises(ServingError) as err:
                client.detect(np.ones((9, 8), np.float32), 10.0)
            assert err.value.code == grpc.StatusCode.NOT_FOUND


def test_newest_numeric_version_is_served(tmp_path):
    for name in ("1", "12", "3", "tmp", ".13.tmp-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "99").write_text("a file, not a version dir")
    assert newest_version(tmp_path) == (12, tmp_path / "12")
    with pytest.raises(FileNotFoundError, match="no numeric version"):
        newest_version(tmp_path / "tmp")


def test_tf_error_message_keeps_the_assert_line():
    e = tf.errors.InvalidArgumentError(None, None, "Graph execution error:\n\nassertion failed: [detect: x] [0]\n"
                                       "\t [[{{node Assert_1/Assert}}]]")
    assert tf_error_message(e) == "assertion failed: [detect: x] [0]"


def test_load_8_clients_x_50_requests(exported, server):
    cfg, model, _ = exported
    videos = [_video(t, seed=t) for t in (5, 16, 29, 64)]
    refs = [in_process_detect(model, x, d) for x, d in videos]
    latencies, errors = [], []
    lock = threading.Lock()

    def worker(w):
        with DetectionClient(server.address, timeout=60) as client:
            for i in range(50):
                j = (w + i) % len(videos)
                t0 = time.perf_counter()
                try:
                    (det,) = client.detect(*videos[j])
                    n = refs[j][signatures.NUM_DETECTIONS][0]
                    np.testing.assert_array_equal(det.classes, refs[j][signatures.DETECTION_CLASSES][0, :n])
                    np.testing.assert_allclose(det.scores, refs[j][signatures.DETECTION_SCORES][0, :n], rtol=1e-4)
                except Exception as e:  # collected: the test reports every failure
                    with lock:
                        errors.append(repr(e))
                with lock:
                    latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    p50, p95 = np.percentile(latencies, [50, 95]) * 1e3
    report = (f"load: 8 clients x 50 detect requests, {len(errors)} errors, p50 {p50:.1f} ms, "
              f"p95 {p95:.1f} ms, {len(latencies) / wall:.0f} req/s")
    print(report)
    log.info(report)
    assert errors == []
    assert len(latencies) == 400


def test_cli_serves_until_sigterm(exported):
    import os
    import signal
    import socket
    import subprocess
    import sys

    from tests.conftest import REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.dev_server", "--model_name", "tags", "--model_base_path",
         str(exported[2]), "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert f"serving model 'tags' version 1 on 127.0.0.1:{port}" in line
        with DetectionClient(f"127.0.0.1:{port}", timeout=30) as client:
            assert len(client.detect(np.ones((4, 8), np.float32), 3.0)) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_bad_base_path(tmp_path, capsys):
    from serving.dev_server import main

    assert main(["--model_base_path", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
