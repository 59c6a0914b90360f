"""benchmarks/decode_sweep.py: the variants it decodes and its table."""

import importlib.util
import sys

from tags_tf.config import get_config
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("decode_sweep", REPO / "benchmarks" / "decode_sweep.py")
ds = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("decode_sweep", ds)
_spec.loader.exec_module(ds)


def test_each_variant_changes_one_postprocess_setting_and_top_snippets_scales_the_preset():
    demo, anet = get_config("demo"), get_config("anet")
    assert ds.variant_config(demo, ds.VARIANTS["config"]) == demo
    assert ds.variant_config(demo, ds.VARIANTS["top_snippets x0.5"]).postprocess.top_snippets == 8
    assert ds.variant_config(anet, ds.VARIANTS["top_snippets x2"]).postprocess.top_snippets == 64
    changed = ds.variant_config(demo, ds.VARIANTS["soft_nms_sigma 0.3"])
    assert changed.postprocess.soft_nms_sigma == 0.3
    assert changed.postprocess.top_snippets == demo.postprocess.top_snippets and changed.model == demo.model


def test_table_has_one_line_per_row_and_variant_with_mean_and_sd():
    run = {name: {"val": 0.5, "test": 0.4} for name in ds.VARIANTS}
    other = {name: {"val": 0.7, "test": 0.6} for name in ds.VARIANTS}
    table = ds.format_table({"tags": [run, other]}).splitlines()
    assert len(table) == 2 + len(ds.VARIANTS)
    # mean 60.0, sd of (50, 70) = 14.1; test mean 50.0.
    assert table[2] == "| tags | config | 2 | 60.0 ± 14.1 | 50.0 ± 14.1 |"


def test_finished_runs_are_the_folders_with_a_best_checkpoint_and_mean_sd_skips_none(tmp_path, caplog):
    from benchmarks.finished_runs import finished_runs, mean_sd

    for row, seed in [("tags", 0), ("tags", 2), ("actionness", 1)]:
        (tmp_path / row / f"seed{seed}").mkdir(parents=True)
        (tmp_path / row / f"seed{seed}" / "best.keras").write_bytes(b"")
    (tmp_path / "tags" / "seed1").mkdir()  # started, never validated: no best.keras
    found = list(finished_runs(str(tmp_path), ["tags", "actionness"], [0, 1, 2]))
    assert [(r, s) for r, s, _ in found] == [("tags", 0), ("tags", 2), ("actionness", 1)]
    assert found[0][2] == str(tmp_path / "tags" / "seed0")
    assert "seed1: no best.keras" in caplog.text
    assert mean_sd([0.5, None, 0.7]) == "60.0 ± 14.1" and mean_sd([0.25]) == "25.0 ± 0.0" and mean_sd([None]) == "-"


def test_report_prints_the_table_or_fails_with_exit_2_when_no_run_was_found(capsys):
    import argparse

    from benchmarks.finished_runs import report

    args = argparse.Namespace(workdir="runs/x", rows="tags")
    assert report(args, "| table |") == 0 and capsys.readouterr().out == "| table |\n"
    assert report(args, None) == 2
    assert capsys.readouterr().err == "error: no finished runs under runs/x for rows tags\n"
