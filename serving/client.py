"""``python -m serving.client``: detections from the served TAGS model (TF Serving or
``serving.dev_server``) for feature files, shards or a list of videos::

    python -m serving.client --server HOST:8500 --model tags --features video.npy --duration 120.5

The command line is :mod:`serving.batch_client`'s; the gRPC library is
:mod:`serving.grpc_client` (its names are re-exported here:
``from serving.client import DetectionClient``).
"""

from __future__ import annotations

import logging
import sys

if __name__ == "__main__":  # before TensorFlow loads (its C++ log level is read once, at import)
    from tags_tf import console as _console

    _console.setup(_console.verbose_in(sys.argv[1:]), level=logging.WARNING,
                   fmt="%(levelname)s %(name)s: %(message)s")

from serving.batch_client import main  # noqa: E402
from serving.grpc_client import (  # noqa: F401, E402  (the library, re-exported)
    ClientInputError,
    DetectionClient,
    ServingError,
    VideoDetections,
    resample,
    split_detections,
)

if __name__ == "__main__":
    sys.exit(main())
