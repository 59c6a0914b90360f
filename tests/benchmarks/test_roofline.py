"""benchmarks/roofline.py: the FLOP counter on hand-computed ops, the rate arithmetic, one quick run."""

import importlib.util
import json
import math
import sys

import pytest
import tensorflow as tf

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("roofline", REPO / "benchmarks" / "roofline.py")
rl = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("roofline", rl)
_spec.loader.exec_module(rl)


def test_matmul_flops_by_hand():
    # (4, 8) @ (8, 16): 4 * 16 outputs, each 8 multiplies + 8 adds.
    assert rl.matmul_flops(4, 8, 16) == 2 * 4 * 8 * 16 == 1024


def test_profiler_counts_a_matmul():
    fn = tf.function(lambda a, b: tf.matmul(a, b))
    graph = fn.get_concrete_function(tf.TensorSpec([4, 8]), tf.TensorSpec([8, 16])).graph
    assert rl.graph_flops(graph) == {"profiler": 1024, "einsum": 0, "total": 1024}


def test_profiler_counts_a_batched_matmul_per_batch_element():
    fn = tf.function(lambda a, b: tf.matmul(a, b))  # BatchMatMulV2
    flops = rl.concrete_flops(fn, tf.TensorSpec([3, 4, 8]), tf.TensorSpec([3, 8, 16]))
    assert flops == 3 * 1024


def test_einsum_is_counted_by_hand_not_by_the_registry():
    # The bilinear mask head's product: (B, T, d) . (B, T', d) -> (B, T, T'); B=2, T=3, T'=5, d=4.
    fn = tf.function(lambda q, k: tf.einsum("abc,adc->abd", q, k))
    graph = fn.get_concrete_function(tf.TensorSpec([2, 3, 4]), tf.TensorSpec([2, 5, 4])).graph
    counted = rl.graph_flops(graph)
    assert counted["einsum"] == 2 * 2 * 3 * 5 * 4 == 240
    assert counted["total"] == counted["profiler"] + 240


def test_einsum_with_unknown_shape_counts_zero():
    fn = tf.function(lambda q, k: tf.einsum("abc,adc->abd", q, k))
    graph = fn.get_concrete_function(tf.TensorSpec([None, 3, 4]), tf.TensorSpec([None, 5, 4])).graph
    assert rl.graph_flops(graph)["einsum"] == 0


def test_rate_and_fraction_arithmetic():
    assert rl.gflops_per_s(3e9, 1.5) == pytest.approx(2.0)
    assert rl.fraction_of(20.0, 80.0) == pytest.approx(0.25)
    assert math.isnan(rl.fraction_of(20.0, 0.0))
    assert math.isnan(rl.gflops_per_s(1e9, 0.0))
    # 2 GFLOP per video in 100 ms = 20 GFLOP/s = half of a 40 GFLOP/s machine.
    row = rl._rate_row("x", 2e9, 100.0, 40.0)
    assert row["gflops"] == pytest.approx(20.0)
    assert row["fraction"] == pytest.approx(0.5)
    assert row["gflop_per_video"] == pytest.approx(2.0)


def test_missing_numbers_print_as_a_dash_of_the_same_width():
    assert rl._fmt(float("nan"), "9.2%") == " " * 8 + "-"
    assert rl._fmt(0.5, "9.2%") == "   50.00%"


def test_top_ops_finds_the_matmul_in_a_trace():
    a, b = tf.random.normal([64, 64]), tf.random.normal([64, 64])
    fn = tf.function(lambda: tf.matmul(a, b))
    fn()
    rows, summed = rl.top_ops(lambda: fn().numpy(), repeats=2)
    assert rows[0]["op"] in ("MatMul", "_MklMatMul")  # Eigen's, or oneDNN's name for it
    assert rows[0]["count"] == 1 and summed > 0
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_quick_run_writes_every_number(tmp_path, capsys):
    out = tmp_path / "roofline.json"
    result = rl.main(["--quick", "--kernels", "eigen", "--no-ops", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["machine"]["best_gflops"] == pytest.approx(result["machine"]["best_gflops"])
    assert set(saved["machine"]["tf_gflops"]) == {"eigen", "onednn"}
    (run,) = saved["runs"]
    assert run["kernels"] == {"TF_ENABLE_ONEDNN_OPTS": "0", "onednn_on": False}
    demo = run["presets"]["demo"]
    assert [r["batch"] for r in demo["forward"]] == [1, 2]
    assert demo["train"]["gflop_per_video"] > demo["forward"][0]["gflop_per_video"] > 0
    names = [p["name"] for p in demo["pieces"]]
    assert {"label assignment", "loss cls", "loss mask", "loss pp", "loss fc"} <= set(names)
    printed = capsys.readouterr().out
    assert "frac best" in printed and "oneDNN off" in printed
