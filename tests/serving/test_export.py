"""serving.export: signatures, equality with the in-process model, TF Serving compatibility."""

import json

import numpy as np
import pytest
import tensorflow as tf

from serving import signatures
from serving import testing
from serving.export import (
    ExportError,
    export_saved_model,
    graph_op_types,
    main,
    unsupported_ops,
)
from tags_tf.config import from_dict
from tags_tf.testing import class_names, in_process_detect
from tests.conftest import REPO


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg = testing.tiny_config()
    model, path = testing.export_model(tmp_path_factory.mktemp("models") / "tags", cfg)
    return cfg, model, path


@pytest.fixture(scope="module")
def reloaded(exported):
    return tf.saved_model.load(str(exported[2]))


def _inputs(t_in, b=2, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, t_in, d)).astype(np.float32), np.array([30.0, 12.5, 7.0][:b], np.float32)


def _assert_detections_equal(got, ref, names=None):
    """got (the detect signature) == ref (in-process); ``names`` default to tags_tf.testing.class_names's."""
    assert set(got) == set(signatures.DETECT_OUTPUTS)
    np.testing.assert_array_equal(got[signatures.NUM_DETECTIONS], ref[signatures.NUM_DETECTIONS])
    np.testing.assert_array_equal(got[signatures.DETECTION_CLASSES], ref[signatures.DETECTION_CLASSES])
    np.testing.assert_allclose(got[signatures.DETECTION_SCORES], ref[signatures.DETECTION_SCORES], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[signatures.DETECTION_SEGMENTS], ref[signatures.DETECTION_SEGMENTS], rtol=1e-5, atol=1e-4)
    labels = [[x.decode() for x in row] for row in np.asarray(got[signatures.DETECTION_CLASS_NAMES])]
    for row, classes, n in zip(labels, ref[signatures.DETECTION_CLASSES], ref[signatures.NUM_DETECTIONS]):
        want = [names[c] if names else f"action_{c}" for c in classes[:n]]
        assert row == want + [""] * (len(classes) - n)


@pytest.mark.parametrize("t_in", [1, 7, 16, 23])  # T = 16: up-, identity and downsampling
def test_detect_equals_in_process_model_and_decoder(exported, reloaded, t_in):
    cfg, model, _ = exported
    x, dur = _inputs(t_in)
    ref = in_process_detect(model, x, dur)
    got = {k: v.numpy() for k, v in reloaded.signatures[signatures.DETECT](
        features=tf.constant(x), duration=tf.constant(dur)).items()}
    _assert_detections_equal(got, ref)
    assert got[signatures.NUM_DETECTIONS].min() > 0  # the comparison is not between empty outputs
    n = cfg.postprocess.max_detections
    assert got[signatures.DETECTION_SEGMENTS].shape == (2, n, 2)
    assert got[signatures.DETECTION_SEGMENTS].max() <= dur.max() + 1e-4


def test_serving_default_equals_model_call(exported, reloaded):
    cfg, model, _ = exported
    x, _ = _inputs(cfg.model.input_snippets)
    ref = {k: v.numpy() for k, v in model(x, training=False).items()}
    got = {k: v.numpy() for k, v in reloaded.signatures[signatures.SERVING_DEFAULT](features=tf.constant(x)).items()}
    assert set(got) == set(ref) == {f"{p}_s{s}" for p in ("cls_logits", "mask_logits", "cons_cls", "cons_mask")
                                    for s in cfg.model.scales}
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)


def test_signature_names_dtypes_and_batch_dims(exported):
    cfg, _, path = exported
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    (mg,) = sm.meta_graphs
    assert list(mg.meta_info_def.tags) == [signatures.SERVE_TAG]
    sigs = {k: v for k, v in mg.signature_def.items() if not k.startswith("__")}
    assert set(sigs) == {signatures.SERVING_DEFAULT, signatures.DETECT}
    detect = sigs[signatures.DETECT]
    assert set(detect.inputs) == {signatures.FEATURES, signatures.DURATION}
    assert set(detect.outputs) == set(signatures.DETECT_OUTPUTS)
    # Input tensor names are derived from the signature and input names (documented).
    assert detect.inputs[signatures.FEATURES].name == "detect_features:0"
    assert detect.inputs[signatures.DURATION].name == "detect_duration:0"
    assert sigs[signatures.SERVING_DEFAULT].inputs[signatures.FEATURES].name == "serving_default_features:0"
    dims = lambda info: [d.size for d in info.tensor_shape.dim]  # noqa: E731
    d, k, n = cfg.model.feature_dim, cfg.model.num_classes, cfg.postprocess.max_detections
    assert dims(detect.inputs[signatures.FEATURES]) == [-1, -1, d]
    assert dims(detect.inputs[signatures.DURATION]) == [-1]
    assert dims(detect.outputs[signatures.DETECTION_SEGMENTS]) == [-1, n, 2]
    assert dims(detect.outputs[signatures.NUM_DETECTIONS]) == [-1]
    assert detect.outputs[signatures.DETECTION_CLASSES].dtype == tf.int32.as_datatype_enum
    assert detect.outputs[signatures.NUM_DETECTIONS].dtype == tf.int32.as_datatype_enum
    raw = sigs[signatures.SERVING_DEFAULT]
    assert dims(raw.inputs[signatures.FEATURES]) == [-1, cfg.model.input_snippets, d]
    assert dims(raw.outputs["cls_logits_s2"]) == [-1, cfg.model.snippets(2), k + 1]
    for sig in sigs.values():
        assert sig.method_name == "tensorflow/serving/predict"
        for info in list(sig.inputs.values()) + list(sig.outputs.values()):
            assert dims(info)[0] == -1, info  # batch-major: first dim is the batch


def test_graph_uses_only_core_ops(exported):
    ops = graph_op_types(exported[2])
    assert {"NonMaxSuppressionV5", "MatMul", "Assert"} <= ops  # decoder, model and checks are in it
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    assert unsupported_ops(ops) == []


def test_op_check_flags_python_and_custom_ops(tmp_path):
    assert unsupported_ops({"MatMul", "PyFunc", "EagerPyFunc", "Addons>GeluGrad", "NoSuchOp"}) == [
        "Addons>GeluGrad", "EagerPyFunc", "NoSuchOp", "PyFunc"]
    module = tf.Module()
    module.f = tf.function(lambda x: tf.py_function(lambda v: v * 2, [x], tf.float32),
                           input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures=module.f)
    assert unsupported_ops(graph_op_types(tmp_path)) == ["EagerPyFunc"]


def test_loads_in_tf1_session_and_runs_by_tensor_names(exported):
    cfg, model, path = exported
    x, dur = _inputs(11)
    ref = in_process_detect(model, x, dur)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        mg = tf.compat.v1.saved_model.loader.load(sess, [signatures.SERVE_TAG], str(path))
        sig = mg.signature_def[signatures.DETECT]
        got = sess.run({k: v.name for k, v in sig.outputs.items()},
                       feed_dict={sig.inputs[signatures.FEATURES].name: x, sig.inputs[signatures.DURATION].name: dur})
    _assert_detections_equal(got, ref)


@pytest.mark.parametrize("case, message", [
    ("t0", "at least one snippet"),
    ("nan", "must be finite"),
    ("negative_duration", "duration must be finite and > 0"),
    ("zero_duration", "duration must be finite and > 0"),
    ("duration_count", "one value per video"),
])
def test_graph_asserts_give_readable_invalid_argument(reloaded, case, message):
    x, dur = _inputs(5)
    if case == "t0":
        x = x[:, :0]
    elif case == "nan":
        x[1, 2, 3] = np.nan
    elif case == "negative_duration":
        dur[0] = -1.0
    elif case == "zero_duration":
        dur[1] = 0.0
    elif case == "duration_count":
        dur = dur[:1]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        reloaded.signatures[signatures.DETECT](features=tf.constant(x), duration=tf.constant(dur))


def test_extra_files(exported):
    cfg, _, path = exported
    extra = path / signatures.EXTRA_DIR
    assert json.loads((extra / signatures.CLASS_NAMES_FILE).read_text()) == ["action_0", "action_1", "action_2"]
    assert from_dict(json.loads((extra / signatures.CONFIG_FILE).read_text())) == cfg
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # temp dir renamed away


def test_warmup_requests_replay_like_tf_serving(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    from serving.servable import Servable

    path = exported[2]
    records = list(tf.data.TFRecordDataset(str(path / signatures.EXTRA_DIR / signatures.WARMUP_FILE)).as_numpy_iterator())
    logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == [signatures.DETECT,
                                                                                   signatures.SERVING_DEFAULT]
    servable = Servable(path, 1)
    try:
        assert servable.warm_up() == 2
    finally:
        servable.close()


def test_export_refuses_bad_class_names_and_existing_dir(exported):
    cfg, model, path = exported
    with pytest.raises(ExportError, match="already exists"):
        export_saved_model(model, cfg, path, class_names(cfg))
    with pytest.raises(ExportError, match="2 names but the model has num_classes=3"):
        export_saved_model(model, cfg, path.parent / "9", ["a", "b"])


def test_class_fusion_export_adds_external_scores_input(tmp_path):
    cfg = testing.tiny_config(**{"postprocess.class_fusion": "external"})
    model, path = testing.export_model(tmp_path / "tags", cfg)
    sig = tf.saved_model.load(str(path)).signatures[signatures.DETECT]
    assert set(sig.structured_input_signature[1]) == {signatures.FEATURES, signatures.DURATION, signatures.EXTERNAL_SCORES}
    x, dur = _inputs(9)
    ext = np.array([[0.0, 0.9, 0.1], [0.7, 0.0, 0.3]], np.float32)
    got = sig(features=tf.constant(x), duration=tf.constant(dur), external_scores=tf.constant(ext))
    from tags_tf.data.resample import resample_features

    ref = model.decoder(model(resample_features(x, cfg.model.input_snippets)), dur, external_scores=ext)
    _assert_detections_equal({k: v.numpy() for k, v in got.items()}, {k: v.numpy() for k, v in ref.items()})
    classes = got[signatures.DETECTION_CLASSES].numpy()
    assert set(classes[0][classes[0] >= 0]) == {1}  # labelled by the best external class


def test_cli_exports_from_workdir(exported, tmp_path, capsys):
    cfg, model, _ = exported
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(cfg.to_json())
    model.save(run / "best.keras")
    (run / "class_names.json").write_text(json.dumps(["walk", "run", "jump"]))
    out = tmp_path / "models" / "tags" / "1"
    assert main(["--workdir", str(run), "--output", str(out)]) == 0
    assert "exported" in capsys.readouterr().out
    assert json.loads((out / signatures.EXTRA_DIR / signatures.CLASS_NAMES_FILE).read_text()) == ["walk", "run", "jump"]
    x, dur = _inputs(13)
    got = tf.saved_model.load(str(out)).signatures[signatures.DETECT](features=tf.constant(x), duration=tf.constant(dur))
    _assert_detections_equal({k: v.numpy() for k, v in got.items()}, in_process_detect(model, x, dur),
                             ["walk", "run", "jump"])


@pytest.mark.parametrize("argv, message", [
    (["--output", "{tmp}/m/1"], "give --workdir"),
    (["--workdir", "{tmp}/nope", "--output", "{tmp}/m/1"], "checkpoint file .*best.keras not found"),
    (["--workdir", "{tmp}", "--output", "{tmp}/m/latest"], "numeric version"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert __import__("re").search(message, err), err



SERVING_DIR = REPO / "serving"


def test_models_config_is_a_model_server_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    cfg = text_format.Parse((SERVING_DIR / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = cfg.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("tags", "/models/tags", "tensorflow")


def test_batching_config_uses_known_batching_parameters():
    # BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto)
    # is not in the tensorflow-serving-api wheel, so check its fields by name.
    import re

    known = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
             "thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs",
             "enable_large_batch_splitting", "max_execution_batch_size"}
    lines = [ln.split("#")[0].strip() for ln in (SERVING_DIR / "batching.config").read_text().splitlines()]
    fields = {}
    for ln in filter(None, lines):
        m = re.fullmatch(r"(\w+) \{ value: (\d+) \}|(\w+): (true|false)", ln)
        assert m, f"unexpected line {ln!r}"
        fields[m.group(1) or m.group(3)] = m.group(2) or m.group(4)
    assert set(fields) <= known
    assert fields["pad_variable_length_inputs"] == "false"  # padding T_in would change detections
    assert int(fields["max_batch_size"]) >= 1


def test_detect_on_a_28_minute_video_equals_offline_inference(tmp_path):
    """Long videos (data.window_snippets > 0): the served ``detect`` cuts the same windows,
    pools and Soft-NMSes them as validation / batch inference over shards does."""
    from tags_tf.data.input import make_dataset, subset_pattern
    from tags_tf.data.features import make_example
    from tags_tf.evaluation.inference import detect_dataset
    from tags_tf.data.tfrecord import write_shards

    # Windows of 32 native snippets (resampled to the tiny model's 16), half overlapping.
    cfg = testing.tiny_config(**{"data.window_snippets": 32, "data.window_overlap": 0.5,
                                 "postprocess.max_detections": 50})
    model, path = testing.export_model(tmp_path / "tags", cfg)
    t, duration = 6700, 1675.0  # 28 min at 4 snippets/s
    feats = np.random.default_rng(1).normal(size=(t, cfg.model.feature_dim)).astype(np.float32)
    record = make_example("long", "validation", duration, feats, [[10.0, 13.0]], [0], ["action_0"])
    write_shards(str(tmp_path / "shards"), "validation", [record.SerializeToString()], num_shards=1)
    ds = make_dataset(subset_pattern(str(tmp_path / "shards"), "validation"), cfg, training=False,
                      with_metadata=True)
    offline, _ = detect_dataset(model, ds)

    served = tf.saved_model.load(str(path)).signatures[signatures.DETECT](
        features=tf.constant(feats[None]), duration=tf.constant([duration]))
    n = int(served[signatures.NUM_DETECTIONS][0])
    assert n == len(offline["long"]["scores"]) == 50
    np.testing.assert_array_equal(served[signatures.DETECTION_CLASSES][0, :n], offline["long"]["classes"])
    np.testing.assert_allclose(served[signatures.DETECTION_SCORES][0, :n], offline["long"]["scores"], rtol=1e-5)
    np.testing.assert_allclose(served[signatures.DETECTION_SEGMENTS][0, :n], offline["long"]["segments"],
                               rtol=1e-5, atol=1e-3)
    segs = offline["long"]["segments"]
    assert segs.min() >= 0 and segs.max() <= duration
    assert segs[:, 0].max() - segs[:, 0].min() > duration / 4  # detections from windows across the video
