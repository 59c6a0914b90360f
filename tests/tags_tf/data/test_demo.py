"""Tests of tags_tf.data.demo (the synthetic demo dataset)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tags_tf.data import features as F
from tags_tf.config import get_config
from tags_tf.data import demo
from tags_tf.data.annotation_files import load_annotations
from tags_tf.data.input import make_dataset, subset_pattern


def snippet_classes(n: int, duration: float, annotations: list) -> np.ndarray:
    """(n,) class id of each native snippet centre, 4 = background."""
    centres = (np.arange(n) + 0.5) / n * duration
    y = np.full(n, len(demo.CLASS_NAMES))
    for a in annotations:
        s, e = a["segment"]
        y[(centres >= s) & (centres <= e)] = demo.CLASS_NAMES.index(a["label"])
    return y


@pytest.fixture(scope="module")
def generated():
    spec = demo.DemoSpec(num_videos=120)
    return spec, *demo.generate_demo(spec, np.random.default_rng(0))


def test_statistics(generated):
    spec, ann, feats = generated
    db = ann["database"]
    assert len(db) == 120 and set(feats) == set(db)
    subsets = [v["subset"] for v in db.values()]
    assert subsets.count("validation") == 24 and subsets.count("test") == 24 and subsets.count("training") == 72
    durations = np.array([v["duration"] for v in db.values()])
    assert durations.min() >= 30 and durations.max() <= 240 and durations.std() > 30
    lengths = np.array([len(f) for f in feats.values()])
    assert lengths.min() >= 40 and lengths.max() <= 200
    assert (lengths < 64).any() and (lengths > 64).any()  # resampling to T_in = 64 goes both ways
    assert np.corrcoef(durations, lengths)[0, 1] > 0.5  # longer videos have more snippets
    counts = np.array([len(v["annotations"]) for v in db.values()])
    assert counts.min() >= 1 and counts.max() <= 6 and len(set(counts)) >= 3
    assert 0.6 < (counts == 1).mean() < 0.9  # ActivityNet: 75 % of the videos have one instance
    fractions = []
    for v in db.values():
        segs = sorted(a["segment"] for a in v["annotations"])
        for (s, e), nxt in zip(segs, segs[1:] + [[v["duration"], None]]):
            assert 0 <= s < e <= nxt[0] + 1e-3  # inside the video, no overlap
            fractions.append((e - s) / v["duration"])
    fractions = np.array(fractions)
    assert fractions.min() >= 0.02 - 1e-3 and fractions.max() <= 0.95 + 1e-3
    assert (fractions < 0.05).sum() > 5 and (fractions > 0.8).sum() > 5  # short and long actions
    for subset in ("training", "validation", "test"):
        labels = {a["label"] for v in db.values() if v["subset"] == subset for a in v["annotations"]}
        assert labels == set(demo.CLASS_NAMES)
    all_feats = np.concatenate(list(feats.values()))
    assert all_feats.dtype == np.float32 and all_feats.shape[1] == 32 and np.isfinite(all_feats).all()


def test_learnable_but_not_trivial(generated):
    """A per-snippet linear probe beats chance by far but is far from perfect."""
    _, ann, feats = generated
    xs = {"training": [], "validation": [], "test": []}
    ys = {"training": [], "validation": [], "test": []}
    for vid, v in ann["database"].items():
        xs[v["subset"]].append(feats[vid])
        ys[v["subset"]].append(snippet_classes(len(feats[vid]), v["duration"], v["annotations"]))
    xt, yt = np.concatenate(xs["training"]), np.concatenate(ys["training"])
    xv, yv = np.concatenate(xs["validation"]), np.concatenate(ys["validation"])

    def ridge_predict(x, y, k, x_eval):
        a = np.c_[x, np.ones(len(x))]
        w = np.linalg.solve(a.T @ a + 0.1 * np.eye(a.shape[1]), a.T @ np.eye(k)[y])
        return (np.c_[x_eval, np.ones(len(x_eval))] @ w).argmax(1)

    fg_frac = (yv < 4).mean()
    assert 0.4 < fg_frac < 0.8  # ActivityNet training: 67 % of a video is action
    fg_acc = ((ridge_predict(xt, (yt < 4).astype(int), 2, xv) == 1) == (yv < 4)).mean()
    assert max(fg_frac, 1 - fg_frac) + 0.1 < fg_acc < 0.95
    cls_acc = (ridge_predict(xt[yt < 4], yt[yt < 4], 4, xv[yv < 4]) == yv[yv < 4]).mean()
    assert 0.5 < cls_acc < 0.92  # chance ~0.25


def _anet_statistics(path):
    """ActivityNet 'training' instance statistics as tags_tf.data.demo stores them."""
    db = json.load(open(path))["database"]
    counts, single, multi = [], [], []
    for v in db.values():
        if v["subset"] != "training":
            continue
        dur = v["duration"]
        lengths = [(min(dur, a["segment"][1]) - max(0.0, a["segment"][0])) / dur for a in v["annotations"]]
        lengths = [x for x in lengths if x > 0]
        if lengths:
            counts.append(len(lengths))
            (single if len(lengths) == 1 else multi).extend(lengths)
    share = np.bincount(np.minimum(counts, 6), minlength=7)[1:] / len(counts)
    q = np.linspace(0.0, 1.0, 11)
    return share, np.quantile(single, q), np.quantile(multi, q)


def test_activitynet_constants_match_the_annotations(shared):
    path = shared / "datasets" / "activitynet13" / "activity_net.v1-3.reconstructed.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    share, single, multi = _anet_statistics(path)
    np.testing.assert_allclose(demo.ANET_INSTANCE_COUNTS, share, atol=1e-3)
    np.testing.assert_allclose(demo.ANET_LENGTH_DECILES_SINGLE, single, atol=1e-3)
    np.testing.assert_allclose(demo.ANET_LENGTH_DECILES_MULTI, multi, atol=1e-3)


def test_instance_placement_follows_activitynet():
    """4,000 draws of the placement: counts and lengths follow the stored ActivityNet tables."""
    spec, rng = demo.DemoSpec(), np.random.default_rng(0)
    videos = [demo._place_instances(rng, spec) for _ in range(4000)]
    counts = np.array([len(v) for v in videos])
    share = np.bincount(counts, minlength=7)[1:] / len(counts)
    # Instances past 95 % coverage are dropped, so multi-instance videos lose a little.
    np.testing.assert_allclose(share, demo.ANET_INSTANCE_COUNTS, atol=0.03)
    single = np.array([e - s for v in videos if len(v) == 1 for s, e in v])
    np.testing.assert_allclose(np.median(single), demo.ANET_LENGTH_DECILES_SINGLE[5], atol=0.03)
    multi = np.array([e - s for v in videos if len(v) > 1 for s, e in v])
    assert abs(np.median(multi) - demo.ANET_LENGTH_DECILES_MULTI[5]) < 0.02
    for v in videos:
        assert all(0.0 <= s < e <= 1.0 for s, e in v)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(v, v[1:]))  # sorted, no overlap
        assert sum(e - s for s, e in v) <= spec.max_coverage + 1e-9
    coverage = np.mean([sum(e - s for s, e in v) for v in videos])
    assert 0.55 < coverage < 0.75  # ActivityNet training: 0.67


def test_deterministic_from_seed():
    spec = demo.DemoSpec(num_videos=4)
    a1, f1 = demo.generate_demo(spec, np.random.default_rng(7))
    a2, f2 = demo.generate_demo(spec, np.random.default_rng(7))
    a3, f3 = demo.generate_demo(spec, np.random.default_rng(8))
    assert a1 == a2 and all(np.array_equal(f1[k], f2[k]) for k in f1)
    assert a1 != a3


def test_ramp_weight_hand_values():
    centres = np.array([0.05, 0.15, 0.25, 0.35, 0.45])
    # start 0.2, end 0.3, ramp 0.1: up = clip((c-0.2)/0.1+0.5), down = clip((0.3-c)/0.1+0.5)
    np.testing.assert_allclose(demo._ramp_weight(centres, 0.2, 0.3, 0.1), [0, 0, 1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(demo._ramp_weight(centres, 0.2, 0.4, 0.2), [0, 0.25, 0.75, 0.75, 0.25], atol=1e-9)


def _fake_shard_writer(calls):
    """A ``demo.ShardWriter`` that records its calls and writes only a manifest."""

    def fake(ann_path, feat_dir, shard_dir, num_shards, feature_dim, class_names):
        calls.append({"num_shards": num_shards, "feature_dim": feature_dim, "class_names": list(class_names)})
        os.makedirs(shard_dir, exist_ok=True)
        manifest = {"class_names": list(class_names), "feature_dim": feature_dim,
                    "counts": {"written": 1, "rejected_total": 0}}
        with open(os.path.join(shard_dir, F.MANIFEST_NAME), "w") as f:
            json.dump(manifest, f)
        return manifest

    return fake


def test_prepare_demo_reuses_matching_shards(tmp_path):
    calls = []
    writer = _fake_shard_writer(calls)
    d = tmp_path / "demo"
    assert demo.prepare_demo(str(d), seed=1, num_videos=3, shard_writer=writer) == str(d / "shards")
    assert len(calls) == 1 and calls[0]["class_names"] == list(demo.CLASS_NAMES)
    assert len(list((d / "features").glob("*.npy"))) == 3
    demo.prepare_demo(str(d), seed=1, num_videos=3, shard_writer=writer)
    assert len(calls) == 1  # reused
    demo.prepare_demo(str(d), seed=2, num_videos=3, shard_writer=writer)
    assert len(calls) == 2  # other spec -> rebuilt
    demo.prepare_demo(str(d), seed=2, num_videos=3, force=True, shard_writer=writer)
    assert len(calls) == 3
    (d / demo.SPEC_NAME).unlink()  # e.g. an interrupted build
    demo.prepare_demo(str(d), seed=2, num_videos=3, shard_writer=writer)
    assert len(calls) == 4


def test_prepare_demo_without_a_shard_writer_reuses_but_never_builds(tmp_path):
    d = tmp_path / "demo"
    with pytest.raises(ValueError, match="shard_writer"):
        demo.prepare_demo(str(d), seed=1, num_videos=3)
    assert not d.exists()  # nothing written
    demo.prepare_demo(str(d), seed=1, num_videos=3, shard_writer=_fake_shard_writer([]))
    assert demo.prepare_demo(str(d), seed=1, num_videos=3) == str(d / "shards")  # reuse needs no writer
    with pytest.raises(ValueError, match="shard_writer"):
        demo.prepare_demo(str(d), seed=2, num_videos=3)
    assert (d / "shards" / F.MANIFEST_NAME).exists() and (d / demo.SPEC_NAME).exists()  # left as they were


def test_prepare_demo_through_beam_round_trips(tmp_path):
    from tags_tf.train import build_shards_locally

    shard_dir = demo.prepare_demo(str(tmp_path / "demo"), seed=3, num_videos=12, shard_writer=build_shards_locally)
    manifest = F.read_manifest(shard_dir)
    assert manifest.counts["written"] == 12 and manifest.counts["rejected_total"] == 0
    assert manifest.class_names == list(demo.CLASS_NAMES) and manifest.feature_dim == 32
    ann = load_annotations(str(tmp_path / "demo" / demo.ANNOTATIONS_NAME))
    class_id = {n: i for i, n in enumerate(demo.CLASS_NAMES)}
    seen = set()
    for path in tf.io.gfile.glob(os.path.join(shard_dir, "*.tfrecord*")):
        for rec in tf.data.TFRecordDataset(path).as_numpy_iterator():
            ex = F.example_to_numpy(rec)
            vid = ex[F.VIDEO_ID]
            seen.add(vid)
            v = ann.videos[vid]
            np.testing.assert_array_equal(ex[F.FEATURES], np.load(tmp_path / "demo" / "features" / f"{vid}.npy"))
            assert ex[F.SUBSET] == v.subset and ex[F.DURATION] == pytest.approx(v.duration, rel=1e-6)
            np.testing.assert_allclose(ex["segments"], [[i.start, i.end] for i in v.instances], rtol=1e-6)
            assert list(ex["labels"]) == [class_id[i.label] for i in v.instances]
    assert seen == set(ann.videos)
    # And the demo preset reads them.
    cfg = get_config("demo")
    x, y = next(iter(make_dataset(subset_pattern(shard_dir, "training"), cfg, training=True, batch_size=4)))
    assert x["features"].shape == (4, 64, 32) and y["mask_target_s2"].shape == (4, 64, 64)
