"""The Python API: load a trained model, detect on numpy arrays, score named segments.

    import tags_tf

    detector = tags_tf.load("runs/demo")            # a run, a .keras file or an exported SavedModel
    segments = detector.detect(features, duration)  # features (T, D) numpy, duration in seconds
    # [Segment(start=12.4, end=30.1, label='Vaulting', score=0.81), ...], best first
    report = tags_tf.score({"video_1": segments}, "annotations.json", subset="test")
    report.average_map

Detection is ``TagsModel.detect`` (a run or a ``.keras`` file) or the SavedModel's
``detect`` signature: the same resample -> model -> decode path as training validation
and serving. Scoring is the official evaluator's (:class:`tags_tf.evaluation.evaluator.Evaluator`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Mapping, Sequence

import numpy as np

from tags_tf.data import schema
from tags_tf.data.annotation_files import load_annotations
from tags_tf.evaluation.detections import DEFAULT_VERSION, result_entry
from tags_tf.evaluation.evaluator import Evaluator
from tags_tf.evaluation.metrics import DetectionMetrics
from tags_tf.evaluation.results_reader import parse_results

CLASS_NAMES_FILE = "class_names.json"  # beside best.keras in a run; under assets.extra/ in a SavedModel


@dataclasses.dataclass(frozen=True)
class Segment:
    """One detected action instance: seconds from the video's start, class name, score."""

    start: float
    end: float
    label: str
    score: float


class Detector:
    """Detections of one video at a time from its (T, D) snippet features. Made by :func:`load`."""

    def __init__(self, detect_fn: Callable, class_names: Sequence[str], feature_dim: int, source: str):
        self._detect = detect_fn  # (features (1, T, D) float32, duration (1,) float32) -> detection dict
        self.class_names = list(class_names)
        self.feature_dim = int(feature_dim)
        self.source = source

    def detect(self, features, duration: float) -> list[Segment]:
        """Named segments of one video, best first. ``features``: (T, D) array of the
        video's T >= 1 snippet features (any T); ``duration``: seconds."""
        x = np.asarray(features, np.float32)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (T >= 1, {self.feature_dim}) for {self.source}, got {list(x.shape)}")
        if not np.isfinite(duration) or duration <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {duration}")
        out = self._detect(x[None], np.asarray([duration], np.float32))
        n = int(np.asarray(out[schema.NUM_DETECTIONS])[0])
        segments = np.asarray(out[schema.DETECTION_SEGMENTS])[0, :n]
        scores = np.asarray(out[schema.DETECTION_SCORES])[0, :n]
        classes = np.asarray(out[schema.DETECTION_CLASSES])[0, :n]
        return [Segment(float(a), float(b), self.class_names[int(c)], float(s))
                for (a, b), s, c in zip(segments.tolist(), scores.tolist(), classes.tolist())]


def load(path: str | os.PathLike) -> Detector:
    """A :class:`Detector` from a training run directory (its ``best.keras`` and
    ``class_names.json``), a ``.keras`` file (class names from a ``class_names.json``
    beside it, else ``class_<id>``) or an exported SavedModel version directory (its
    ``detect`` signature). Raises FileNotFoundError naming the path."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _load_saved_model(path)
    keras_file = os.path.join(path, "best.keras") if os.path.isdir(path) else path
    if not (os.path.isfile(keras_file) and keras_file.endswith(".keras")):
        raise FileNotFoundError(f"{path}: not a training run (best.keras), a .keras file or a SavedModel "
                                "(saved_model.pb)")
    import keras

    from tags_tf.evaluation.inference import make_detect_fn
    from tags_tf.model.tags_model import TagsModel  # noqa: F401  (registers the model for load_model)

    model = keras.saving.load_model(keras_file)
    m = model.tags_config.model
    names = _class_names(os.path.join(os.path.dirname(keras_file), CLASS_NAMES_FILE), m.num_classes)
    return Detector(make_detect_fn(model), names, m.feature_dim, keras_file)


def _load_saved_model(path: str) -> Detector:
    import tensorflow as tf

    signature = tf.saved_model.load(path).signatures["detect"]
    spec = signature.structured_input_signature[1]["features"]  # (B, T_in, D)
    names = _class_names(os.path.join(path, "assets.extra", CLASS_NAMES_FILE), None)

    def detect(features, duration):
        return signature(features=tf.constant(features), duration=tf.constant(duration))

    return Detector(detect, names, spec.shape[-1], path)


def _class_names(path: str, num_classes: int | None) -> list[str]:
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return list(json.load(f))
    if num_classes is None:
        raise FileNotFoundError(f"{path}: the class names are missing")
    return [f"class_{i}" for i in range(num_classes)]


def score(detections: Mapping[str, Sequence[Segment]], annotations: str | os.PathLike, subset: str,
             protocol: str = "anet") -> DetectionMetrics:
    """mAP of ``{video_id: segments}`` against an annotation file (any layout
    :func:`tags_tf.data.annotation_files.load_annotations` reads), over every video of
    ``subset`` (a video without detections counts its instances as missed); ``protocol``
    "anet" (tIoU 0.5:0.95) or "thumos" (0.3:0.7). ``.average_map``, ``.map_per_tiou``,
    ``.table()``."""
    gt = load_annotations(annotations, subset=subset).usable()
    results = {vid: [result_entry(s.label, s.score, s.start, s.end) for s in segs] for vid, segs in detections.items()}
    predictions = parse_results({"version": DEFAULT_VERSION, "results": results, "external_data": {}},
                                source="<detections>")
    return Evaluator(gt.class_names, protocol).evaluate_sets(predictions, gt, log_notes=False)
