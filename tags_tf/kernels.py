"""Which CPU kernels TensorFlow uses: oneDNN or Eigen (``--kernels auto|onednn|eigen``).

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it is imported, and turns oneDNN
on by default only on some CPUs (it stays off on AMD EPYC, for one). Every CLI calls
:func:`select` before it imports TensorFlow:

- a value the user exported is kept (``auto``); ``--kernels onednn|eigen`` overrides it;
- ``auto`` otherwise picks by workload, from ``benchmarks/roofline.py`` on a 2-core AMD
  EPYC where TensorFlow's default is Eigen (docs/benchmarks.md): oneDNN for batched
  work on full-size models (training, evaluation, export, Beam feature jobs; ActivityNet
  size: forward at batch 32 and the train step 1.10-1.17x faster), Eigen for batch-1
  latency (the development server: oneDNN 1.17x slower at ActivityNet size, batch 1)
  and for the small demo model (Keras ``train_on_batch`` 1.14x faster under Eigen).

Both kernel sets give the same detections within float32 rounding
(tests/tags_tf/test_kernels.py compares the model's outputs under each at rtol 1e-4). No
TensorFlow import here.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

log = logging.getLogger(__name__)

ENV = "TF_ENABLE_ONEDNN_OPTS"
CHOICES = ("auto", "onednn", "eigen")
_VALUES = {"onednn": "1", "eigen": "0"}
# Workload -> the kernel set ``auto`` picks (docs/benchmarks.md).
AUTO = {"batch": "onednn", "latency": "eigen", "small": "eigen"}


def select(choice: str = "auto", workload: str = "batch") -> str:
    """Sets ``TF_ENABLE_ONEDNN_OPTS`` for ``choice`` before TensorFlow loads; returns a line saying what.

    Raises ValueError for an unknown choice or workload.
    """
    if choice not in CHOICES:
        raise ValueError(f"--kernels must be one of {CHOICES}, got {choice!r}")
    if workload not in AUTO:
        raise ValueError(f"workload must be one of {tuple(AUTO)}, got {workload!r}")
    if choice == "auto" and ENV in os.environ:
        return f"kernels: {ENV}={os.environ[ENV]} as set in the environment"
    kernels = AUTO[workload] if choice == "auto" else choice
    value = _VALUES[kernels]
    if "tensorflow" in sys.modules and os.environ.get(ENV) != value:
        # Too late: TensorFlow has read the variable already (e.g. imported by a caller).
        return f"kernels: TensorFlow was imported before --kernels {kernels} could apply; unchanged"
    os.environ[ENV] = value
    why = f"auto for {workload} work" if choice == "auto" else "as asked"
    return f"kernels: {kernels} ({ENV}={value}, {why}; --kernels auto|onednn|eigen)"


def choice_from_argv(argv: Sequence[str]) -> str:
    """The value of ``--kernels`` in ``argv`` (``auto`` when absent); no other parsing."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--kernels" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--kernels="):
            return arg.split("=", 1)[1]
    return "auto"


def select_from_argv(argv: Sequence[str], workload: str = "batch") -> str:
    """:func:`select` with ``--kernels`` read from ``argv``; exits 2 with one line on a bad value."""
    try:
        return select(choice_from_argv(argv), workload)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def add_argument(parser) -> None:
    """The ``--kernels`` option of every CLI (read by :func:`select_from_argv` before TF loads)."""
    parser.add_argument("--kernels", choices=CHOICES, default="auto",
                        help="CPU kernels: oneDNN or Eigen (auto: the environment's TF_ENABLE_ONEDNN_OPTS "
                             "if set, else the faster for this command; docs/benchmarks.md)")
