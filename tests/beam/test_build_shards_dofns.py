"""DoFns of beam.build_shards_dofns, called directly (setup/process)."""

import os

import numpy as np
import pytest
from apache_beam.pvalue import TaggedOutput

from beam import build_shards_dofns, shard_io, sinks
from beam import feature_readers as fr
from tags_tf.data.annotations import Instance, VideoAnnotation


def _video(vid="vid", subset="training", duration=10.0, instances=((1.0, 4.0, "jump"),)):
    return VideoAnnotation(vid, subset, duration, None, tuple(Instance(s, e, l) for s, e, l in instances))


def _run(fn, element, **side):
    """Runs a DoFn on one element: (main outputs, {tag: [values]})."""
    if hasattr(fn, "setup"):
        fn.setup()
    try:
        outs = list(fn.process(element, **side))
    finally:
        if hasattr(fn, "teardown"):
            fn.teardown()
    main = [o for o in outs if not isinstance(o, TaggedOutput)]
    tagged = {}
    for o in outs:
        if isinstance(o, TaggedOutput):
            tagged.setdefault(o.tag, []).append(o.value)
    return main, tagged


def _rejected(tagged):
    return [(r["video_id"], r["reason"]) for r in tagged.get(sinks.REJECTED, [])]


# ------------------------------------------------------------------------- plain helpers


@pytest.mark.parametrize("vid", ["../x", "a/b", "a\\b", "..", "", "a\nb", "x..y"])
def test_unsafe_ids(vid):
    assert build_shards_dofns.unsafe_id_problem(vid) is not None


@pytest.mark.parametrize("vid", ["4Lu8ECLHvK4", "v_-x_9", "video_test_0000004", "a.b"])
def test_safe_ids(vid):
    assert build_shards_dofns.unsafe_id_problem(vid) is None


def test_check_features_order_and_cast():
    reason, _ = build_shards_dofns.check_features("v", np.ones((1, 3)), expected_dim=4)
    assert reason == build_shards_dofns.WRONG_FEATURE_DIM  # dim is checked before T
    reason, out = build_shards_dofns.check_features("v", np.array([[1e300, 0.0], [0.0, 0.0]]), None)
    assert reason == build_shards_dofns.NON_FINITE_VALUES  # overflows float32
    reason, out = build_shards_dofns.check_features("v", np.ones((2, 3), np.float64), 3)
    assert reason is None and out.dtype == np.float32


# ----------------------------------------------------------------------------------- DoFns


def test_dedupe_passes_unique_and_rejects_prefix_twins():
    v = _video("abc")
    main, tagged = _run(build_shards_dofns.DedupeFn(), ("abc", [v]))
    assert main == [v] and not tagged
    main, tagged = _run(build_shards_dofns.DedupeFn(), ("abc", [_video("v_abc"), _video("abc")]))
    assert main == []
    assert _rejected(tagged) == [("abc", "duplicate_video_id"), ("v_abc", "duplicate_video_id")]


@pytest.fixture
def feat_dir(tmp_path):
    np.save(tmp_path / "good.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "abc.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "v_abc.npy", np.ones((4, 3), np.float32))
    (tmp_path / "empty.npy").write_bytes(b"")
    return tmp_path


def _resolve(feat_dir, *streams):
    specs = [str(feat_dir)] + [str(s) for s in streams]
    return build_shards_dofns.ResolveFeaturesFn([fr.index_features(s) for s in specs], specs)


def test_resolve_finds_file(feat_dir):
    main, tagged = _run(_resolve(feat_dir), _video("v_good"))
    assert not tagged
    ((video, refs),) = main
    assert video.video_id == "v_good" and refs[0].path.endswith("good.npy")


def test_resolve_missing_feature_file(feat_dir):
    main, tagged = _run(_resolve(feat_dir), _video("nothere"))
    assert main == [] and _rejected(tagged) == [("nothere", "missing_feature_file")]


def test_resolve_duplicate_feature_files(feat_dir):
    main, tagged = _run(_resolve(feat_dir), _video("abc"))
    assert main == [] and _rejected(tagged) == [("abc", "duplicate_video_id")]
    assert "abc.npy" in tagged[sinks.REJECTED][0]["detail"]


@pytest.mark.parametrize("vid", ["../good", "x/good", "..\\good"])
def test_resolve_unsafe_video_id(feat_dir, vid):
    main, tagged = _run(_resolve(feat_dir), _video(vid))
    assert main == [] and _rejected(tagged) == [(vid, "unsafe_video_id")]


def test_resolve_two_streams_needs_both(feat_dir, tmp_path_factory):
    flow = tmp_path_factory.mktemp("flow")
    np.save(flow / "good.npy", np.zeros((4, 2), np.float32))
    main, _ = _run(_resolve(feat_dir, flow), _video("good"))
    assert len(main[0][1]) == 2
    np.save(feat_dir / "rgb_only.npy", np.ones((4, 3), np.float32))
    main, tagged = _run(_resolve(feat_dir, flow), _video("rgb_only"))
    assert main == [] and _rejected(tagged) == [("rgb_only", "missing_feature_file")]
    assert str(flow) in tagged[sinks.REJECTED][0]["detail"]


def _read(video, refs):
    with fr.FeatureReader() as reader:
        return build_shards_dofns.read_video_features(reader, video, refs)


def test_read_features_concat_two_streams(tmp_path):
    np.save(tmp_path / "rgb.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "flow.npy", np.full((4, 2), 2.0, np.float32))
    np.save(tmp_path / "flow_short.npy", np.full((3, 2), 2.0, np.float32))
    refs = (fr.FeatureRef("npy", str(tmp_path / "rgb.npy")), fr.FeatureRef("npy", str(tmp_path / "flow.npy")))
    feats = _read(_video(), refs)
    np.testing.assert_array_equal(feats, np.concatenate([np.ones((4, 3)), np.full((4, 2), 2.0)], axis=1))
    short = (refs[0], fr.FeatureRef("npy", str(tmp_path / "flow_short.npy")))
    with pytest.raises(build_shards_dofns.Rejected) as err:
        _read(_video(), short)
    assert err.value.reason == "stream_length_mismatch"


def test_read_features_empty_file(feat_dir):
    with pytest.raises(build_shards_dofns.Rejected) as err:
        _read(_video("empty"), (fr.FeatureRef("npy", str(feat_dir / "empty.npy")),))
    assert err.value.reason == "empty_file"


def test_read_features_file_removed_after_listing(tmp_path):
    with pytest.raises(build_shards_dofns.Rejected) as err:
        _read(_video("gone"), (fr.FeatureRef("npy", str(tmp_path / "gone.npy")),))
    assert err.value.reason == "missing_feature_file"


def test_peek_dim_sums_streams_and_majority_vote(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones((4, 5), np.float32))
    refs = (fr.FeatureRef("npy", str(tmp_path / "a.npy")), fr.FeatureRef("npy", str(tmp_path / "b.npy")))
    main, _ = _run(build_shards_dofns.PeekDimFn(), (_video(), refs))
    assert main == [8]
    combine = build_shards_dofns.MajorityDimFn()
    acc = combine.create_accumulator()
    for d in (400, 2048, 400, 7):
        acc = combine.add_input(acc, d)
    assert combine.extract_output(acc) == 400
    tie = combine.merge_accumulators([combine.add_input({}, 9), combine.add_input({}, 5)])
    assert combine.extract_output(tie) == 5  # tie -> smaller dim
    assert combine.extract_output(combine.create_accumulator()) is None


CLASSES = {"jump": 0, "run": 1}


def _validate(video, feats, expected_dim=3, reject_bad_segments=False):
    return build_shards_dofns.validate_video(video, feats, CLASSES, expected_dim, reject_bad_segments)


def _reason(video, feats, **kw):
    with pytest.raises(build_shards_dofns.Rejected) as err:
        _validate(video, feats, **kw)
    return err.value.reason


def test_validate_good_video():
    v = _video(instances=((1.0, 4.0, "run"), (2.0, 3.0, "jump")))
    out = _validate(v, np.arange(12.0).reshape(4, 3))
    assert out.features.dtype == np.float32 and out.features.shape == (4, 3)
    assert out.labels == (1, 0) and out.label_names == ("run", "jump")
    np.testing.assert_array_equal(out.segments, [[1.0, 4.0], [2.0, 3.0]])


def test_validate_wrong_feature_dim():
    assert _reason(_video(), np.ones((4, 5)), expected_dim=3) == "wrong_feature_dim"
    assert _validate(_video(), np.ones((4, 5)), expected_dim=None).features.shape == (4, 5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_validate_non_finite(bad):
    feats = np.ones((4, 3))
    feats[2, 1] = bad
    with pytest.raises(build_shards_dofns.Rejected) as err:
        _validate(_video(), feats)
    assert err.value.reason == "non_finite_values" and "[2]" in err.value.detail


def test_validate_too_few_snippets():
    assert _reason(_video(), np.ones((1, 3))) == "too_few_snippets"


def test_validate_segment_end_before_start_is_dropped_and_counted():
    v = _video(instances=((4.0, 4.0, "jump"), (1.0, 2.0, "run")))
    out = _validate(v, np.ones((4, 3)))
    assert out.dropped == 1 and out.labels == (1,)
    assert _reason(v, np.ones((4, 3)), reject_bad_segments=True) == "bad_segment"


def test_validate_segment_past_duration_is_clipped_not_rejected():
    out = _validate(_video(duration=10.0, instances=((6.0, 12.0, "jump"),)), np.ones((4, 3)))
    assert out.clipped == 1
    np.testing.assert_array_equal(out.segments, [[6.0, 10.0]])


def test_validate_unknown_label():
    with pytest.raises(build_shards_dofns.Rejected) as err:
        _validate(_video(instances=((1.0, 2.0, "fly"),)), np.ones((4, 3)))
    assert err.value.reason == "unknown_label" and "fly" in err.value.detail


@pytest.mark.parametrize("duration", [None, 0.0, -3.0, float("nan")])
def test_validate_bad_duration(duration):
    assert _reason(_video(duration=duration), np.ones((4, 3))) == "bad_duration"


def test_build_shard_fn_writes_one_shard_and_rejects(tmp_path):
    import tensorflow as tf

    from tags_tf.data import features

    feats = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.save(tmp_path / "a.npy", feats)
    np.save(tmp_path / "b.npy", np.ones((4, 5), np.float32))  # wrong dim
    ref = lambda n: (fr.FeatureRef("npy", str(tmp_path / n)),)  # noqa: E731
    items = [
        (_video("b", "validation", 8.0), ref("b.npy")),
        None,  # marker
        (_video("a", "validation", 8.0, ((1.0, 3.5, "run"), (6.0, 9.0, "jump"))), ref("a.npy")),
    ]
    out = tmp_path / "out"
    fn = build_shards_dofns.BuildShardFn(str(out), {"validation": 3}, "GZIP", CLASSES, feature_dim=2)
    main, tagged = _run(fn, (("validation", 1), items))
    assert main == [str(out / "validation-00001-of-00003.tfrecord.gz")]
    assert _rejected(tagged) == [("b", "wrong_feature_dim")]
    (summary,) = tagged[sinks.SUMMARY]
    (clip,) = summary["segment_log"]  # the clipped segment, named
    assert (clip["video_id"], clip["action"], clip["segment"], clip["written"]) == ("a", "clipped", [6.0, 9.0], [6.0, 8.0])
    assert summary == sinks.summary("a", "validation", 4, 2, 2, clipped_segments=1, duration=8.0,
                                    segments=[[1.0, 3.5], [6.0, 8.0]], segment_log=[clip])
    assert sorted(os.listdir(out / shard_io.TMP_DIR)) == []  # the temp file was renamed
    (data,) = list(tf.data.TFRecordDataset(main, compression_type="GZIP").as_numpy_iterator())
    ex = features.example_to_numpy(data)
    np.testing.assert_array_equal(ex[features.FEATURES], feats)
    np.testing.assert_allclose(ex["segments"], [[1.0, 3.5], [6.0, 8.0]])
    np.testing.assert_array_equal(ex["labels"], [1, 0])
    np.testing.assert_allclose(ex[features.SNIPPET_TIMES], [1.0, 3.0, 5.0, 7.0])  # uniform centres


def test_build_shard_fn_empty_shard(tmp_path):
    fn = build_shards_dofns.BuildShardFn(str(tmp_path), {"training": 1}, "", CLASSES)
    main, tagged = _run(fn, (("training", 0), [None]))
    assert main == [str(tmp_path / "training-00000-of-00001.tfrecord")] and not tagged
    assert (tmp_path / "training-00000-of-00001.tfrecord").read_bytes() == b""


@pytest.mark.parametrize("shape", [(5, 3), (2, 300), (1, 1), (3, 0)])
def test_make_example_wire_bytes_match_the_proto_api(shape):
    # build_shards' speed rests on features._float_feature_list_bytes (wire bytes parsed
    # in one go); it must give exactly the message the proto API builds row by row.
    import tensorflow as tf

    from tags_tf.data import features

    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ref = tf.train.SequenceExample()
    for row in x:
        ref.feature_lists.feature_list[features.FEATURES].feature.add().float_list.value.extend(row.tolist())
    got = features.make_example("v", "s", 1.0, x)
    want = ref.feature_lists.feature_list[features.FEATURES].SerializeToString()
    assert got.feature_lists.feature_list[features.FEATURES].SerializeToString() == want
