"""Roofline of the TAGS model on this machine: FLOPs per video, achieved GFLOP/s and the
fraction of the machine's fp32 matmul rate, per preset and per TensorFlow kernel set.

    python benchmarks/roofline.py [--presets demo,anet] [--kernels onednn|eigen|both|current]
        [--batches 1,8,32] [--max-train-batch N] [--repeats 3] [--rounds 2] [--json PATH] [--quick]

Kernel sets. TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` only when it is imported, so
every TensorFlow measurement runs in a worker subprocess with that variable set
(``eigen``: 0, ``onednn``: 1; ``current``: the parent's environment, unchanged). The
worker reads back whether oneDNN is really on (``IsMklEnabled``, the check behind TF's
"oneDNN custom operations are on" log line). With ``--kernels both`` the two workers
live side by side and the parent has them take turns, one timing each, for
``--rounds`` rounds (alternating who goes first): on a shared machine the load drifts
over seconds, and this way both kernel sets see the same drift. Each timing is the best
of ``--repeats`` calls after a warm-up; the best over the rounds counts.

The machine's rate: the best of numpy (an N x N @ N x N fp32 matmul, N = 2048) and
``tf.matmul`` under each kernel set, each measured in every process before and after
the model timings.

FLOPs come from TensorFlow's profiler on the traced graph (``float_operation()``;
1 multiply-add = 2 FLOPs) plus the two-operand ``Einsum`` ops that TF's FLOP registry
does not count (the bilinear mask head's query . key product). The train step counted
and timed is one function: forward (training=True), label assignment, the four losses
and the gradients (``GradientTape``), without the optimizer; the Adam update is timed
apart on those gradients, and Keras's ``train_on_batch`` (all of it, no XLA, as the
trainer compiles it) is printed beside them. FLOPs per video = graph FLOPs / batch.

Tables (fraction of the best rate first, then GFLOP/s, then ms per video): forward at
each batch and the train step; the pieces of the train step (input projection, encoder
and heads per scale, label assignment, each loss, Adam), each timed as its own
``tf.function``, and the backward pass as the train step minus one function of forward
+ labels + losses (a difference of two timings); the top ops by time from a
``tf.profiler.experimental`` trace (summed kernel time per op type; with several
threads the sum can exceed the wall time, so shares are of the summed op time).

Long because it is one measurement end to end: the worker processes per kernel set, the
FLOP count, every timed piece of the train step, the profiler trace and the tables.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing.

KERNEL_ENV = {"eigen": "0", "onednn": "1"}  # --kernels name -> TF_ENABLE_ONEDNN_OPTS
RESULT_MARK = "ROOFLINE_JSON "  # prefix of the one stdout line a worker's result is on
MATMUL_REPEATS = 5  # at least this many matmuls per rate measurement (best of them counts)


# ------------------------------------------------------------------ arithmetic
def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (m, k) @ (k, n) matmul: one multiply and one add per term."""
    return 2 * m * k * n


def gflops_per_s(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else float("nan")


def fraction_of(rate: float, best: float) -> float:
    """``rate / best`` (both GFLOP/s); NaN when the best rate is unknown or zero."""
    return rate / best if best and best > 0 else float("nan")


def best_seconds(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn()`` (call it once before to warm up)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_matmul_rate(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an fp32 (n, n) @ (n, n) numpy matmul (its BLAS, all its threads)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up
    return gflops_per_s(matmul_flops(n, n, n), best_seconds(lambda: a @ b, repeats))


# ----------------------------------------------------- TensorFlow (worker side)
def kernel_state() -> dict:
    """The kernel set this process's TensorFlow uses."""
    from tensorflow.python.util import _pywrap_util_port

    return {
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
        "onednn_on": bool(_pywrap_util_port.IsMklEnabled()),
    }


def tf_matmul_rate(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an fp32 (n, n) @ (n, n) ``tf.matmul`` under a ``tf.function``."""
    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    fn = tf.function(lambda: tf.matmul(a, b))
    fn().numpy()  # trace + warm up
    return gflops_per_s(matmul_flops(n, n, n), best_seconds(lambda: fn().numpy(), repeats))


def einsum_flops(op) -> int:
    """FLOPs of a two-operand ``Einsum`` op: 2 x the product of every index's size.

    TF's FLOP registry has no entry for Einsum. Returns 0 for other ops, for einsums
    of another arity and for unknown shapes.
    """
    if op.type != "Einsum" or len(op.inputs) != 2:
        return 0
    lhs = op.get_attr("equation").decode().split("->")[0].split(",")
    sizes = {}
    for spec, tensor in zip(lhs, op.inputs):
        dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
        if dims is None or "." in spec or len(spec) != len(dims) or None in dims:
            return 0
        sizes.update(zip(spec, dims))
    return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))


def graph_flops(graph) -> dict:
    """``{"profiler", "einsum", "total"}`` FLOPs of a ``tf.Graph`` (a ConcreteFunction's).

    ``profiler`` is ``tf.compat.v1.profiler`` with ``float_operation()`` options. Not
    counted: ops inside nested function calls (the graphs here have none) and ops whose
    shape depends on the data (the profiler reports how many on stderr): in the train
    step, the promotion loss's gathered foreground rows and their gradients, elementwise
    work of a few FLOPs per mask cell, small beside the matmuls.
    """
    import tensorflow as tf

    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=graph, options=opts)
    extra = sum(einsum_flops(op) for op in graph.get_operations())
    return {"profiler": int(prof.total_float_ops), "einsum": extra, "total": int(prof.total_float_ops) + extra}


def concrete_flops(fn, *args) -> int:
    """Total FLOPs of ``tf.function`` ``fn`` traced for ``args`` (tensors or TensorSpecs)."""
    return graph_flops(fn.get_concrete_function(*args).graph)["total"]


def top_ops(fn, repeats: int, top: int = 5) -> tuple[list[dict], float]:
    """The ``top`` op types by summed kernel time over ``repeats`` calls of ``fn()``.

    Traced with ``tf.profiler.experimental`` into a temporary logdir; the XSpace proto it
    writes lists each executed kernel as an event named ``"op_name:OpType"`` with the
    type as display name. Returns ``([{"op", "count", "ms", "share"}], summed_ms)``,
    times per call of ``fn``.
    """
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(repeats):
                fn()
        finally:
            tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(files[0], "rb") as f:
            space.ParseFromString(f.read())
    ps, count = {}, {}
    for plane in space.planes:
        meta = plane.event_metadata
        for line in plane.lines:
            for ev in line.events:
                md = meta[ev.metadata_id]
                if not md.display_name or ":" not in md.name:  # not an op kernel
                    continue
                ps[md.display_name] = ps.get(md.display_name, 0) + ev.duration_ps
                count[md.display_name] = count.get(md.display_name, 0) + 1
    total = sum(ps.values())
    rows = [
        {"op": op, "count": count[op] // repeats, "ms": t / 1e9 / repeats, "share": t / total if total else 0.0}
        for op, t in sorted(ps.items(), key=lambda kv: -kv[1])[:top]
    ]
    return rows, total / 1e9 / repeats


def _finish(out) -> None:
    """Makes sure ``out`` (a nest of tensors) is computed: CPU calls are synchronous,
    but the first scalar is fetched anyway."""
    import tensorflow as tf

    flat = [t for t in tf.nest.flatten(out) if t is not None]
    if flat:
        flat[0].numpy()


def _rate_row(name: str, flops_per_video: float, ms_per_video: float, best: float, **extra) -> dict:
    rate = gflops_per_s(flops_per_video, ms_per_video / 1e3)
    return {
        "name": name,
        "gflop_per_video": flops_per_video / 1e9,
        "ms_per_video": ms_per_video,
        "gflops": rate,
        "fraction": fraction_of(rate, best),
        **extra,
    }


def _synthetic_batch(cfg, batch: int):
    from benchmarks.train_bench import synthetic_batch

    return synthetic_batch(cfg, batch, np.random.default_rng(0))


def preset_benches(preset: str, batches, max_train_batch: int) -> tuple[dict, dict]:
    """Everything of one preset the parent times, traced, warmed up and FLOP-counted.

    Returns ``(benches, info)``: ``benches[name] = (fn, flops, batch)`` with ``fn()``
    running one call to completion and ``flops`` those of one call (NaN: not counted);
    ``info`` holds the parameter count, the train batch and the names in table order.
    """
    import keras
    import tensorflow as tf

    from tags_tf.config import get_config
    from tags_tf.model.labels import build_targets
    from tags_tf.model.losses import TagsLoss
    from tags_tf.model.tags_model import TagsModel

    cfg = get_config(preset)
    m = cfg.model
    model = TagsModel(cfg)
    model.build((None, m.input_snippets, m.feature_dim))
    benches = {}

    def add(name, fn, args, batch, count=True):
        flops = concrete_flops(fn, *args) if count else float("nan")
        fn(*args)  # trace + warm up
        benches[name] = (lambda: _finish(fn(*args)), flops, batch)

    # Forward (inference) at each batch.
    forward = tf.function(lambda x: model(x, training=False))
    for b in batches:
        add(f"forward b{b}", forward, (tf.random.normal([b, m.input_snippets, m.feature_dim]),), b)

    # Train step: forward + label assignment + losses + gradients, one tf.function.
    tb = min(cfg.train.batch_size, max_train_batch) if max_train_batch else cfg.train.batch_size
    x_np, y_np = _synthetic_batch(cfg, tb)
    x = tf.constant(x_np)
    y = {k: tf.constant(v) for k, v in y_np.items()}
    loss_fn = TagsLoss(cfg)
    variables = model.trainable_variables

    @tf.function
    def loss_only(x, y):  # forward + labels + losses, no gradient
        targets = build_targets(y["segments"], y["labels"], y["duration"], m)
        return loss_fn(model(x, training=True), targets)["total"]

    @tf.function
    def grad_step(x, y):  # the train step without the optimizer
        with tf.GradientTape() as tape:
            targets = build_targets(y["segments"], y["labels"], y["duration"], m)
            total = loss_fn(model(x, training=True), targets)["total"]
        return total, tape.gradient(total, variables)

    add("train step", grad_step, (x, y), tb)
    add("fwd+labels+losses", loss_only, (x, y), tb)

    # Keras's own step (forward ... gradients + Adam update), compiled as the trainer does.
    model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate), jit_compile=False)
    model.train_on_batch(x_np, y_np)  # trace + warm up
    benches["train_on_batch"] = (lambda: model.train_on_batch(x_np, y_np), float("nan"), tb)

    # Pieces of the train step, each its own tf.function on precomputed inputs.
    pieces = []

    def piece(name, fn, *args):
        add(f"piece {name}", fn, args, tb)
        pieces.append(name)

    @tf.function
    def project(x):
        h = model.input_proj(x)  # (B, T_in, D) -> (B, T_in, C)
        return model.position(h) if model.position is not None else h

    piece("input projection", project, x)
    h = project(x)
    for s, enc, ch, mh in zip(model.scales, model.encoders, model.cls_heads, model.mask_heads):
        enc_fn = tf.function(lambda h, enc=enc: enc(h, training=True))
        piece(f"encoder s{s}", enc_fn, h)
        piece(f"heads s{s}", tf.function(lambda e, ch=ch, mh=mh: (ch(e), mh(e))), enc_fn(h))  # e: (B, T^s, C)
    label_fn = tf.function(lambda y: build_targets(y["segments"], y["labels"], y["duration"], m))
    piece("label assignment", label_fn, y)
    out = model(x, training=True)
    targets = label_fn(y)
    for term in ("cls", "mask", "pp", "fc"):
        term_fn = tf.function(lambda o, t, term=term: loss_term(loss_fn, term, o, t, model.scales))
        piece(f"loss {term}", term_fn, out, targets)

    @tf.function
    def adam(grads):
        model.optimizer.apply(grads, variables)
        return model.optimizer.iterations

    piece("Adam update", adam, grad_step(x, y)[1])
    info = {
        "params": model.count_params(),
        "train_batch": tb,
        "forward": [f"forward b{b}" for b in batches],
        "pieces": pieces,
        "profile": [f"forward b{max(batches)}", "train step"],
    }
    return benches, info


def loss_term(loss_fn, term: str, out, targets, scales):
    """One of TagsLoss's four terms alone, summed over ``scales`` (unweighted), with the
    inputs ``TagsLoss.__call__`` gives it."""
    import tensorflow as tf

    total = tf.constant(0.0)
    for s in scales:
        valid = tf.cast(targets[f"valid_s{s}"], tf.float32)  # (B, T)
        fg_valid = tf.cast(targets[f"fg_s{s}"], tf.float32) * valid
        cls_logits, mask_logits = out[f"cls_logits_s{s}"], out[f"mask_logits_s{s}"]
        if term == "cls":
            total += loss_fn.cls(targets[f"cls_target_s{s}"], cls_logits, sample_weight=valid)
        elif term == "mask":
            total += loss_fn.mask(targets[f"mask_target_s{s}"], mask_logits, sample_weight=fg_valid)
        elif term == "pp":
            total += loss_fn.pp(targets[f"mask_target_s{s}"], mask_logits, sample_weight=fg_valid)
        elif term == "fc":
            total += loss_fn.fc(cls_logits, mask_logits, out[f"cons_cls_s{s}"], out[f"cons_mask_s{s}"], valid)
        else:
            raise ValueError(f"unknown loss term {term!r}")
    return total


def _send(obj) -> None:
    print(RESULT_MARK + json.dumps(obj), flush=True)


def serve(args) -> None:
    """Worker: sets up every preset under this process's kernel set, then answers the
    parent's commands on stdin, one JSON line each: ``time NAME`` (best seconds of
    ``--repeats`` calls), ``ops NAME`` (top ops of a profiler trace), ``matmul`` (the TF
    and numpy matmul rates now), ``quit``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    import tensorflow  # noqa: F401  (timed: import_s in the JSON)

    ready = {"kernels": kernel_state(), "import_s": time.perf_counter() - start, "presets": {}}
    benches = {}
    for preset in args.presets_to_run:
        t0 = time.perf_counter()
        b, info = preset_benches(preset, args.batches, args.max_train_batch)
        benches.update({f"{preset}/{k}": v for k, v in b.items()})
        info["flops"] = {k: v[1] for k, v in b.items()}
        info["batch"] = {k: v[2] for k, v in b.items()}
        info["setup_s"] = time.perf_counter() - t0
        ready["presets"][preset] = info
    _send(ready)
    mm_repeats = max(args.repeats, MATMUL_REPEATS)
    for line in sys.stdin:
        cmd, _, name = line.strip().partition(" ")
        if cmd == "time":
            _send({"s": best_seconds(benches[name][0], args.repeats)})
        elif cmd == "ops":
            fn, _, _ = benches[name]
            rows, summed = top_ops(fn, max(1, args.repeats - 1))
            _send({"rows": rows, "summed_ms": summed})
        elif cmd == "matmul":
            tf_rate = tf_matmul_rate(args.matmul_n, mm_repeats)
            _send({"tf": tf_rate, "numpy": numpy_matmul_rate(args.matmul_n, mm_repeats)})
        elif cmd == "quit":
            return
        else:
            raise ValueError(f"unknown command {line!r}")


# --------------------------------------------------------------- parent side
class Worker:
    """This script in ``--serve`` mode under one kernel set (``eigen``, ``onednn`` or
    ``current``), driven over its stdin/stdout."""

    def __init__(self, kernels: str, args, presets: list[str]):
        env = dict(os.environ)
        if kernels in KERNEL_ENV:
            env["TF_ENABLE_ONEDNN_OPTS"] = KERNEL_ENV[kernels]
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--serve",
            "--matmul-n", str(args.matmul_n), "--repeats", str(args.repeats),
            "--batches", ",".join(map(str, args.batches)), "--max-train-batch", str(args.max_train_batch),
            "--run-presets", ",".join(presets),
        ]
        self.name = kernels
        self.log = tempfile.TemporaryFile(mode="w+")  # TF's logs; shown if the worker fails
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1
        )

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(RESULT_MARK):
                return json.loads(line[len(RESULT_MARK):])
        self.log.seek(0)
        raise RuntimeError(f"roofline worker ({self.name}) exited {self.proc.wait()}:\n{self.log.read()[-4000:]}")

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def assemble(info: dict, seconds: dict, top: dict, best: float) -> dict:
    """The tables of one preset under one kernel set, from a worker's FLOPs and the
    best seconds per call the parent collected."""
    flops, batch = info["flops"], info["batch"]

    def ms(name):  # per video
        return 1e3 * seconds[name] / batch[name]

    def row(name, label=None, **extra):
        return _rate_row(label or name, flops[name] / batch[name], ms(name), best, **extra)

    tb = info["train_batch"]
    pieces = [row(f"piece {p}", p) for p in info["pieces"]]
    backward = _rate_row(
        "backward (step - fwd+labels+losses fn)",
        (flops["train step"] - flops["fwd+labels+losses"]) / tb,
        ms("train step") - ms("fwd+labels+losses"),
        best,
    )
    pieces.insert(len(pieces) - 1, backward)  # before the Adam update
    adam_ms = ms("piece Adam update")
    step_and_adam = ms("train step") + adam_ms
    for p in pieces:
        p["share"] = p["ms_per_video"] / step_and_adam
    return {
        "params": info["params"],
        "setup_s": info["setup_s"],
        "forward": [row(n, batch=batch[n]) for n in info["forward"]],
        "train": row("train step", f"train step b{tb}", batch=tb,
                     flops_source="profiler on the traced forward + labels + losses + GradientTape graph"),
        "pieces": pieces,
        "pieces_check": {
            "before_backward_sum_ms": sum(p["ms_per_video"] for p in pieces[:-2]),
            "fwd_labels_losses_ms": ms("fwd+labels+losses"),
            "step_and_adam_ms": step_and_adam,
            "train_on_batch_ms": ms("train_on_batch"),
        },
        "top_ops": {
            (f"train step b{tb}" if name == "train step" else name): {**t, "batch": batch[name]}
            for name, t in top.items()
        },
    }


def _kernel_label(run: dict) -> str:
    k = run["kernels"]
    state = "on" if k["onednn_on"] else "off"
    return f"{run['name']} (TF_ENABLE_ONEDNN_OPTS={k['TF_ENABLE_ONEDNN_OPTS']}, oneDNN {state})"


def _fmt(x: float, spec: str) -> str:
    """``format(x, spec)``, or ``-`` right-aligned to the spec's width for a missing number."""
    if x is None or x != x:
        width = spec.split(".")[0]
        return format("-", f">{width}" if width else "")
    return format(x, spec)


def rate_table(rows: list[dict], extra: str = "") -> list[str]:
    head = f"  {'':38} {'frac best':>9} {'GFLOP/s':>8} {'ms/video':>9} {'GFLOP/video':>11}{extra}"
    lines = [head, "  " + "-" * (len(head) - 2)]
    for r in rows:
        tail = f" {_fmt(r['share'], '9.1%')}" if "share" in r and extra else ""
        lines.append(
            f"  {r['name']:38} {_fmt(r['fraction'], '9.2%')} {_fmt(r['gflops'], '8.2f')} "
            f"{_fmt(r['ms_per_video'], '9.3f')} {_fmt(r['gflop_per_video'], '11.4f')}{tail}"
        )
    return lines


def report(result: dict) -> str:
    m, a = result["machine"], result["args"]
    out = [
        f"machine: {m['cpu']}; fp32 matmul {m['matmul_n']}^3, best of {m['matmul_repeats']} runs, measured "
        "before and after the model timings in every process (best counts)",
        f"  numpy ({m['numpy_blas']}): {m['numpy_gflops']:.1f} GFLOP/s",
    ]
    for name, rate in m["tf_gflops"].items():
        out.append(f"  tf.matmul, {name}: {rate:.1f} GFLOP/s")
    out.append(f"  best rate = {m['best_gflops']:.1f} GFLOP/s (fractions below are of this)")
    out.append(
        f"timings: best of {a['rounds']} rounds x {a['repeats']} calls, the kernel sets taking turns call by call "
        "(the machine is shared: its load changes over seconds)"
    )
    for run in result["runs"]:
        for preset, p in run["presets"].items():
            out.append("")
            out.append(f"== {preset} | kernels: {_kernel_label(run)} | params {p['params'] / 1e6:.2f}M")
            out += rate_table(p["forward"] + [p["train"]])
            c = p["pieces_check"]
            out.append(
                f"  train step + Adam update {c['step_and_adam_ms']:.3f} ms/video; Keras train_on_batch "
                f"(the same, as the trainer runs it) {c['train_on_batch_ms']:.3f} ms/video"
            )
            out.append(
                f"  pieces of the train step (batch {p['train']['batch']}; ms per video, Adam amortized over the "
                "batch; share = of train step + Adam):"
            )
            out += rate_table(p["pieces"], extra=f" {'share':>9}")
            out.append(
                f"  check: pieces before backward sum to {c['before_backward_sum_ms']:.3f} ms vs fwd+labels+losses "
                f"in one function {c['fwd_labels_losses_ms']:.3f} ms (per video)"
            )
            for where, t in p["top_ops"].items():
                out.append(f"  top ops by kernel time, {where} (summed {t['summed_ms'] / t['batch']:.3f} ms/video):")
                for r in t["rows"]:
                    ms = r["ms"] / t["batch"]
                    out.append(f"    {r['op']:32} {r['share']:6.1%} {ms:9.3f} ms/video  x{r['count']} per step")
    over = [r["name"] for run in result["runs"] for p in run["presets"].values()
            for r in p["forward"] + [p["train"]] + p["pieces"] if r["fraction"] > 1.0]
    if over:
        out.append("")
        out.append(f"note: rows above 100% of the matmul rate ({', '.join(sorted(set(over)))}): a difference of "
                   "two timings, or the matmul reference measured only at busy moments of the shared machine.")
    runs = {r["name"]: r for r in result["runs"]}
    if "eigen" in runs and "onednn" in runs:
        out.append("")
        out.append("eigen / onednn time ratio (> 1: oneDNN faster)")
        for preset in runs["eigen"]["presets"]:
            pe, po = runs["eigen"]["presets"][preset], runs["onednn"]["presets"][preset]
            pairs = list(zip(pe["forward"] + [pe["train"]], po["forward"] + [po["train"]]))
            pairs.append(({"name": "train_on_batch", "ms_per_video": pe["pieces_check"]["train_on_batch_ms"]},
                          {"ms_per_video": po["pieces_check"]["train_on_batch_ms"]}))
            cells = ", ".join(f"{e['name']} x{e['ms_per_video'] / o['ms_per_video']:.2f}" for e, o in pairs)
            out.append(f"  {preset}: {cells}")
    return "\n".join(out)


def _blas_name() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict mode
        return "numpy BLAS"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="demo,anet", help="comma-separated: anet, thumos, demo")
    p.add_argument("--kernels", choices=("onednn", "eigen", "both", "current"), default="both")
    p.add_argument("--batches", type=_ints, default=[1, 8, 32], help="forward batch sizes, e.g. 1,8,32")
    p.add_argument("--max-train-batch", type=int, default=0, help="cap on the train batch (0: the preset's)")
    p.add_argument("--repeats", type=int, default=3, help="calls per timing (best counts)")
    p.add_argument("--rounds", type=int, default=2, help="timings per measurement and kernel set (best counts)")
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--no-ops", action="store_true", help="skip the profiler trace (top ops)")
    p.add_argument("--json", default=None, help="write all numbers here")
    p.add_argument("--quick", action="store_true", help="tiny run for tests: demo, batches 1,2, matmul 256")
    # worker-only flags
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-presets", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.presets, args.batches, args.matmul_n = "demo", [1, 2], 256
        args.repeats, args.rounds, args.max_train_batch = 1, 1, args.max_train_batch or 2
    args.presets_list = [s for s in args.presets.split(",") if s]
    args.presets_to_run = [s for s in args.run_presets.split(",") if s]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.serve:
        serve(args)
        return {}
    start = time.perf_counter()
    mm_repeats = max(args.repeats, MATMUL_REPEATS)
    np_rates = [numpy_matmul_rate(args.matmul_n, mm_repeats)]
    model_kernels = ["eigen", "onednn"] if args.kernels == "both" else [args.kernels]
    # Every kernel set's matmul rate is measured; a set whose model is not timed gets a bare worker.
    bare = [k for k in ("eigen", "onednn") if k not in model_kernels]
    workers = [Worker(k, args, args.presets_list) for k in model_kernels] + [Worker(k, args, []) for k in bare]
    models = workers[: len(model_kernels)]
    try:
        ready = {w.name: w.read() for w in workers}  # the workers set up side by side (untimed)
        matmul = {w.name: [w.ask("matmul")] for w in workers}
        seconds = {w.name: {} for w in models}
        names = [f"{p}/{n}" for p in args.presets_list for n in ready[models[0].name]["presets"][p]["flops"]]
        for r in range(args.rounds):
            for name in names:
                for w in models if r % 2 == 0 else models[::-1]:  # take turns, call by call
                    t = w.ask(f"time {name}")["s"]
                    seconds[w.name][name] = min(t, seconds[w.name].get(name, float("inf")))
        top = {w.name: {p: {} for p in args.presets_list} for w in models}
        if not args.no_ops:
            for p in args.presets_list:
                for n in ready[models[0].name]["presets"][p]["profile"]:
                    for w in models:
                        top[w.name][p][n] = w.ask(f"ops {p}/{n}")
        for w in workers:
            matmul[w.name].append(w.ask("matmul"))
    finally:
        for w in workers:
            w.close()
    np_rates.append(numpy_matmul_rate(args.matmul_n, mm_repeats))
    np_rates += [mm["numpy"] for w in workers for mm in matmul[w.name]]
    tf_rates = {w.name: max(mm["tf"] for mm in matmul[w.name]) for w in workers}
    best = max([*np_rates, *tf_rates.values()])
    runs = []
    for w in models:
        rd = ready[w.name]
        runs.append({
            "name": w.name,
            "kernels": rd["kernels"],
            "import_s": rd["import_s"],
            "matmul": matmul[w.name],
            "presets": {
                p: assemble(rd["presets"][p], {n.split("/", 1)[1]: t for n, t in seconds[w.name].items()
                                               if n.startswith(p + "/")}, top[w.name][p], best)
                for p in args.presets_list
            },
        })
    result = {
        "command": " ".join(["python", "benchmarks/roofline.py", *(argv if argv is not None else sys.argv[1:])]),
        "args": {"presets": args.presets_list, "kernels": args.kernels, "batches": args.batches,
                 "max_train_batch": args.max_train_batch, "repeats": args.repeats, "rounds": args.rounds},
        "machine": {
            "cpu": f"{os.cpu_count()} cores",
            "matmul_n": args.matmul_n,
            "matmul_repeats": mm_repeats,
            "numpy_blas": _blas_name(),
            "numpy_gflops": max(np_rates),
            "numpy_gflops_each": np_rates,
            "tf_gflops": tf_rates,
            "best_gflops": best,
        },
        "runs": runs,
        "wall_s": time.perf_counter() - start,
    }
    print(report(result))
    print(f"\n(wall {result['wall_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
