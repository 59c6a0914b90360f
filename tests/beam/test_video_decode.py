import numpy as np
import pytest

pytest.importorskip("av")

from beam.video_decode import (  # noqa: E402
    DecodeOptions,
    VideoDecodeError,
    expected_num_snippets,
    iter_snippets,
    probe,
    resampled_num_frames,
)
from tags_tf.testing import frame_colour, frame_index_of, garbage, truncate, write_video  # noqa: E402


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """30 frames at 10 fps, 64 x 48: 3.0 s."""
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", num_frames=30, fps=10)


@pytest.fixture(scope="module")
def faststart(tmp_path_factory):
    """Same video with the index (moov) first: a cut copy still opens."""
    return write_video(tmp_path_factory.mktemp("v") / "fs.mp4", num_frames=30, fps=10, faststart=True)


def test_probe_reads_the_container(video):
    info = probe(video)
    assert (info.num_frames, info.fps, info.width, info.height) == (30, 10.0, 64, 48)
    assert info.duration == pytest.approx(3.0)


def test_snippets_native_rate_pad_last(video):
    snippets = list(iter_snippets(video, DecodeOptions(snippet_frames=8, snippet_stride=8)))
    # 30 frames: windows 0-7, 8-15, 16-23 and a padded one with the 6 frames 24-29.
    assert [s.index for s in snippets] == [0, 1, 2, 3]
    assert [s.num_real_frames for s in snippets] == [8, 8, 8, 6]
    # centre = (t_first + t_last + 1/fps) / 2: (0 + 0.7 + 0.1)/2, ..., (2.4 + 2.9 + 0.1)/2
    np.testing.assert_allclose([s.center_time for s in snippets], [0.4, 1.2, 2.0, 2.7], atol=1e-6)
    assert snippets[0].frames.shape == (8, 48, 64, 3) and snippets[0].frames.dtype == np.uint8
    assert [frame_index_of(f) for f in snippets[1].frames] == list(range(8, 16))
    last = snippets[3].frames
    assert [frame_index_of(f) for f in last] == [24, 25, 26, 27, 28, 29, 29, 29]  # repeats the last frame
    np.testing.assert_array_equal(last[6], last[5])
    np.testing.assert_allclose(np.median(last[0], axis=(0, 1)), frame_colour(24), atol=4)


def test_drop_last_keeps_full_windows_only(video):
    snippets = list(iter_snippets(video, DecodeOptions(snippet_frames=8, snippet_stride=8, pad_last=False)))
    assert len(snippets) == 3 == expected_num_snippets(30, 8, 8, pad_last=False)


def test_overlapping_and_sparse_windows(video):
    overlap = list(iter_snippets(video, DecodeOptions(snippet_frames=8, snippet_stride=4)))
    # starts 0, 4, ..., 20 (6 full windows) + a padded one from 24 (frames 28, 29 uncovered before)
    assert len(overlap) == 7 == expected_num_snippets(30, 8, 4)
    assert [frame_index_of(s.frames[0]) for s in overlap] == [0, 4, 8, 12, 16, 20, 24]
    np.testing.assert_allclose(overlap[1].center_time, (0.4 + 1.1 + 0.1) / 2, atol=1e-6)
    sparse = list(iter_snippets(video, DecodeOptions(snippet_frames=4, snippet_stride=10)))
    # starts 0, 10, 20; frames 4-9, 14-19, 24-29 are skipped, nothing to pad.
    assert len(sparse) == 3 == expected_num_snippets(30, 4, 10)
    assert [frame_index_of(s.frames[0]) for s in sparse] == [0, 10, 20]
    np.testing.assert_allclose([s.center_time for s in sparse], [0.2, 1.2, 2.2], atol=1e-6)


def test_target_fps_repeats_the_latest_frame(video):
    snippets = list(iter_snippets(video, DecodeOptions(snippet_frames=16, snippet_stride=16, fps=25)))
    n = resampled_num_frames(30, 10.0, 25.0)
    assert n == 75
    assert len(snippets) == expected_num_snippets(n, 16, 16) == 5  # 4 full + 11 frames padded
    shown = [frame_index_of(f) for s in snippets for f in s.frames[: s.num_real_frames]]
    assert shown == [int(k * 10 // 25) for k in range(75)]  # output k at k/25 s shows frame floor(k*10/25)
    np.testing.assert_allclose(snippets[0].center_time, 16 / 25 / 2, atol=1e-6)
    np.testing.assert_allclose(snippets[-1].center_time, (64 / 25 + 74 / 25 + 1 / 25) / 2, atol=1e-6)


def test_lower_fps_subsamples(video):
    snippets = list(iter_snippets(video, DecodeOptions(snippet_frames=5, snippet_stride=5, fps=5)))
    assert [frame_index_of(f) for s in snippets for f in s.frames] == list(range(0, 30, 2))


@pytest.mark.parametrize("mode,shape", [("crop", (32, 32, 3)), ("stretch", (24, 40, 3))])
def test_resize(video, mode, shape):
    opts = DecodeOptions(snippet_frames=4, snippet_stride=4, height=shape[0], width=shape[1], resize_mode=mode)
    snip = next(iter_snippets(video, opts))
    assert snip.frames.shape == (4,) + shape
    assert [frame_index_of(f) for f in snip.frames] == [0, 1, 2, 3]


def test_crop_keeps_the_centre(tmp_path):
    # 64 x 48 -> shorter side 32: 43 x 32, centre crop 32 x 32 drops ~5 columns each side;
    # the moving bar starts at x = 0 so in frame 0 it is mostly cropped away.
    path = write_video(tmp_path / "bar.mp4", num_frames=4, fps=10)
    crop = next(iter_snippets(path, DecodeOptions(snippet_frames=4, snippet_stride=4, height=32, width=32)))
    opts = DecodeOptions(snippet_frames=4, snippet_stride=4, height=32, width=32, resize_mode="stretch")
    stretch = next(iter_snippets(path, opts))
    white = lambda img: int(np.sum(img[..., 2].mean(axis=0) > 160))  # noqa: E731  columns where the bar is
    assert white(stretch.frames[0]) >= 3  # 8 px of 64 -> 4 px of 32
    assert white(crop.frames[0]) < white(stretch.frames[0])


def test_short_video_gives_one_padded_snippet(tmp_path):
    path = write_video(tmp_path / "short.mp4", num_frames=5, fps=10)
    snippets = list(iter_snippets(path, DecodeOptions(snippet_frames=8, snippet_stride=8)))
    assert len(snippets) == 1 and snippets[0].num_real_frames == 5
    assert [frame_index_of(f) for f in snippets[0].frames] == [0, 1, 2, 3, 4, 4, 4, 4]
    np.testing.assert_allclose(snippets[0].center_time, 0.25, atol=1e-6)


def test_snippets_are_produced_lazily(video):
    gen = iter_snippets(video, DecodeOptions(snippet_frames=8, snippet_stride=8))
    first = next(gen)
    assert first.index == 0
    gen.close()  # closing early releases the container without decoding the rest


@pytest.mark.parametrize(
    "num_frames,n,s,pad,expected",
    [(30, 8, 8, True, 4), (32, 8, 8, True, 4), (30, 8, 8, False, 3), (7, 8, 8, True, 1), (7, 8, 8, False, 0),
     (0, 8, 8, True, 0), (30, 8, 4, True, 7), (28, 8, 4, True, 6), (30, 4, 10, True, 3), (25, 4, 10, True, 3)],
)
def test_expected_num_snippets(num_frames, n, s, pad, expected):
    assert expected_num_snippets(num_frames, n, s, pad) == expected


def test_garbage_empty_and_missing_files_are_rejected_with_reasons(tmp_path):
    bad = garbage(tmp_path / "garbage.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    opts = DecodeOptions(snippet_frames=8, snippet_stride=8)
    for path, reason in [(bad, "unreadable_container"), (str(empty), "unreadable_container"),
                         (str(tmp_path / "nope.mp4"), "file_not_found")]:
        with pytest.raises(VideoDecodeError) as err:
            list(iter_snippets(path, opts))
        assert err.value.reason == reason
        assert path in str(err.value)


def test_truncated_mp4_index_at_end_does_not_open(video, tmp_path):
    cut = truncate(video, tmp_path / "cut.mp4", 0.5)
    with pytest.raises(VideoDecodeError) as err:
        probe(cut)
    assert err.value.reason == "unreadable_container"


def test_truncated_mp4_index_first_fails_after_the_last_frame(faststart, tmp_path):
    cut = truncate(faststart, tmp_path / "cut_fs.mp4", 0.5)
    assert probe(cut).num_frames == 30  # the header still announces 30 frames
    gen = iter_snippets(cut, DecodeOptions(snippet_frames=2, snippet_stride=2))
    got = []
    with pytest.raises(VideoDecodeError) as err:
        for snip in gen:
            got.append(snip)
    assert err.value.reason == "truncated"
    assert "of 30 announced frames" in err.value.detail
    assert 0 < len(got) < 15  # some snippets came out before the truncation was known


def test_decode_options_validation():
    with pytest.raises(ValueError, match="snippet_frames"):
        DecodeOptions(snippet_frames=0)
    with pytest.raises(ValueError, match="both height and width"):
        DecodeOptions(height=32)
    with pytest.raises(ValueError, match="resize_mode"):
        DecodeOptions(resize_mode="zoom")
    with pytest.raises(ValueError, match="fps"):
        DecodeOptions(fps=0)
