"""TAGS temporal action detection. The Python API (tags_tf/api.py)::

    detector = tags_tf.load("runs/demo")
    segments = detector.detect(features, duration)
    report = tags_tf.score({video_id: segments}, "annotations.json", subset="test")

The names are looked up on first use (PEP 562), so importing any ``tags_tf`` module stays
as light as that module (``tags_tf.data.schema`` imports neither numpy nor TensorFlow).
"""

__all__ = ["Detector", "Segment", "load", "score"]


def __getattr__(name: str):
    if name in __all__:
        from tags_tf import api  # deferred: numpy and the evaluator only when the API is used

        return getattr(api, name)
    raise AttributeError(f"module 'tags_tf' has no attribute {name!r}")
