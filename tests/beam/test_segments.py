"""beam/segments.py: the segment policy and its log, by hand."""

import numpy as np

from beam.segments import CLIPPED, DROPPED, EMPTY_AFTER_CLIP, MALFORMED, OUTSIDE_VIDEO, clean_segments
from tags_tf.data.annotations import Instance


def test_clean_segments_clips_and_drops():
    inst = [
        Instance(1.0, 3.0, "a"),  # kept as is
        Instance(8.0, 12.5, "b"),  # past the duration -> clipped to 10
        Instance(-1.0, 2.0, "c"),  # before 0 -> clipped
        Instance(5.0, 5.0, "d"),  # zero length -> dropped
        Instance(11.0, 13.0, "e"),  # wholly past the end -> empty after clip -> dropped
    ]
    out = clean_segments(inst, 10.0)
    np.testing.assert_array_equal(out.segments, [[1.0, 3.0], [8.0, 10.0], [0.0, 2.0]])
    assert out.labels == ("a", "b", "c")
    assert (out.clipped, out.dropped) == (2, 2)


def test_every_change_is_named_with_its_reason():
    inst = [Instance(1.0, 3.0, "a"), Instance(8.0, 12.5, "b"), Instance(6.0, 4.0, "d")]
    out = clean_segments(inst, 10.0, "v_1", "training", unreadable=["video 'v_1' annotation 3: 'segment' missing"])
    assert [(e["action"], e["reason"]) for e in out.log] == [
        (DROPPED, MALFORMED), (CLIPPED, OUTSIDE_VIDEO), (DROPPED, EMPTY_AFTER_CLIP)]
    assert all(e["video_id"] == "v_1" and e["subset"] == "training" for e in out.log)
    clipped, reversed_ = out.log[1], out.log[2]
    assert (clipped["label"], clipped["segment"], clipped["written"]) == ("b", [8.0, 12.5], [8.0, 10.0])
    assert (reversed_["label"], reversed_["segment"]) == ("d", [6.0, 4.0]) and "end <= start" in reversed_["detail"]
    assert (out.clipped, out.dropped) == (1, 2) and out.labels == ("a", "b")
