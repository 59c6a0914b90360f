"""beam/manifest.py: the manifest both shard jobs write (statistics, counts, the whole
tags_tf.data.schema.Manifest), called directly."""

import json

import pytest

from beam import sinks
from beam.manifest import ManifestError, SummaryStatsFn, base_manifest, build_manifest, format_summary
from tags_tf.data.schema import Manifest


def _stats(summaries):
    fn = SummaryStatsFn()
    halves = [fn.create_accumulator(), fn.create_accumulator()]
    for i, s in enumerate(summaries):  # exercise merge_accumulators too
        halves[i % 2] = fn.add_input(halves[i % 2], s)
    return fn.extract_output(fn.merge_accumulators(halves))


SUMMARIES = [
    sinks.summary("a", "training", 10, 4, 2, clipped_segments=1, duration=20.0, segments=[[0.0, 5.0], [10.0, 20.0]]),
    sinks.summary("b", "training", 12, 4, 1, dropped_segments=1, duration=10.0, segments=[[2.0, 4.0]]),
    sinks.summary("c", "validation", 5, 4, 0, duration=5.0, segments=[]),
]
REJECTIONS = [sinks.rejection("d", "empty_file", "x", "training"), sinks.rejection("e", "empty_file", "y")]
FILES = ["/o/training-00000-of-00001.tfrecord", "/o/validation-00000-of-00001.tfrecord"]


def test_build_manifest_counts_add_up():
    base = Manifest(class_names=[], feature_dim=None, num_shards={"training": 1, "validation": 1})
    m = build_manifest(base, _stats(SUMMARIES), REJECTIONS, FILES, num_inputs=5, output_dir="/o")
    assert m.feature_dim == 4
    assert m.counts == {
        "input": 5, "written": 3, "rejected": {"empty_file": 2}, "rejected_total": 2,
        "clipped_segments": 1, "dropped_segments": 1,
    }
    assert m.subsets["training"] == {
        "videos": 2, "segments": 3, "rejected": 1, "files": ["training-00000-of-00001.tfrecord"],
    }
    assert m.num_snippets == {"min": 5, "max": 12}
    # training: T [10, 12], durations [20, 10], counts [2, 1], fractions 5/20, 10/20, 2/10
    # = [0.25, 0.5, 0.2]. Linear quantiles: T p10 = 10.2, p50 = 11, p90 = 11.8; duration
    # p10 = 11, p50 = 15, p90 = 19; counts mean 1.5, p10 1.1, p50 1.5, p90 1.9; fractions
    # sorted [0.2, 0.25, 0.5]: p10 = 0.21, p50 = 0.25, p90 = 0.25 + 0.8 * 0.25 = 0.45.
    assert m.statistics["training"] == {
        "videos": 2,
        "snippets_per_video": {"p10": 10.2, "p50": 11.0, "p90": 11.8},
        "duration_s": {"p10": 11.0, "p50": 15.0, "p90": 19.0},
        "instances_per_video": {"mean": 1.5, "p10": 1.1, "p50": 1.5, "p90": 1.9},
        "instance_length_fraction": {"p10": 0.21, "p50": 0.25, "p90": 0.45},
    }
    # validation: one video without instances.
    assert m.statistics["validation"] == {
        "videos": 1, "snippets_per_video": {"p10": 5.0, "p50": 5.0, "p90": 5.0},
        "duration_s": {"p10": 5.0, "p50": 5.0, "p90": 5.0},
        "instances_per_video": {"mean": 0.0, "p10": 0.0, "p50": 0.0, "p90": 0.0}, "instance_length_fraction": {},
    }
    assert Manifest.from_json(m.to_json()) == m
    with pytest.raises(ManifestError, match="3 written \\+ 2 rejected != 6"):
        build_manifest(base, _stats(SUMMARIES), REJECTIONS, FILES, num_inputs=6, output_dir="/o")


def test_a_job_writes_the_keys_it_wrote_before_the_manifest_class():
    """The manifest.json of build_shards, key for key as the dict-building writer made it."""
    base = base_manifest(
        "beam.build_shards", ["jump", "run"], None, "GZIP", {"training": 1, "validation": 1},
        snippet_times="uniform over the duration", segment_policy="clip_to_duration_drop_empty",
        sources={"annotations": "a.json", "video_info": None}, pipeline_options={"runner": "DirectRunner"},
        unannotated_features=2,
    )
    m = build_manifest(base, _stats(SUMMARIES), REJECTIONS, FILES, num_inputs=5, output_dir="/o")
    written = json.loads(m.to_json())
    assert sorted(written) == sorted([
        "format_version", "created_by", "schema", "class_names", "class_ids", "num_classes", "feature_dim",
        "compression", "num_shards", "snippet_times", "segment_policy", "unannotated_features", "sources",
        "pipeline_options", "subsets", "statistics", "num_snippets", "counts",
    ])
    assert (written["format_version"], written["class_ids"], written["num_classes"]) == (1, {"jump": 0, "run": 1}, 2)
    assert written["schema"] == "tags_tf.data.features (tf.train.SequenceExample per video)"
    assert Manifest.from_dict(written).to_dict() == written


def test_format_summary_lists_subsets_counts_and_counters():
    base = Manifest(class_names=[], feature_dim=None, num_shards={"training": 1, "validation": 1})
    m = build_manifest(base, _stats(SUMMARIES), REJECTIONS, FILES, num_inputs=5, output_dir="/o")
    text = format_summary(Manifest.from_dict({**m.to_dict(), "beam_counters": {"read": 3}}))
    assert text.splitlines()[1].split() == ["training", "2", "3", "1", "1"]
    assert "input 5  written 3  rejected 2" in text and "feature_dim 4" in text
    assert "rejected empty_file: 2" in text and text.endswith("beam counters: read=3")
