"""Public names of the exported SavedModel (signatures, inputs, outputs, extra files).

These names are part of the serving API: clients address tensors by them, so they
never change without a new major version. Imported by export, client and dev server;
no TensorFlow import here. Also the reader of the class-names file format.

Signature ``serving_default`` (raw model outputs)
    input   ``features``   float32 [B, T, D], T = cfg.model.input_snippets
    outputs one per key of ``TagsModel.call``: ``cls_logits_s{s}`` [B, T^s, K+1],
            ``mask_logits_s{s}`` [B, T^s, T^s], ``cons_cls_s{s}``, ``cons_mask_s{s}``
Signature ``detect`` (features of any length -> action instances)
    inputs  ``features``   float32 [B, T_in, D], any T_in >= 1, finite
            ``duration``   float32 [B], seconds, finite and > 0
            ``external_scores`` float32 [B, K], only when the model was exported with
                           ``postprocess.class_fusion="external"`` (video-level classifier)
    outputs ``detection_segments`` float32 [B, N, 2] (start, end) in seconds
            ``detection_scores``   float32 [B, N], descending, 0 beyond num_detections
            ``detection_classes``  int32   [B, N], class ids in [0, K)
            ``num_detections``     int32   [B], valid rows per video (<= N)
            ``detection_class_names`` string [B, N], the class names ("" beyond
                           num_detections)

With ``serving.export --video-encoder`` (serving/video_export.py), also:

Signature ``encode`` (raw frames -> snippet features)
    input   ``frames``     uint8 [B, F, H, W, 3] RGB, any H x W (resized in the graph
                           unless it is the layout's), F frames from a snippet start
    outputs ``snippet_features`` float32 [B, k, D], k = windows of N frames every S that
                           fit in F (0 when F < N)
            ``video_layout`` string [B], the layout JSON (serving.video_layout):
                           frame rate, N, S, frame size, chunk limit, ...
Signature ``encode_jpeg``: the same with input ``jpeg_frames`` string [B, F] (one JPEG
    per frame, decoded in the graph).
Signature ``detect_video`` (a short video in one call)
    inputs  ``jpeg_frames`` string [B, F], all of the video's frames at the layout's rate
            ``duration``   float32 [B], seconds
    outputs those of ``detect`` (the last snippet padded as beam.extract_features pads it)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

SERVE_TAG = "serve"
SERVING_DEFAULT = "serving_default"
DETECT = "detect"
ENCODE = "encode"
ENCODE_JPEG = "encode_jpeg"
DETECT_VIDEO = "detect_video"

FEATURES = "features"
DURATION = "duration"
EXTERNAL_SCORES = "external_scores"
FRAMES = "frames"
JPEG_FRAMES = "jpeg_frames"
SNIPPET_FEATURES = "snippet_features"
VIDEO_LAYOUT = "video_layout"

from tags_tf.data.schema import (  # noqa: E402  (the decoder's output names, defined once)
    DETECTION_CLASSES,
    DETECTION_OUTPUTS,
    DETECTION_SCORES,
    DETECTION_SEGMENTS,
    NUM_DETECTIONS,
)

# The detect signature also names each detection's class (string, "" in padded rows),
# from the class names exported with the model: clients need no side file.
DETECTION_CLASS_NAMES = "detection_class_names"
DETECT_OUTPUTS = DETECTION_OUTPUTS + (DETECTION_CLASS_NAMES,)

# Files beside the SavedModel that TF Serving ignores (assets.extra is the convention
# for files that are not graph assets, e.g. warm-up requests).
EXTRA_DIR = "assets.extra"
CLASS_NAMES_FILE = "class_names.json"  # JSON list of K class names, index = class id.
CONFIG_FILE = "config.json"  # TagsConfig.to_json() of the exported model.
# TF Serving replays these PredictionLog records when it loads a version, so the first
# real request does not pay for graph optimisation (TF Serving's file name).
WARMUP_FILE = "tf_serving_warmup_requests"
VIDEO_LAYOUT_FILE = "video_layout.json"  # serving.video_layout.VideoLayout.to_json(), with the encoder spec


def read_class_names(path: str | Path, error: type[Exception] = ValueError) -> list[str]:
    """Class names (index = class id) from a JSON list or ``{"class_names": [...]}``.

    Raises ``error`` with a one-line message naming ``path`` when the file is
    unreadable or holds anything else.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise error(f"{path}: cannot read class names ({e})") from e
    if isinstance(data, Mapping):
        data = data.get("class_names")
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise error(f"{path}: expected a JSON list of class names or {{\"class_names\": [...]}}")
    return data
