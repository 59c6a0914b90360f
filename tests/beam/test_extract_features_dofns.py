import numpy as np
import pytest

pytest.importorskip("av")

import apache_beam as beam  # noqa: E402

from beam import sinks  # noqa: E402
from beam.extract_features_dofns import (  # noqa: E402
    META,
    AssembleVideoFn,
    DecodeSnippetsFn,
    list_videos,
    plan_tasks,
    task,
)
from beam.video_decode import DecodeOptions  # noqa: E402
from tags_tf.data.annotations import AnnotationSet, Instance, VideoAnnotation  # noqa: E402
from tags_tf.testing import frame_index_of, garbage, truncate, write_video  # noqa: E402


def split(outputs):
    """DoFn outputs -> {"main": [...], tag: [...]}."""
    out = {"main": []}
    for o in outputs:
        if isinstance(o, beam.pvalue.TaggedOutput):
            out.setdefault(o.tag, []).append(o.value)
        else:
            out["main"].append(o)
    return out


def run_fn(fn, element):
    fn.setup()
    try:
        return split(fn.process(element))
    finally:
        fn.teardown()


# ------------------------------------------------------------------------------ plan


def _ann(videos, source="gt.json"):
    vids = {
        vid: VideoAnnotation(vid, subset, 3.0, None, tuple(Instance(s, e, lab) for s, e, lab in inst))
        for vid, (subset, inst) in videos.items()
    }
    names = tuple(sorted({i.label for v in vids.values() for i in v.instances}))
    return AnnotationSet(vids, names, source=source)


def test_list_videos_directory_file_and_glob(tmp_path):
    for name in ["b.mp4", "a.MKV", "notes.txt", "c.webm"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [p.split("/")[-1] for p in list_videos(str(tmp_path))] == ["a.MKV", "b.mp4", "c.webm"]
    assert list_videos(str(tmp_path / "b.mp4")) == [str(tmp_path / "b.mp4")]
    assert [p.split("/")[-1] for p in list_videos(str(tmp_path / "*.txt"))] == ["notes.txt"]
    assert list_videos(str(tmp_path / "none*.mp4")) == []


def test_plan_without_annotations():
    tasks = plan_tasks(["/v/b.mp4", "/v/a.mp4", "/w/a.mkv", "/v/x..y.mp4"], None, "inference")
    by_id = {t["video_id"]: t for t in tasks}
    assert [t["video_id"] for t in tasks] == ["a", "b", "x..y"]
    assert by_id["b"] == task("b", "/v/b.mp4", "inference")
    assert by_id["a"]["reject"][0] == "duplicate_video_id" and "/v/a.mp4, /w/a.mkv" in by_id["a"]["reject"][1]
    assert by_id["x..y"]["reject"][0] == "unsafe_video_id"


def test_plan_with_annotations_matches_v_prefix_and_accounts_for_everything():
    ann = _ann({
        "abc": ("training", [(0.5, 1.0, "jump")]),  # file v_abc.mp4 (ActivityNet naming)
        "v_def": ("validation", [(0.0, 2.0, "run"), (1.0, 9.0, "jump")]),  # file def.mp4
        "gone": ("training", []),  # no file
    })
    files = ["/v/v_abc.mp4", "/v/def.mp4", "/v/extra.mp4"]
    tasks = {t["video_id"]: t for t in plan_tasks(files, ann)}
    assert set(tasks) == {"abc", "v_def", "gone", "extra"}  # 3 annotated + 1 unannotated file = 4 inputs
    assert tasks["abc"] == task("abc", "/v/v_abc.mp4", "training", [(0.5, 1.0)], ["jump"])
    assert tasks["v_def"]["path"] == "/v/def.mp4"
    assert tasks["v_def"]["segments"] == [[0.0, 2.0], [1.0, 9.0]] and tasks["v_def"]["labels"] == ["run", "jump"]
    assert tasks["gone"]["reject"][0] == "missing_video" and tasks["gone"]["subset"] == "training"
    assert tasks["extra"]["reject"][0] == "not_in_annotations" and "gt.json" in tasks["extra"]["reject"][1]


# ---------------------------------------------------------------------------- decode


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    good = write_video(d / "good.mp4", num_frames=30, fps=10)
    fs = write_video(d / "fs.mp4", num_frames=30, fps=10, faststart=True)
    return {
        "good": good,
        "truncated": truncate(fs, d / "truncated.mp4", 0.5),
        "garbage": garbage(d / "garbage.mp4"),
        "short": write_video(d / "short.mp4", num_frames=6, fps=10),
    }


OPTS = DecodeOptions(snippet_frames=8, snippet_stride=8, height=16, width=16)


def test_decode_fn_emits_keyed_snippets_then_meta(videos):
    out = run_fn(DecodeSnippetsFn(OPTS), task("good", videos["good"], "inference"))
    assert [k for k, _ in out["main"]] == [("good", 0), ("good", 1), ("good", 2), ("good", 3)]
    assert all(clip.shape == (8, 16, 16, 3) and clip.dtype == np.uint8 for _, clip in out["main"])
    assert frame_index_of(out["main"][1][1][0]) == 8
    [(vid, meta)] = out[META]
    assert vid == "good" and meta["num_snippets"] == 4
    assert meta["duration"] == pytest.approx(3.0) and meta["fps"] == 10.0
    np.testing.assert_allclose(meta["snippet_times"], [0.4, 1.2, 2.0, 2.7], atol=1e-6)
    assert sinks.REJECTED not in out


@pytest.mark.parametrize(
    "name,reason",
    [("truncated", "truncated"), ("garbage", "unreadable_container"), ("short", "too_few_snippets")],
)
def test_decode_fn_rejects_bad_videos_without_meta(videos, name, reason):
    out = run_fn(DecodeSnippetsFn(OPTS, min_snippets=2), task(name, videos[name], "inference"))
    [rej] = out[sinks.REJECTED]
    assert rej["video_id"] == name and rej["reason"] == reason and rej["subset"] == "inference"
    assert videos[name] in rej["detail"]
    assert META not in out  # snippets a truncated file produced are orphans downstream


def test_decode_fn_forwards_planned_rejections():
    out = run_fn(DecodeSnippetsFn(OPTS), task("gone", None, "training", reject=("missing_video", "no file")))
    assert out == {"main": [], sinks.REJECTED: [sinks.rejection("gone", "missing_video", "no file", "training")]}


# -------------------------------------------------------------------------- assemble


def _meta(vid="v", t=3, duration=3.0, segments=(), labels=()):
    m = task(vid, f"/v/{vid}.mp4", "training", segments, labels)
    m.update(duration=duration, fps=10.0, snippet_times=[0.5 + i for i in range(t)], num_snippets=t)
    return m


def test_assemble_sorts_snippets_and_clips_segments():
    from tags_tf.data.features import example_to_numpy

    meta = _meta(segments=[(0.5, 1.5), (2.0, 4.0), (3.5, 5.0)], labels=["run", "jump", "run"])
    feats = [(2, np.full(4, 2.0)), (0, np.zeros(4)), (1, np.ones(4))]  # arrive out of order
    out = run_fn(AssembleVideoFn(["jump", "run"]), ("v", {META: [meta], "features": feats}))
    [(key, serialized)] = out["main"]
    assert key == ("training", "v")
    ex = example_to_numpy(serialized)
    np.testing.assert_array_equal(ex["features"], [[0] * 4, [1] * 4, [2] * 4])
    np.testing.assert_allclose(ex["snippet_times"], [0.5, 1.5, 2.5])
    # (2, 4) is clipped to (2, 3); (3.5, 5) lies past the 3 s video and is dropped.
    np.testing.assert_allclose(ex["segments"], [[0.5, 1.5], [2.0, 3.0]])
    assert ex["labels"].tolist() == [1, 0] and ex["label_names"] == ["run", "jump"]
    assert ex["duration"] == pytest.approx(3.0)
    (summary,) = out[sinks.SUMMARY]
    assert [(e["action"], e["label"], e["segment"]) for e in summary["segment_log"]] == [
        ("clipped", "jump", [2.0, 4.0]), ("dropped", "run", [3.5, 5.0])]  # each change named
    assert summary == sinks.summary("v", "training", 3, 4, 2, clipped_segments=1, dropped_segments=1, duration=3.0,
                                    segments=[[0.5, 1.5], [2.0, 3.0]], segment_log=summary["segment_log"])


def test_assemble_without_annotations_has_no_segments():
    from tags_tf.data.features import example_to_numpy

    meta = _meta(t=2)
    meta["subset"] = "inference"
    out = run_fn(AssembleVideoFn(), ("v", {META: [meta], "features": [(0, np.zeros(3)), (1, np.ones(3))]}))
    ex = example_to_numpy(out["main"][0][1])
    assert ex["segments"].shape == (0, 2) and ex["subset"] == "inference"


@pytest.mark.parametrize(
    "feats,reason",
    [
        ([(0, np.zeros(4)), (2, np.zeros(4))], "missing_snippets"),
        ([(0, np.zeros(4)), (1, np.array([0, np.nan, 0, 0])), (2, np.zeros(4))], "non_finite_values"),
    ],
)
def test_assemble_rejects(feats, reason):
    out = run_fn(AssembleVideoFn(), ("v", {META: [_meta()], "features": feats}))
    assert out["main"] == [] and [r["reason"] for r in out[sinks.REJECTED]] == [reason]


def test_assemble_drops_orphan_snippets_of_a_failed_video():
    out = run_fn(AssembleVideoFn(), ("v", {META: [], "features": [(0, np.zeros(4))]}))
    assert out == {"main": []}


def test_plan_with_a_subset_filter_rejects_files_of_other_subsets():
    ann = _ann({"a": ("training", [(0.0, 1.0, "run")]), "b": ("validation", [])}).subset("training")
    tasks = {t["video_id"]: t for t in plan_tasks(["/v/a.mp4", "/v/b.mp4"], ann)}
    assert tasks["a"]["reject"] is None
    assert tasks["b"]["reject"][0] == "not_in_annotations"
    assert "subsets kept: training" in tasks["b"]["reject"][1]
