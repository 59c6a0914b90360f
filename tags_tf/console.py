"""What the command lines print: our own lines, without third-party noise (``-v`` shows all).

Every CLI calls :func:`setup` first, before TensorFlow or Beam are imported. Without
``--verbose``:

- TensorFlow's C++ logs follow ``TF_CPP_MIN_LOG_LEVEL`` when the user set it; otherwise
  warnings and infos are hidden (level 2), and on a machine without an NVIDIA driver also
  the ``failed call to cuInit`` error that TensorFlow prints there on every start (level
  3: with no GPU driver there is no GPU error to report).
- The lines in :data:`NOISE` are dropped: each is printed by a dependency on a supported
  setup, is not actionable, and says so in its reason. Nothing else is filtered.

``--verbose`` (``-v``) changes nothing: every line of every library is shown. No
TensorFlow import here.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import re
import warnings
from typing import NamedTuple

TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Noise(NamedTuple):
    source: str  # a logger name ("" = the root logger) or "warnings" (Python warnings)
    pattern: str  # regular expression searched in the message
    reason: str  # why the line is not actionable


NOISE = (
    Noise("apache_beam.io.filesystems", r"Failed to import GCSFileSystem",
          "Beam without its [gcp] extra: gs:// paths are not used unless asked for (then Beam fails loudly)"),
    Noise("", r"apitools not found, and bigquery client libraries are not available",
          "Beam without its [gcp] extra: BigQuery is not used"),
    Noise("apache_beam.io.gcp.bigquery", r"No module named google\.cloud\.bigquery_storage_v1",
          "Beam without its [gcp] extra: BigQuery is not used"),
    Noise("tensorflow", r"(load|loader).*is deprecated and will be removed|Instructions for updating",
          "the TF1 SavedModel loader of serving.dev_server, deliberately the one TF Serving uses"),
    Noise("warnings", r"Your input ran out of data; interrupting training",
          "Keras learns an unknown dataset length at the end of the first epoch (no steps_per_epoch is set)"),
)


class _DropNoise(logging.Filter):
    def __init__(self, noise: tuple[Noise, ...]):
        super().__init__()
        self.rules = [(n.source, re.compile(n.pattern)) for n in noise if n.source != "warnings"]

    def filter(self, record: logging.LogRecord) -> bool:
        name = "" if record.name == "root" else record.name
        message = record.getMessage()
        return not any((name == source or name.startswith(source + ".") if source else name == "")
                       and rule.search(message) for source, rule in self.rules)


def gpu_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded (``/proc/driver/nvidia``) or its library is installed."""
    if os.path.exists("/proc/driver/nvidia/version"):
        return True

    return ctypes.util.find_library("cuda") is not None


def add_argument(parser) -> None:
    """``-v``/``--verbose`` of every CLI."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every line of every library (TensorFlow, Beam, Keras warnings included)")


def setup(verbose: bool = False, level: int = logging.INFO, fmt: str = FORMAT) -> None:
    """Logging for a CLI (``level`` and ``fmt`` on stderr) and, unless ``verbose``, the
    filters above. Call before TensorFlow or Beam are imported."""
    logging.basicConfig(level=level, format=fmt)
    if verbose:
        return
    os.environ.setdefault(TF_LOG_ENV, "2" if gpu_driver_present() else "3")
    for noise in NOISE:
        if noise.source == "warnings":
            warnings.filterwarnings("ignore", message=f".*{noise.pattern}")
    drop = _DropNoise(NOISE)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropNoise) for f in handler.filters):  # setup twice: once
            handler.addFilter(drop)
    # Libraries that log before or without our root handler (TensorFlow's own logger,
    # Beam's loggers) also get the filter on their loggers.
    for source in {n.source for n in NOISE if n.source not in ("", "warnings")}:
        if not any(isinstance(f, _DropNoise) for f in logging.getLogger(source).filters):
            logging.getLogger(source).addFilter(drop)


def verbose_in(argv) -> bool:
    """Whether ``-v``/``--verbose`` is in ``argv`` (for CLIs that set up before parsing,
    because they import TensorFlow at module level)."""
    return any(a in ("-v", "--verbose") for a in argv)
