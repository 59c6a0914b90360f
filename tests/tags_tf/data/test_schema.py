"""tags_tf/data/schema.py: the names shared by beam/, tags_tf.data and serving/, TensorFlow-free."""

import json
import re
import subprocess
import sys

import pytest

from tags_tf.data import schema
from tests.conftest import REPO

RECORD_KEYS = ("VIDEO_ID", "SUBSET", "DURATION", "FEATURE_DIM", "NUM_SNIPPETS", "SNIPPET_TIMES",
               "SEG_START", "SEG_END", "SEG_LABEL", "SEG_LABEL_NAME", "FEATURES")
FILE_NAMES = ("MANIFEST_NAME", "DEAD_LETTER_NAME", "SEGMENT_LOG_NAME")
REASONS = ("BAD_ANNOTATION", "DUPLICATE_VIDEO_ID")


def test_record_keys_and_file_names_are_distinct():
    keys = [getattr(schema, k) for k in RECORD_KEYS]
    assert len(set(keys)) == len(keys)
    names = [getattr(schema, k) for k in FILE_NAMES]
    assert len(set(names)) == len(names)
    assert not any(n.endswith(schema.SHARD_SUFFIX) for n in names)  # never taken for a shard
    reasons = [getattr(schema, k) for k in REASONS]
    assert len(set(reasons)) == len(reasons)


def test_the_annotation_reader_gives_the_dead_letter_reasons_of_the_schema():
    from tags_tf.data import annotation_files as annotations

    for name in REASONS:
        assert getattr(annotations, name) is getattr(schema, name), name


def test_the_shard_writers_and_readers_share_the_definitions():
    features = pytest.importorskip("tags_tf.data.features")
    for name in (*RECORD_KEYS, *FILE_NAMES, "SHARD_SUFFIX"):
        assert getattr(features, name) is getattr(schema, name), name
    assert features.shard_prefix is schema.shard_prefix


@pytest.mark.parametrize("video_id, canonical", [
    ("abc", "abc"),
    ("v_abc", "abc"),
    ("v_v_abc", "v_abc"),  # one prefix only
    ("v_", "v_"),  # the prefix alone is an id of its own
    ("vabc", "vabc"),
    ("V_abc", "V_abc"),  # case matters
    ("", ""),
])
def test_canonical_video_id(video_id, canonical):
    assert schema.canonical_video_id(video_id) == canonical


@pytest.mark.parametrize("video_id, alternate", [
    ("abc", "v_abc"),
    ("v_abc", "abc"),
    ("v_v_abc", "v_abc"),
    ("v_", "v_v_"),
])
def test_alternate_video_id(video_id, alternate):
    assert schema.alternate_video_id(video_id) == alternate


@pytest.mark.parametrize("video_id, variants", [
    ("abc", ["abc", "v_abc"]),
    ("v_abc", ["v_abc", "v_v_abc", "abc"]),
    ("v_", ["v_", "v_v_"]),
])
def test_video_id_variants(video_id, variants):
    assert schema.video_id_variants(video_id) == variants


def test_importing_the_schema_imports_neither_tensorflow_nor_numpy():
    code = (
        "import sys\n"
        "import tags_tf.data.schema\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'numpy'})\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ manifest

# A manifest.json as beam.build_shards writes it (format_version 1), extra keys and all.
WRITTEN = {
    "format_version": 1,
    "created_by": "beam.build_shards",
    "schema": "tags_tf.data.features (tf.train.SequenceExample per video)",
    "class_names": ["jump", "run"],
    "class_ids": {"jump": 0, "run": 1},
    "num_classes": 2,
    "feature_dim": 4,
    "compression": "GZIP",
    "num_shards": {"training": 2, "validation": 1},
    "snippet_times": "uniform over the duration",
    "segment_policy": "clip_to_duration_drop_empty",
    "unannotated_features": 1,
    "sources": {"annotations": "a.json", "annotation_format": "activitynet", "video_info": None,
                "features": ["f/"], "class_map": None},
    "pipeline_options": {"runner": "DirectRunner"},
    "subsets": {
        "training": {"videos": 3, "segments": 4, "rejected": 1,
                     "files": ["training-00000-of-00002.tfrecord.gz", "training-00001-of-00002.tfrecord.gz"]},
        "validation": {"videos": 2, "segments": 2, "rejected": 0, "files": ["validation-00000-of-00001.tfrecord.gz"]},
    },
    "statistics": {"training": {"videos": 3, "snippets_per_video": {"p10": 4.0, "p50": 5.0, "p90": 6.0}}},
    "num_snippets": {"min": 4, "max": 6},
    "counts": {"input": 6, "written": 5, "rejected": {"empty_file": 1}, "rejected_total": 1,
               "clipped_segments": 0, "dropped_segments": 0},
}


def test_a_manifest_as_written_reads_into_fields_and_round_trips_exactly():
    m = schema.Manifest.from_dict(WRITTEN)
    assert m.class_names == ["jump", "run"] and m.feature_dim == 4 and m.compression == "GZIP"
    assert m.subset_videos("training") == 3 and m.counts["written"] == 5
    assert m.extra == {"unannotated_features": 1}  # a job's own key is kept, not dropped
    assert m.to_dict() == WRITTEN
    assert schema.Manifest.from_json(m.to_json()) == m
    assert m.to_json() == json.dumps(WRITTEN, indent=2, sort_keys=True) + "\n"  # the bytes the jobs wrote


def test_an_older_or_hand_made_manifest_reads_and_round_trips_without_gaining_keys():
    old = {"class_names": ["a"], "feature_dim": 8, "subsets": {"Training": {"videos": 2}}, "unknown": [1]}
    m = schema.Manifest.from_dict(old)
    assert m.statistics is None and m.counts is None and m.extra == {"unknown": [1]}
    assert m.to_dict() == old
    assert m.find_subset("training") == "Training" and m.find_subset("test") is None
    assert m.subset_videos("Training") == 2 and m.subset_videos("other") is None
    assert schema.Manifest.from_dict({"class_names": [], "feature_dim": None}).subset_names() == []


def test_reading_does_not_alias_the_caller_s_dict():
    data = json.loads(json.dumps(WRITTEN))
    m = schema.Manifest.from_dict(data)
    data["subsets"]["training"]["videos"] = 99
    assert m.subset_videos("training") == 3
    m.to_dict()["counts"]["written"] = 0
    assert m.counts["written"] == 5


@pytest.mark.parametrize("change, message", [
    ({"feature_dim": schema.Manifest}, "manifest.json: field 'feature_dim' is missing (expected an integer or null)"),
    ({"class_names": schema.Manifest}, "manifest.json: field 'class_names' is missing (expected a list of strings)"),
    ({"feature_dim": "400"}, "manifest.json: field 'feature_dim' is a string, expected an integer or null"),
    ({"feature_dim": True}, "manifest.json: field 'feature_dim' is a boolean, expected an integer or null"),
    ({"class_names": ["a", 1]}, "manifest.json: field 'class_names' is a list, expected a list of strings"),
    ({"subsets": {"training": 3}}, "manifest.json: field 'subsets' is an object, expected an object of objects"),
    ({"counts": None}, "manifest.json: field 'counts' is null, expected an object"),
])
def test_a_missing_or_mistyped_field_is_a_one_line_error_naming_the_field(change, message):
    data = {k: v for k, v in WRITTEN.items() if change.get(k) is not schema.Manifest}
    data.update({k: v for k, v in change.items() if v is not schema.Manifest})
    with pytest.raises(schema.ManifestFormatError) as e:
        schema.Manifest.from_dict(data)
    assert str(e.value) == message


def test_read_manifest_names_the_file_in_its_errors(tmp_path):
    (tmp_path / schema.MANIFEST_NAME).write_text(json.dumps(WRITTEN))
    assert schema.read_manifest(str(tmp_path)).to_dict() == WRITTEN
    path = tmp_path / schema.MANIFEST_NAME
    for text, message in (
        ('{"class_names": ["a"]}', f"{path}: field 'feature_dim' is missing"),
        ("[1, 2]", f"{path}: expected a JSON object, got a list"),
        ('{"class_names": ', f"{path}: not valid JSON"),
    ):
        path.write_text(text)
        with pytest.raises(schema.ManifestFormatError, match="^" + re.escape(message)) as e:
            schema.read_manifest(str(tmp_path))
        assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError):
        schema.read_manifest(str(tmp_path / "nothing"))


def test_extra_may_not_repeat_a_field():
    with pytest.raises(ValueError, match="feature_dim"):
        schema.Manifest(class_names=[], feature_dim=None, extra={"feature_dim": 3})
