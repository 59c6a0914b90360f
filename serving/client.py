"""``python -m serving.client``: detections from the served TAGS model (TF Serving or
``serving.dev_server``) for feature files, shards or a list of videos::

    python -m serving.client --server HOST:8500 --model tags --features video.npy --duration 120.5

The command line is :mod:`serving.batch_client`'s; the gRPC library is
:mod:`serving.grpc_client` (its names are re-exported here:
``from serving.client import DetectionClient``).
"""

from __future__ import annotations

import sys

from serving.batch_client import main
from serving.grpc_client import (  # noqa: F401  (the library, re-exported)
    ClientInputError,
    DetectionClient,
    ServingError,
    VideoDetections,
    resample,
    split_detections,
)

if __name__ == "__main__":
    sys.exit(main())
