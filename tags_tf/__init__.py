"""TAGS temporal action detection. The Python API (tags_tf/api.py):

    detector = tags_tf.load("runs/demo")
    segments = detector.detect(features, duration)
    report = tags_tf.evaluate({video_id: segments}, "annotations.json", subset="test")
"""

from tags_tf.api import Detector, Segment, evaluate, load

__all__ = ["Detector", "Segment", "evaluate", "load"]
