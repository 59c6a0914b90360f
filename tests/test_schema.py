"""tags_tf/schema.py: the names shared by beam/, tags_tf.data and serving/, TensorFlow-free."""

import subprocess
import sys

import pytest

from tags_tf import schema
from tests.conftest import REPO

RECORD_KEYS = ("VIDEO_ID", "SUBSET", "DURATION", "FEATURE_DIM", "NUM_SNIPPETS", "SNIPPET_TIMES",
               "SEG_START", "SEG_END", "SEG_LABEL", "SEG_LABEL_NAME", "FEATURES")
FILE_NAMES = ("MANIFEST_NAME", "DEAD_LETTER_NAME")
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
    from tags_tf.data import annotations

    for name in REASONS:
        assert getattr(annotations, name) is getattr(schema, name), name


def test_the_shard_writers_and_readers_share_the_definitions():
    features = pytest.importorskip("tags_tf.features")
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
        "import tags_tf.schema\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'numpy'})\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
