"""The "w/o mask branch" ablation: decoding runs of the classifier's actionness."""

import numpy as np
import tensorflow as tf

from tags_tf.postprocess import DetectionDecoder, actionness_masks


def test_actionness_masks_repeat_the_foreground_logit_on_every_row():
    # K = 2, T = 3. Snippet 1 is foreground (P_fg = 0.9 in total), the others background.
    p = np.array([[[0.05, 0.05, 0.9], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]], np.float32)
    out = actionness_masks({"cls_logits_s1": tf.math.log(p), "mask_logits_s1": tf.zeros([1, 3, 3])}, (1,), 2)
    m = tf.sigmoid(out["mask_logits_s1"]).numpy()
    expected = np.array([0.1, 0.9, 0.2], np.float32)  # 1 - P_bg
    for row in m[0]:
        np.testing.assert_allclose(row, expected, atol=1e-6)


def test_decoder_with_actionness_ignores_the_mask_logits():
    # T = 4 over 8 s; snippets 1-2 foreground of class 0; the mask logits say "all
    # foreground" everywhere but must be ignored.
    logits = np.full((1, 4, 2), -6.0, np.float32)
    logits[0, :, 1] = 6.0  # background
    logits[0, 1:3, 0], logits[0, 1:3, 1] = 6.0, -6.0
    outputs = {"cls_logits_s1": tf.constant(logits), "mask_logits_s1": tf.fill([1, 4, 4], 9.0)}
    dec = DetectionDecoder(num_classes=1, scales=(1,), top_snippets=2, mask_source="actionness")
    det = dec(outputs, tf.constant([8.0]))
    n = int(det["num_detections"][0])
    assert n >= 1
    np.testing.assert_allclose(det["detection_segments"][0, 0].numpy(), [2.0, 6.0], atol=1e-5)
    assert DetectionDecoder.from_config(dec.get_config()).mask_source == "actionness"
