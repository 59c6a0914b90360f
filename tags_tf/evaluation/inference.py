"""Detection over a dataset of shards, for training-time validation and offline
evaluation, through ``TagsModel.detect`` (resample -> model -> decode), the path the
serving ``detect`` signature also traces."""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tags_tf.evaluation.detections import unpad_detections

log = logging.getLogger(__name__)


def make_detect_fn(model, decoder=None) -> "tf.types.experimental.PolymorphicFunction":
    """``(features (B, T_in, D), duration (B,)) -> detections dict`` as one tf.function.

    ``decoder``: a :class:`tags_tf.decode.decoder.DetectionDecoder` to use instead of the
    model's own (e.g. to compare decoding settings on one checkpoint)."""

    @tf.function(reduce_retracing=True)
    def detect(features, duration):
        return model.detect(features, duration, decoder=decoder)

    return detect


def detect_dataset(model, dataset: tf.data.Dataset, progress: bool = False, decoder=None) -> tuple[dict, dict]:
    """Runs the model and the decoder (``model.decoder`` unless ``decoder`` is given) over
    ``dataset`` (made with ``with_metadata=True``).

    Returns:
      detections: {video_id: {"segments" (n, 2) s, "scores" (n,), "classes" (n,)}}
      ground_truth: {video_id: {"segments" (m, 2) s, "labels" (m,), "duration"}} read from
        the same records, so validation needs no annotation file.
    """
    detect = make_detect_fn(model, decoder)
    detections, ground_truth = {}, {}
    batches: Iterable = dataset
    if progress:
        batches = tqdm(dataset, desc="detect", unit="batch", leave=False)
    for x, _ in batches:
        per_video = unpad_detections({k: v.numpy() for k, v in detect(x["features"], x["duration"]).items()})
        ids = [v.decode() for v in x["video_id"].numpy()]
        segs, labels, durs = x["segments"].numpy(), x["labels"].numpy(), x["duration"].numpy()
        for i, (vid, (seg, score, cls)) in enumerate(zip(ids, per_video)):
            detections[vid] = {
                "segments": seg.astype(np.float64),
                "scores": score.astype(np.float64),
                "classes": cls.astype(np.int64),
            }
            keep = labels[i] >= 0
            ground_truth[vid] = {
                "segments": segs[i][keep].astype(np.float64),
                "labels": labels[i][keep].astype(np.int64),
                "duration": float(durs[i]),
            }
    return detections, ground_truth
