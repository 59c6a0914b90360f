"""serving.client: retries/deadlines, waiting for AVAILABLE, output helpers and the CLI."""

import json
import socket
import threading
import time

import grpc
import numpy as np
import pytest

from serving import batch_client
from serving import client as client_lib
from serving import grpc_client
from serving import signatures
from serving import testing
from serving.client import DetectionClient, VideoDetections, ClientInputError, ServingError, split_detections
from serving.dev_server import DevServer
from tags_tf.data import features as schema
from tags_tf.testing import in_process_detect


class _RpcError(grpc.RpcError):
    def __init__(self, code, details="boom"):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class _FlakyMethod:
    """Fails with the given codes, then answers "ok"; records each call's deadline."""

    def __init__(self, *codes):
        self.codes = list(codes)
        self.timeouts = []

    def __call__(self, request, timeout=None):
        self.timeouts.append(timeout)
        if self.codes:
            raise _RpcError(self.codes.pop(0))
        return "ok"


@pytest.fixture
def sleeps(monkeypatch):
    recorded = []
    monkeypatch.setattr(grpc_client.time, "sleep", recorded.append)
    return recorded


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_call_retries_unavailable_with_backoff_and_deadline(sleeps):
    client = DetectionClient("127.0.0.1:1", timeout=2.5, retries=3, backoff=0.5)
    method = _FlakyMethod(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert client._call(method, None) == "ok"
    assert method.timeouts == [2.5, 2.5, 2.5]
    assert sleeps == [0.5, 1.0]


def test_call_gives_up_after_retries(sleeps):
    client = DetectionClient("127.0.0.1:1", retries=2, backoff=0.1)
    method = _FlakyMethod(*[grpc.StatusCode.UNAVAILABLE] * 5)
    with pytest.raises(ServingError, match="UNAVAILABLE: boom") as err:
        client._call(method, None)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(method.timeouts) == 3 and sleeps == [0.1, 0.2]


def test_call_does_not_retry_other_errors(sleeps):
    client = DetectionClient("127.0.0.1:1", retries=3)
    method = _FlakyMethod(grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(ServingError) as err:
        client._call(method, None)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and len(method.timeouts) == 1 and sleeps == []


def test_wait_times_out_when_no_server():
    t0 = time.monotonic()
    with DetectionClient(f"127.0.0.1:{_free_port()}", timeout=0.5, backoff=0.1, wait_timeout=1.0) as client:
        with pytest.raises(ServingError, match="not AVAILABLE after 1 s") as err:
            client.wait_until_available()
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 10


def test_split_detections_trims_padding():
    outputs = {
        signatures.DETECTION_SEGMENTS: np.array([[[1, 2], [3, 4], [0, 0]], [[5, 6], [0, 0], [0, 0]]], np.float32),
        signatures.DETECTION_SCORES: np.array([[0.9, 0.5, 0], [0.7, 0, 0]], np.float32),
        signatures.DETECTION_CLASSES: np.array([[2, 0, -1], [1, -1, -1]], np.int32),
        signatures.NUM_DETECTIONS: np.array([2, 1], np.int32),
    }
    a, b = split_detections(outputs)
    np.testing.assert_array_equal(a.segments, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(b.classes, [1])
    assert a.records(["x", "y", "z"]) == [{"label": "z", "score": pytest.approx(0.9), "segment": [1.0, 2.0]},
                                          {"label": "x", "score": pytest.approx(0.5), "segment": [3.0, 4.0]}]
    assert b.records()[0]["label"] == "1"


def test_load_durations_csv_json_and_errors(tmp_path):
    (tmp_path / "d.csv").write_text("video,numFrame,seconds,fps\nv_a,100,12.5,8\nb,10,3,3\n")
    assert batch_client.load_durations(tmp_path / "d.csv") == {"v_a": 12.5, "b": 3.0}
    (tmp_path / "d.json").write_text(json.dumps({"a": 1.5, "b": {"duration": 2}}))
    assert batch_client.load_durations(tmp_path / "d.json") == {"a": 1.5, "b": 2.0}
    (tmp_path / "bad.csv").write_text("name,length\na,1\n")
    with pytest.raises(ClientInputError, match="bad.csv: CSV needs a header"):
        batch_client.load_durations(tmp_path / "bad.csv")
    (tmp_path / "bad.json").write_text(json.dumps({"a": "long"}))
    with pytest.raises(ClientInputError, match="bad.json"):
        batch_client.load_durations(tmp_path / "bad.json")


def test_load_class_names_list_dict_and_errors(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(["b", "a"]))
    assert batch_client.load_class_names(tmp_path / "list.json") == ["b", "a"]  # file order = class ids
    (tmp_path / "manifest.json").write_text(json.dumps({"class_names": ["x"], "num_classes": 1}))
    assert batch_client.load_class_names(tmp_path / "manifest.json") == ["x"]
    (tmp_path / "ids.json").write_text(json.dumps({"a": 0}))
    with pytest.raises(ClientInputError, match="ids.json: expected a JSON list of class names"):
        batch_client.load_class_names(tmp_path / "ids.json")
    with pytest.raises(ClientInputError, match="missing.json: cannot read class names"):
        batch_client.load_class_names(tmp_path / "missing.json")


def test_client_resampling_golden_and_empty():
    x = np.array([[0.0], [10.0]], np.float32)  # T_in = 2 -> 4: positions -0.25, 0.25, 0.75, 1.25
    np.testing.assert_allclose(client_lib.resample(x, 4)[:, 0], [0.0, 2.5, 7.5, 10.0], atol=1e-6)
    np.testing.assert_allclose(client_lib.resample(x[None], 4)[0, :, 0], [0.0, 2.5, 7.5, 10.0], atol=1e-6)
    with pytest.raises(ClientInputError, match="0 snippets"):
        client_lib.resample(np.zeros((0, 3), np.float32), 4)


# ------------------------------------------------------------------ against a server


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg = testing.tiny_config()
    base = tmp_path_factory.mktemp("models") / "tags"
    model, path = testing.export_model(base, cfg)
    return cfg, model, base, path


@pytest.fixture(scope="module")
def server(exported):
    with DevServer("tags", exported[2]) as srv:
        srv.wait_until_available(timeout=120)
        yield srv


def test_waits_for_a_server_that_starts_later(exported):
    port = _free_port()
    result = {}

    def wait():
        with DetectionClient(f"127.0.0.1:{port}", timeout=30, backoff=0.2, wait_timeout=120) as client:
            result["version"] = client.wait_until_available()
            result["dets"] = client.detect(np.ones((6, 8), np.float32), 4.0)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(1.0)  # the client is polling a closed port (UNAVAILABLE) meanwhile
    assert thread.is_alive()
    with DevServer("tags", exported[2], port=port):
        thread.join(timeout=120)
    assert result["version"] == 1 and len(result["dets"]) == 1


def test_signature_defs(server):
    with DetectionClient(server.address) as client:
        sigs = client.signature_defs()
    assert set(sigs[signatures.DETECT].inputs) == {signatures.FEATURES, signatures.DURATION}


def _reference(exported, x, duration):
    cfg, model = exported[:2]
    ref = in_process_detect(model, x[None], np.array([duration], np.float32))
    n = ref[signatures.NUM_DETECTIONS][0]
    return VideoDetections(ref[signatures.DETECTION_SEGMENTS][0, :n], ref[signatures.DETECTION_SCORES][0, :n],
                      ref[signatures.DETECTION_CLASSES][0, :n])


def _exported_names(exported):
    """The class names exported with the model: what the server sends without --labels."""
    return json.loads((exported[3] / signatures.EXTRA_DIR / signatures.CLASS_NAMES_FILE).read_text())


def _assert_json_matches(entries, ref: VideoDetections, class_names):
    assert len(entries) == len(ref) > 0
    for e, rec in zip(entries, ref.records(class_names)):
        assert e["label"] == rec["label"]
        assert e["score"] == pytest.approx(rec["score"], rel=1e-5)
        assert e["segment"] == pytest.approx(rec["segment"], abs=1e-3)


def test_cli_single_file(exported, server, tmp_path, capsys):
    x = np.random.default_rng(1).normal(size=(21, 8)).astype(np.float32)
    np.save(tmp_path / "video.npy", x)
    labels = exported[3] / signatures.EXTRA_DIR / signatures.CLASS_NAMES_FILE
    out = tmp_path / "out.json"
    rc = client_lib.main(["--server", server.address, "--model", "tags", "--features", str(tmp_path / "video.npy"),
                          "--duration", "120.5", "--labels", str(labels), "--json", str(out), "--timeout", "30"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "video" in printed and "action_" in printed
    data = json.loads(out.read_text())
    assert data["version"] == "VERSION 1.3" and list(data["results"]) == ["video"]
    _assert_json_matches(data["results"]["video"], _reference(exported, x, 120.5), json.loads(labels.read_text()))


def test_cli_folder_with_durations_and_a_bad_file(exported, server, tmp_path, capsys):
    rng = np.random.default_rng(2)
    feats = {"v_a": rng.normal(size=(9, 8)), "b": rng.normal(size=(40, 8))}
    for vid, x in feats.items():
        np.save(tmp_path / f"{vid}.npy", x.astype(np.float32))
    np.save(tmp_path / "c.npy", np.zeros((3, 4, 8), np.float32))  # wrong rank
    (tmp_path / "d.csv").write_text("video_id,duration\na,30\nb,12\nc,5\n")  # "a" matches v_a
    out = tmp_path / "out.json"
    rc = client_lib.main(["--server", server.address, "--features", str(tmp_path), "--durations",
                          str(tmp_path / "d.csv"), "--json", str(out), "--concurrency", "2"])
    assert rc == 1  # c.npy failed, the others were written
    err = capsys.readouterr().err
    assert "c.npy: features must be a (T, D) float array" in err and "1 video(s) failed" in err
    results = json.loads(out.read_text())["results"]
    assert sorted(results) == ["b", "v_a"]
    exported_names = _exported_names(exported)  # no --labels: the names come from the server
    _assert_json_matches(results["v_a"], _reference(exported, feats["v_a"].astype(np.float32), 30.0), exported_names)
    _assert_json_matches(results["b"], _reference(exported, feats["b"].astype(np.float32), 12.0), exported_names)


def test_cli_resampled_batches(exported, server, tmp_path):
    rng = np.random.default_rng(5)
    feats = {f"v{i}": (rng.normal(size=(t, 8)).astype(np.float32), 10.0 + i) for i, t in enumerate((7, 16, 33))}
    for vid, (x, _) in feats.items():
        np.save(tmp_path / f"{vid}.npy", x)
    (tmp_path / "d.json").write_text(json.dumps({vid: dur for vid, (_, dur) in feats.items()}))
    out = tmp_path / "out.json"
    rc = client_lib.main(["--server", server.address, "--features", str(tmp_path), "--durations",
                          str(tmp_path / "d.json"), "--json", str(out), "--resample", "--batch-size", "2"])
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    for vid, (x, dur) in feats.items():  # same detections as the graph's own resampling
        _assert_json_matches(results[vid], _reference(exported, x, dur), _exported_names(exported))
    sizes = [len(b) for b in batch_client._batches(((v, x, d) for v, (x, d) in feats.items()), 2, 16)]
    assert sizes == [2, 1]
    assert [len(b) for b in batch_client._batches(((v, x, d) for v, (x, d) in feats.items()), 2, None)] == [1, 1, 1]


def test_cli_folder_with_annotation_durations(exported, server, tmp_path):
    x = np.random.default_rng(3).normal(size=(17, 8)).astype(np.float32)
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "v_abc.npy", x)
    ann = {"version": "VERSION 1.3", "taxonomy": [], "database": {"abc": {
        "subset": "validation", "duration": 44.0, "url": "",
        "annotations": [{"segment": [1.0, 5.0], "label": "walk"}]}}}
    (tmp_path / "anet.json").write_text(json.dumps(ann))
    out = tmp_path / "out.json"
    rc = client_lib.main(["--server", server.address, "--features", str(tmp_path / "feats"),
                          "--annotations", str(tmp_path / "anet.json"), "--json", str(out)])
    assert rc == 0
    entries = json.loads(out.read_text())["results"]["v_abc"]
    _assert_json_matches(entries, _reference(exported, x, 44.0), _exported_names(exported))


def test_cli_shards(exported, server, tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(4)
    videos = {"s1": (rng.normal(size=(12, 8)).astype(np.float32), 20.0),
              "s2": (rng.normal(size=(30, 8)).astype(np.float32), 75.5)}
    with tf.io.TFRecordWriter(str(tmp_path / "validation-00000-of-00001.tfrecord")) as w:
        for vid, (x, dur) in videos.items():
            w.write(schema.make_example(vid, "validation", dur, x).SerializeToString())
    out = tmp_path / "out.json"
    rc = client_lib.main(["--server", server.address, "--shards", str(tmp_path / "validation-*.tfrecord"),
                          "--json", str(out)])
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    for vid, (x, dur) in videos.items():
        _assert_json_matches(results[vid], _reference(exported, x, dur), _exported_names(exported))


@pytest.mark.parametrize("argv, message", [
    (["--features", "{tmp}/missing.npy", "--duration", "3"], "no such file or folder"),
    (["--features", "{tmp}/v.npy"], "--duration SECONDS is required"),
    (["--shards", "{tmp}/none-*.tfrecord"], "no files match"),
])
def test_cli_input_errors(tmp_path, capsys, argv, message):
    np.save(tmp_path / "v.npy", np.zeros((3, 8), np.float32))
    assert client_lib.main(["--server", "127.0.0.1:1"] + [a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_cli_reports_a_bad_request(server, tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.zeros((3, 5), np.float32))  # D = 5, the model wants 8
    rc = client_lib.main(["--server", server.address, "--features", str(tmp_path / "v.npy"), "--duration", "3"])
    assert rc == 1
    assert "INVALID_ARGUMENT: input 'features' dim 2 must be 8, got 5" in capsys.readouterr().err
