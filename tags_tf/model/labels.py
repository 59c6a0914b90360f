"""Label assignment (paper Sec. 3.3, Fig. 3a): ground-truth segments -> per-snippet targets.

Pure TensorFlow ops with no data-dependent Python control flow, so it runs inside
``tf.data``, inside ``compute_loss`` and under ``tf.function`` for any T and scale set.

Rules (docs/design.md):
- Snippet ``t`` of ``T`` covers normalized time ``[t/T, (t+1)/T)``; it belongs to an
  instance when its centre ``(t + 0.5)/T`` lies in ``[start, end]`` (normalized by the
  duration). An instance shorter than one snippet still gets one: the snippet that
  contains its midpoint (so zero-length annotations are kept too).
- Segments are clipped to ``[0, duration]``. An instance that starts at or after the
  end of the video, ends at or before 0, has ``end < start`` or is padding (label < 0)
  is ignored.
- Overlapping instances: a snippet covered by several instances is assigned to the
  *shortest* one (the most specific; ties go to the first). Its class and its mask row
  come from that instance. Every instance keeps its full mask, so the masks of
  overlapping instances overlap; every instance that owns at least one snippet is
  used (the public code keeps only the last instance of each video).
- Background snippets get class ``K`` and an all-zero mask row; ``fg`` marks the
  snippets that own an instance (the mask losses use only those).
"""

from __future__ import annotations

import tensorflow as tf

from tags_tf.config import ModelConfig


def assign_targets_batched(
    segments: tf.Tensor,
    labels: tf.Tensor,
    duration: tf.Tensor,
    num_snippets: int,
    num_classes: int,
) -> dict[str, tf.Tensor]:
    """Targets for a batch of videos at one scale.

    Args:
      segments: (B, N, 2) float, start/end in seconds; padded rows have label -1.
      labels: (B, N) int, class ids in [0, K) or -1 for padding.
      duration: (B,) float, video durations in seconds.
      num_snippets: T.
      num_classes: K (the background class id).

    Returns:
      cls_target (B, T) int32 in [0, K]; mask_target (B, T, T) float32 where row t is
      the mask of the instance owning snippet t; fg (B, T) float32.
    """
    segments = tf.cast(segments, tf.float32)
    labels = tf.cast(labels, tf.int32)
    dur = tf.maximum(tf.cast(duration, tf.float32), 1e-6)[:, None]  # (B, 1)
    start, end = segments[..., 0], segments[..., 1]  # (B, N) each
    usable = (labels >= 0) & (end >= start) & (start < dur) & (end > 0.0)  # (B, N)
    s = tf.clip_by_value(start / dur, 0.0, 1.0)  # (B, N) normalized
    e = tf.clip_by_value(end / dur, 0.0, 1.0)
    t_f = float(num_snippets)
    centres = (tf.range(num_snippets, dtype=tf.float32) + 0.5) / t_f  # (T,)
    inside = (centres[None, None, :] >= s[..., None]) & (centres[None, None, :] <= e[..., None])  # (B, N, T)
    mid_idx = tf.clip_by_value(tf.cast(tf.floor((s + e) * 0.5 * t_f), tf.int32), 0, num_snippets - 1)  # (B, N)
    at_mid = tf.equal(tf.range(num_snippets)[None, None, :], mid_idx[..., None])  # (B, N, T)
    cover = (inside | at_mid) & usable[..., None]  # (B, N, T)

    # Owner of each snippet: the covering instance with the smallest length.
    length = tf.where(usable, e - s, tf.float32.max)  # (B, N)
    cost = tf.where(cover, length[..., None], tf.float32.max)  # (B, N, T)
    # argmin over N picks the first minimum on ties. Pad N by one column of +inf so
    # videos without any instance (N = 0) still work.
    cost = tf.pad(cost, [[0, 0], [0, 1], [0, 0]], constant_values=tf.float32.max)  # (B, N+1, T)
    owner = tf.argmin(cost, axis=1, output_type=tf.int32)  # (B, T)
    fg = tf.reduce_any(cover, axis=1)  # (B, T)

    padded_labels = tf.pad(labels, [[0, 0], [0, 1]], constant_values=num_classes)  # (B, N+1)
    cls_target = tf.where(fg, tf.gather(padded_labels, owner, batch_dims=1), num_classes)  # (B, T)
    padded_cover = tf.pad(tf.cast(cover, tf.float32), [[0, 0], [0, 1], [0, 0]])  # (B, N+1, T)
    mask_target = tf.gather(padded_cover, owner, batch_dims=1)  # (B, T, T): row t = owner's cover
    mask_target *= tf.cast(fg, tf.float32)[..., None]
    return {
        "cls_target": tf.cast(cls_target, tf.int32),
        "mask_target": mask_target,
        "fg": tf.cast(fg, tf.float32),
    }


def assign_targets(segments, labels, duration, num_snippets: int, num_classes: int) -> dict[str, tf.Tensor]:
    """Unbatched :func:`assign_targets_batched`: segments (N, 2), labels (N,), duration ()."""
    out = assign_targets_batched(
        tf.convert_to_tensor(segments, tf.float32)[None],  # (N, 2) -> (1, N, 2)
        tf.convert_to_tensor(labels, tf.int32)[None],  # (N,) -> (1, N)
        tf.reshape(tf.convert_to_tensor(duration, tf.float32), [1]),
        num_snippets,
        num_classes,
    )
    return {k: v[0] for k, v in out.items()}


def build_targets(segments, labels, duration, model_cfg: ModelConfig) -> dict[str, tf.Tensor]:
    """Targets at every scale, keyed ``cls_target_s{s}``, ``mask_target_s{s}``, ``fg_s{s}``, ``valid_s{s}``.

    Accepts one video (segments (N, 2)) or a batch (segments (B, N, 2)); the rank of
    ``segments`` must be known statically.
    """
    segments = tf.convert_to_tensor(segments, tf.float32)
    batched = segments.shape.rank == 3
    out = {}
    for s in model_cfg.scales:
        t = model_cfg.snippets(s)
        # A video with duration <= 0 is padding (e.g. the filler rows of a partial
        # batch): all its snippets are invalid.
        real = tf.cast(tf.convert_to_tensor(duration, tf.float32) > 0.0, tf.float32)  # (B,) or ()
        if batched:
            tg = assign_targets_batched(segments, labels, duration, t, model_cfg.num_classes)
            valid = tf.ones(tf.shape(tg["fg"]), tf.float32) * real[:, None]  # (B, T)
        else:
            tg = assign_targets(segments, labels, duration, t, model_cfg.num_classes)
            valid = tf.ones([t], tf.float32) * real  # (T,)
        tg["fg"] = tg["fg"] * valid
        for k, v in tg.items():
            out[f"{k}_s{s}"] = v
        out[f"valid_s{s}"] = valid
    return out
