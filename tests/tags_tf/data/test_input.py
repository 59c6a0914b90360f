"""Tests of tags_tf.data.input (the tf.data pipeline)."""

import json
import re
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tags_tf.data import features as F
from tags_tf.config import get_config
from tags_tf.data.input import InputError, list_files, make_dataset, subset_pattern
from tags_tf.model.labels import build_targets
from tags_tf.data.tfrecord import open_records
from tags_tf.data.tfrecord import write_shards as write_shard_files
from tests.conftest import REPO


# T_in = 4 * 2 = 8 snippets, scales 4 and 8, D = 3, K = 2.
CFG = get_config(
    "demo",
    {"model.feature_dim": 3, "model.base_snippets": 4, "model.num_classes": 2, "data.shuffle_buffer": 8},
)


def make_videos(n: int, dim: int = 3, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n):
        t = int(rng.integers(2, 12))
        k = i % 3  # 0, 1 or 2 instances
        dur = float(rng.uniform(10, 50))
        starts = np.sort(rng.uniform(0, dur * 0.5, size=k))
        segs = np.stack([starts, starts + rng.uniform(1, dur * 0.4, size=k)], -1) if k else np.zeros((0, 2))
        videos.append(
            dict(
                video_id=f"v{i:02d}",
                duration=dur,
                features=rng.normal(size=(t, dim)).astype(np.float32),
                segments=segs,
                labels=[int(x) for x in rng.integers(0, 2, size=k)],
            )
        )
    return videos


def write_shards(directory: Path, videos: list[dict], num_files: int, subset="training", gzip=False) -> list[str]:
    records = (
        F.make_example(v["video_id"], subset, v["duration"], v["features"], v["segments"], v["labels"]).SerializeToString()
        for v in videos
    )
    return write_shard_files(str(directory), subset, records, num_files, "GZIP" if gzip else "")


def numpy_resample(x: np.ndarray, t: int) -> np.ndarray:
    t_in = x.shape[0]
    pos = np.clip((np.arange(t) + 0.5) * t_in / t - 0.5, 0, t_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t_in - 1)
    w = (pos - lo)[:, None]
    return (1 - w) * x[lo] + w * x[hi]


@pytest.fixture
def shards(tmp_path):
    videos = make_videos(7)
    write_shards(tmp_path, videos, num_files=2)
    return tmp_path, videos


def test_eval_round_trip_every_video_once_in_fixed_order(shards):
    d, videos = shards
    ds = make_dataset(subset_pattern(d, "training"), CFG, training=False, batch_size=3, with_metadata=True)
    batches = list(ds.as_numpy_iterator())
    assert [b[0]["features"].shape for b in batches] == [(3, 8, 3), (3, 8, 3), (1, 8, 3)]
    ids = [v.decode() for x, _ in batches for v in x["video_id"]]
    assert sorted(ids) == [v["video_id"] for v in videos]
    again = [v.decode() for x, _ in make_dataset(str(d / "*.tfrecord"), CFG, False, 3, with_metadata=True) for v in x["video_id"].numpy()]
    assert again == ids
    by_id = {v["video_id"]: v for v in videos}
    for x, y in batches:
        for b, vid in enumerate(x["video_id"]):
            v = by_id[vid.decode()]
            np.testing.assert_allclose(x["features"][b], numpy_resample(v["features"], 8), atol=1e-5)
            assert x["num_snippets"][b] == len(v["features"])
            assert x["duration"][b] == pytest.approx(v["duration"], rel=1e-6)
            n = len(v["labels"])
            np.testing.assert_allclose(x["segments"][b, :n], v["segments"], rtol=1e-6)
            assert list(x["labels"][b, :n]) == v["labels"] and (x["labels"][b, n:] == -1).all()
            # Targets equal the unbatched label assignment of this one video.
            ref = build_targets(np.asarray(v["segments"], np.float32).reshape(-1, 2), np.asarray(v["labels"], np.int32), v["duration"], CFG.model)
            assert set(y) == set(ref)
            for k in ref:
                np.testing.assert_allclose(y[k][b], ref[k].numpy(), err_msg=k)


def test_training_shapes_keys_and_drop_remainder(shards):
    d, videos = shards
    ds = make_dataset([subset_pattern(d, "training")], CFG, training=True, batch_size=2, seed=1)
    batches = list(ds)
    assert len(batches) == 3  # 7 videos, batch 2, remainder dropped
    x, y = batches[0]
    assert set(x) == {"features"} and x["features"].shape == (2, 8, 3)
    assert sorted(y) == sorted(f"{k}_s{s}" for s in (1, 2) for k in ("cls_target", "mask_target", "fg", "valid"))
    assert y["cls_target_s1"].shape == (2, 4) and y["cls_target_s1"].dtype == tf.int32
    assert y["mask_target_s2"].shape == (2, 8, 8)
    assert y["valid_s2"].numpy().min() == 1.0
    spec = ds.element_spec[0]["features"]
    assert spec.shape == (2, 8, 3)  # static batch dim for training


def test_raw_targets_give_padded_ground_truth(shards):
    d, videos = shards
    ds = make_dataset(subset_pattern(d, "training"), CFG, training=False, batch_size=7, targets="raw", with_metadata=True)
    x, y = next(iter(ds))
    assert sorted(y) == ["duration", "labels", "segments"]
    np.testing.assert_array_equal(y["labels"], x["labels"])
    assert y["segments"].shape == (7, 2, 2)  # at most 2 instances per video
    with pytest.raises(ValueError, match="targets must be"):
        make_dataset(subset_pattern(d, "training"), CFG, training=False, targets="none")


def test_training_shuffles_between_epochs(tmp_path):
    videos = make_videos(16)
    write_shards(tmp_path, videos, num_files=4)
    ds = make_dataset(str(tmp_path / "*"), CFG, training=True, batch_size=16, seed=3)
    feats = [next(iter(ds))[0]["features"].numpy() for _ in range(2)]
    assert not np.allclose(feats[0], feats[1])  # a new order each pass
    # ... and each pass is still a permutation of all the videos.
    ref = np.sort(np.stack([numpy_resample(v["features"], 8) for v in videos]).sum(axis=(1, 2)))
    np.testing.assert_allclose(np.sort(feats[1].sum(axis=(1, 2))), ref, atol=1e-4)


def test_gzip_inferred_from_suffix_and_wrong_compression_is_clear(tmp_path):
    videos = make_videos(3)
    write_shards(tmp_path, videos, num_files=1, gzip=True)
    ds = make_dataset(subset_pattern(tmp_path, "training"), CFG, training=False, batch_size=4)
    assert next(iter(ds))[0]["features"].shape == (3, 8, 3)
    with pytest.raises(InputError, match=r"training-00000-of-00001\.tfrecord\.gz: cannot read TFRecords with compression ''"):
        make_dataset(subset_pattern(tmp_path, "training"), CFG, training=False, compression="")


def test_no_matching_files_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(InputError, match=re.escape(f"no TFRecord files match '{pattern}'")):
        make_dataset(pattern, CFG, training=True)
    with pytest.raises(InputError, match="empty list"):
        list_files([])


def test_feature_dim_mismatch_names_file_and_dims(tmp_path):
    write_shards(tmp_path, make_videos(2, dim=5), num_files=1)
    with pytest.raises(InputError, match=r"training-00000-of-00001\.tfrecord: video 'v00' has feature_dim 5, expected model\.feature_dim=3"):
        make_dataset(subset_pattern(tmp_path, "training"), CFG, training=False)
    # Without the up-front check the parser still refuses the records (TF's message).
    ds = make_dataset(subset_pattern(tmp_path, "training"), CFG, training=False, check=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Feature list 'features' has an unexpected number"):
        list(ds)


def test_not_a_shard_is_rejected(tmp_path):
    p = tmp_path / "training-00000-of-00001.tfrecord"
    with open_records(str(p)) as w:
        w.write(tf.train.Example().SerializeToString())  # an Example, no feature_dim
    with pytest.raises(InputError, match="the first record has no 'feature_dim', 'video_id', 'subset', 'duration'"):
        make_dataset(str(p), CFG, training=False)
    with open_records(str(p)) as w:
        w.write(b"\xff\xff")  # not a protobuf message
    with pytest.raises(InputError, match="the first record is not a tf.train.SequenceExample"):
        make_dataset(str(p), CFG, training=False)


def test_the_tf_data_decoder_and_the_numpy_reader_agree(tmp_path):
    videos = make_videos(5)
    (path,) = write_shards(tmp_path, videos, num_files=1, gzip=True)
    records = list(tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator())
    batch = F.parse_batch(tf.constant(records), 3)
    for b, (record, v) in enumerate(zip(records, videos)):
        one = F.parse_example(tf.constant(record), 3)
        ref = F.example_to_numpy(record)
        t, n = len(v["features"]), len(v["labels"])
        assert ref[F.VIDEO_ID] == v["video_id"] == one[F.VIDEO_ID].numpy().decode() == batch[F.VIDEO_ID][b].numpy().decode()
        for got in (one[F.FEATURES], batch[F.FEATURES][b, :t]):
            np.testing.assert_array_equal(got, ref[F.FEATURES])
        assert int(one[F.NUM_SNIPPETS]) == int(batch[F.NUM_SNIPPETS][b]) == t
        np.testing.assert_array_equal(one[F.SNIPPET_TIMES], ref[F.SNIPPET_TIMES])
        np.testing.assert_allclose(one["segments"], ref["segments"], rtol=1e-6)
        np.testing.assert_allclose(batch["segments"][b, :n], ref["segments"], rtol=1e-6)
        assert list(one["labels"].numpy()) == list(batch["labels"][b, :n].numpy()) == list(ref["labels"]) == v["labels"]
        assert (batch["labels"][b, n:].numpy() == -1).all()


def test_the_numpy_reader_refuses_vectors_of_another_width_than_feature_dim():
    ex = F.make_example("v", "training", 2.0, np.ones((2, 3)))
    ex.context.feature[F.FEATURE_DIM].int64_list.value[0] = 4
    with pytest.raises(F.RecordError, match=r"has snippet vectors of \[3\] values, not its feature_dim 4"):
        F.example_to_numpy(ex.SerializeToString())


def test_input_context_shards_files_and_uses_per_replica_batch(tmp_path):
    videos = make_videos(8)
    write_shards(tmp_path, videos, num_files=4)
    seen = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=4)
        ds = make_dataset(str(tmp_path / "*"), CFG, training=False, batch_size=8, input_context=ctx, with_metadata=True)
        sizes = [int(x["features"].shape[0]) for x, _ in ds]
        assert max(sizes) == 2  # 8 global / 4 replicas
        seen.append({v.decode() for x, _ in ds for v in x["video_id"].numpy()})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {v["video_id"] for v in videos}


def test_input_context_with_fewer_files_than_pipelines_shards_records(tmp_path):
    videos = make_videos(5)
    write_shards(tmp_path, videos, num_files=1)
    seen = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2)
        ds = make_dataset(str(tmp_path / "*"), CFG, training=False, batch_size=4, input_context=ctx, with_metadata=True)
        seen.append([v.decode() for x, _ in ds for v in x["video_id"].numpy()])
    assert sorted(seen[0] + seen[1]) == [v["video_id"] for v in videos]


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tags_tf.config import get_config
    from tags_tf.data.input import make_dataset
    cfg = get_config("demo", {"model.feature_dim": 3, "model.base_snippets": 4, "model.num_classes": 2})
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync}
    for training in (True, False):
        dist = strategy.distribute_datasets_from_function(
            lambda ctx: make_dataset(sys.argv[1], cfg, training=training, batch_size=4, input_context=ctx,
                                     with_metadata=not training, seed=0))
        ids, sizes = [], []
        for x, y in dist:
            for part_x, part_y in zip(strategy.experimental_local_results(x), strategy.experimental_local_results(y)):
                sizes.append(int(part_x["features"].shape[0]))
                assert part_y["mask_target_s2"].shape[0] == sizes[-1]
                if not training:
                    ids += [v.decode() for v in part_x["video_id"].numpy()]
        out["train" if training else "eval"] = {"sizes": sizes, "ids": sorted(ids)}
    print("RESULT" + json.dumps(out))
    """
)


def test_mirrored_strategy_two_logical_cpus(tmp_path):
    videos = make_videos(6)
    write_shards(tmp_path / "shards", videos, num_files=2)
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "shards" / "*.tfrecord")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["replicas"] == 2
    # Training: 6 videos, global batch 4 -> one step of 2 per replica (remainder dropped).
    assert out["train"]["sizes"] == [2, 2]
    # Evaluation: every video exactly once across the replicas.
    assert out["eval"]["ids"] == [v["video_id"] for v in videos]


def test_keras_fit_and_evaluate_consume_the_datasets(shards):
    import keras

    from tags_tf.model.tags_model import TagsModel

    d, _ = shards
    cfg = get_config("demo", {"model.feature_dim": 3, "model.base_snippets": 4, "model.num_classes": 2, "model.embed_dim": 8})
    model = TagsModel(cfg)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    hist = model.fit(make_dataset(subset_pattern(d, "training"), cfg, training=True, batch_size=2, seed=0), epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    # Evaluation batches (metadata in x, smaller last batch) go through evaluate.
    loss = model.evaluate(make_dataset(subset_pattern(d, "training"), cfg, training=False, batch_size=3, with_metadata=True), verbose=0)
    assert np.isfinite(loss).all()


@pytest.mark.parametrize("t", [16, 10])  # one window: the whole video, or the video zero-padded
def test_windowed_training_sample_of_a_short_video_by_hand(tmp_path, t):
    from tags_tf.data.features import make_example
    from tags_tf.model.labels import build_targets
    from tags_tf.testing import tiny_config
    from tags_tf.data.tfrecord import write_shards

    cfg = tiny_config(**{"data.window_snippets": 16})  # = input_snippets: no resampling
    feats = np.random.default_rng(0).normal(size=(t, 8)).astype(np.float32)
    rec = make_example("v", "training", 5.0, feats, [[1.0, 2.5]], [2], ["c2"]).SerializeToString()
    write_shards(str(tmp_path), "training", [rec], num_shards=1)
    (x, y), = list(make_dataset(str(tmp_path / "training-*"), cfg, training=True, batch_size=1, seed=0))
    want = np.zeros((16, 8), np.float32)
    want[:t] = feats
    np.testing.assert_array_equal(x["features"].numpy()[0], want)
    # The window lasts 16 snippets of 5 / t s each; the segment keeps its seconds.
    ref = build_targets(tf.constant([[[1.0, 2.5]]]), tf.constant([[2]]), tf.constant([16 * 5.0 / t]), cfg.model)
    for k in ref:
        np.testing.assert_array_equal(y[k].numpy(), ref[k].numpy(), err_msg=k)
    assert y["cls_target_s1"].numpy().min() == 2  # the instance is in the targets


def test_windowed_epoch_counts_windows_and_evaluation_keeps_native_videos(tmp_path):
    from tags_tf.data.windows import num_windows
    from tags_tf.testing import tiny_config, write_tiny_shards

    shard_dir = write_tiny_shards(tmp_path, num_train=30, num_val=4)  # 12-23 snippets a video
    cfg = tiny_config(**{"data.window_snippets": 8, "data.window_overlap": 0.5})  # 8 -> resampled to 16
    records = [F.example_to_numpy(r.numpy()) for r in tf.data.TFRecordDataset(
        tf.io.gfile.glob(str(shard_dir / "training-*")))]
    windows = sum(num_windows(len(r[F.FEATURES]), 8, 4) for r in records)
    batches = list(make_dataset(str(shard_dir / "training-*"), cfg, training=True, batch_size=5, seed=1))
    assert len(batches) == windows // 5
    assert all(x["features"].shape == (5, 16, 8) for x, _ in batches)
    assert all(y["mask_target_s2"].shape == (5, 16, 16) for _, y in batches)
    val = list(make_dataset(str(shard_dir / "validation-*"), cfg, training=False, with_metadata=True))
    assert len(val) == 4
    for x, _ in val:
        assert x["features"].shape[0] == 1 and x["features"].shape[1] == int(x["num_snippets"][0])
