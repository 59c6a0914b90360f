"""tags_tf/data/statistics.py: temporal statistics of a corpus and the preset they call for."""

import pytest

from tags_tf.data.statistics import choose_preset, temporal_statistics


def test_statistics_of_a_hand_computed_corpus():
    videos = [
        (100, 100.0, [(10.0, 30.0)]),  # one instance, 20 % of the video
        (50, 50.0, [(0.0, 5.0), (20.0, 25.0), (40.0, 60.0)]),  # 10 %, 10 %, 20 % (clipped at 50 s)
        (200, 200.0, []),  # no instance
    ]
    st = temporal_statistics(videos)
    assert st["videos"] == 3
    # Linear-interpolated quantiles of [50, 100, 200]: p10 = 50 + 0.2 * 50 = 60,
    # p50 = 100, p90 = 100 + 0.8 * 100 = 180.
    assert st["snippets_per_video"] == {"p10": 60.0, "p50": 100.0, "p90": 180.0}
    assert st["duration_s"] == {"p10": 60.0, "p50": 100.0, "p90": 180.0}
    # Counts [1, 3, 0]: mean 4/3; p10 = 0.2, p50 = 1, p90 = 1 + 0.8 * 2 = 2.6.
    assert st["instances_per_video"] == {"mean": 1.333333, "p10": 0.2, "p50": 1.0, "p90": 2.6}
    # Fractions [0.2, 0.1, 0.1, 0.2]: p10 = 0.1, p50 = 0.15, p90 = 0.2.
    assert st["instance_length_fraction"] == {"p10": 0.1, "p50": 0.15, "p90": 0.2}


def _stats(fraction, per_video):
    return {"instance_length_fraction": {"p50": fraction}, "instances_per_video": {"mean": per_video},
            "snippets_per_video": {"p50": 120}, "duration_s": {"p50": 118}}


def test_activitynet_like_statistics_choose_anet_and_say_why():
    preset, reason = choose_preset(_stats(0.24, 1.6))
    assert preset == "anet"
    assert "median instance 24.0 % of its video" in reason and "1.6 instances per video" in reason
    assert "120 snippets / 118 s" in reason


@pytest.mark.parametrize("fraction,per_video", [(0.02, 15.0), (0.02, 1.0), (0.3, 12.0)])
def test_thumos_like_statistics_choose_thumos(fraction, per_video):
    assert choose_preset(_stats(fraction, per_video))[0] == "thumos"


def test_statistics_without_instances_are_refused():
    with pytest.raises(ValueError, match="no instances"):
        choose_preset(temporal_statistics([(10, 10.0, [])]) | {"instance_length_fraction": {}})
