"""The "w/o mask branch" ablation: decoding runs of the classifier's actionness."""

import numpy as np
import tensorflow as tf

from tags_tf.config import PostprocessConfig
from tags_tf.decode.decoder import DetectionDecoder

from tags_tf.decode.runs import actionness_logits


def test_actionness_logits_are_the_logit_of_one_minus_background():
    # K = 2, T = 3. Snippet 1 is foreground (P_fg = 0.9 in total), the others background.
    p = np.array([[[0.05, 0.05, 0.9], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]], np.float32)
    curve = tf.sigmoid(actionness_logits(tf.math.log(p))).numpy()
    np.testing.assert_allclose(curve[0], [0.1, 0.9, 0.2], atol=1e-6)  # 1 - P_bg


def test_decoder_with_actionness_ignores_the_mask_logits():
    # T = 4 over 8 s; snippets 1-2 foreground of class 0; the mask logits say "all
    # foreground" everywhere but must be ignored.
    logits = np.full((1, 4, 2), -6.0, np.float32)
    logits[0, :, 1] = 6.0  # background
    logits[0, 1:3, 0], logits[0, 1:3, 1] = 6.0, -6.0
    outputs = {"cls_logits_s1": tf.constant(logits), "mask_logits_s1": tf.fill([1, 4, 4], 9.0)}
    dec = DetectionDecoder(1, (1,), PostprocessConfig(top_snippets=2, mask_source="actionness"))
    det = dec(outputs, tf.constant([8.0]))
    n = int(det["num_detections"][0])
    assert n >= 1
    np.testing.assert_allclose(det["detection_segments"][0, 0].numpy(), [2.0, 6.0], atol=1e-5)
    assert DetectionDecoder.from_config(dec.get_config()).postprocess.mask_source == "actionness"


def _two_source_outputs():
    # T = 8 over 8 s, K = 1. The classifier calls snippets 1-2 foreground; the mask rows of
    # snippets 1-2 mark 4-6 instead. Each source alone yields its own run only.
    logits = np.full((1, 8, 2), -6.0, np.float32)
    logits[0, :, 1] = 6.0
    logits[0, 1:3, 0], logits[0, 1:3, 1] = 6.0, -6.0
    masks = np.full((1, 8, 8), -9.0, np.float32)
    masks[0, :, 4:7] = 9.0
    return {"cls_logits_s1": tf.constant(logits), "mask_logits_s1": tf.constant(masks)}


def _segments(source):
    dec = DetectionDecoder(1, (1,), PostprocessConfig(top_snippets=2, mask_source=source,
                                                      mask_thresholds=(0.5,), score_threshold=1e-6))
    det = dec(_two_source_outputs(), tf.constant([8.0]))
    n = int(det["num_detections"][0])
    return {tuple(np.round(seg, 3)) for seg in det["detection_segments"][0, :n].numpy().tolist()}


def test_both_sources_pool_the_candidates_of_masks_and_actionness():
    assert _segments("mask") == {(4.0, 7.0)}
    assert _segments("actionness") == {(1.0, 3.0)}
    assert _segments("both") == {(4.0, 7.0), (1.0, 3.0)}
