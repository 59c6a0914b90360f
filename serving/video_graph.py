"""The graph of the video signatures (``encode``, ``encode_jpeg``, ``detect_video``):
request size checks, JPEG decoding, resizing, snippet windows, the encoder, padding of
the last snippet -- core TF ops only, so a stock TF Serving runs them.

Order inside a request: the payload's byte count is checked first (a JPEG request's
string lengths, a raw request's declared shape), then each JPEG's declared size from its
header (``ExtractJpegShape``), and only then is anything decoded; a refused request fails
with InvalidArgumentError (TF Serving: INVALID_ARGUMENT) whose message starts with the
signature and the input.

Windows: a chunk of F frames starting at a snippet start holds the snippets that start
every S frames and fit whole: ``k = max(0, (F - N) // S + 1)``; the client cuts chunks
so that consecutive chunks continue the windows exactly (``serving.video_client``).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from serving import signatures
from serving.video_layout import VideoLayout

ENCODER_BATCH = 8  # clips per encoder call inside a request (bounds the activations' memory)


def _assert(cond, *message) -> tf.Operation:
    return tf.debugging.Assert(cond, list(message), summarize=8)


def check_jpeg_bytes(jpegs: tf.Tensor, limit: int, signature: str) -> tf.Operation:
    """The request's JPEG bytes (sum of the string lengths) are at most ``limit``."""
    total = tf.reduce_sum(tf.cast(tf.strings.length(jpegs), tf.int64))
    return _assert(total <= limit, f"{signature}: {signatures.JPEG_FRAMES} hold", total,
                   f"bytes, above this model's limit of {limit} per request; send smaller chunks")


def check_raw_bytes(frames: tf.Tensor, limit: int, signature: str) -> tf.Operation:
    """The request's raw frames (B * F * H * W * 3 bytes) are at most ``limit``."""
    total = tf.reduce_prod(tf.cast(tf.shape(frames), tf.int64))
    return _assert(total <= limit, f"{signature}: {signatures.FRAMES} hold", total,
                   f"bytes, above this model's limit of {limit} per request; send fewer frames per chunk")


def fit_frames(frames: tf.Tensor, layout: VideoLayout) -> tf.Tensor:
    """(n, h, w, 3) uint8 of one size -> (n, H, W, 3): unchanged at the layout's size,
    else resized as ``layout.resize_mode`` says (crop: the shorter side covers H x W,
    keeping the aspect ratio, then a centre crop -- ``beam.video_decode``'s plan; the
    interpolation is TF's (:func:`_resize`), not PyAV's, so only frames already at H x W
    match ``beam.extract_features`` bit for bit)."""
    big_h, big_w = layout.height, layout.width
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]

    def resized():
        x = tf.cast(frames, tf.float32)
        if layout.resize_mode == "stretch":
            y = _resize(x, big_h, big_w, h, w)
        else:
            hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
            scale = tf.maximum(big_h / hf, big_w / wf)
            sh = tf.maximum(big_h, tf.cast(tf.round(hf * scale), tf.int32))
            sw = tf.maximum(big_w, tf.cast(tf.round(wf * scale), tf.int32))
            y = _resize(x, sh, sw, h, w)
            top, left = (sh - big_h) // 2, (sw - big_w) // 2
            y = y[:, top:top + big_h, left:left + big_w, :]
        return tf.cast(tf.clip_by_value(tf.round(y), 0.0, 255.0), tf.uint8)

    same = ((h == big_h) & (w == big_w)) | (shape[0] == 0)
    out = tf.cond(same, lambda: frames, resized)
    return tf.reshape(out, [-1, big_h, big_w, 3])


def _resize(x: tf.Tensor, to_h, to_w, h, w) -> tf.Tensor:
    """Area averaging when shrinking (exact block means at integer factors, no aliasing
    from 1080p down), bilinear when enlarging."""
    size = tf.stack([to_h, to_w])
    return tf.cond((to_h <= h) & (to_w <= w), lambda: tf.image.resize(x, size, method="area"),
                   lambda: tf.image.resize(x, size, method="bilinear"))


def decode_jpegs(jpegs: tf.Tensor, layout: VideoLayout, limit: int, signature: str) -> tf.Tensor:
    """(B, F) JPEG strings -> (B, F, H, W, 3) uint8, after the byte and pixel checks."""
    with tf.control_dependencies([check_jpeg_bytes(jpegs, limit, signature)]):
        flat = tf.reshape(jpegs, [-1])
    sizes = tf.map_fn(tf.image.extract_jpeg_shape, flat, fn_output_signature=tf.TensorSpec([3], tf.int32))
    pixels = tf.cast(sizes[:, 0], tf.int64) * tf.cast(sizes[:, 1], tf.int64)
    too_big = _assert(tf.reduce_all(pixels <= layout.max_frame_pixels),
                      f"{signature}: a JPEG frame declares more than {layout.max_frame_pixels} pixels; largest",
                      tf.reduce_max(tf.concat([pixels, [0]], 0)))
    with tf.control_dependencies([too_big]):
        flat = tf.identity(flat)
    one = tf.TensorSpec([layout.height, layout.width, 3], tf.uint8)
    frames = tf.map_fn(lambda s: fit_frames(tf.io.decode_jpeg(s, channels=3)[None], layout)[0], flat,
                       fn_output_signature=one)
    shape = tf.shape(jpegs)
    return tf.reshape(frames, tf.concat([shape, [layout.height, layout.width, 3]], 0))


def pad_last_snippet(frames: tf.Tensor, layout: VideoLayout) -> tf.Tensor:
    """(B, F, H, W, 3) -> (B, F + p, H, W, 3): the last frame repeated p times,
    ``beam.video_decode.padding_frames`` (the padded last snippet) in the graph."""
    n, s = layout.snippet_frames, layout.snippet_stride
    f = tf.shape(frames)[1]
    full = tf.where(f < n, 0, (f - n) // s + 1)
    covered, next_start = (full - 1) * s + n, full * s
    extra = ((full == 0) & (f > 0)) | ((full > 0) & (covered < f) & (next_start < f))
    pad = tf.where(extra & layout.pad_last, full * s + n - f, 0)
    return tf.gather(frames, tf.minimum(tf.range(f + pad), f - 1), axis=1)


def encode_clips(clips: tf.Tensor, encoder_fn: Callable, feature_dim: int) -> tf.Tensor:
    """(n, N, H, W, 3) uint8 -> (n, D) float32, at most ``ENCODER_BATCH`` clips per
    encoder call, one call after the other (a loop; no clip is padded or computed twice)."""
    n = tf.shape(clips)[0]
    groups = (n + ENCODER_BATCH - 1) // ENCODER_BATCH
    parts = tf.TensorArray(tf.float32, size=groups, infer_shape=False, element_shape=[None, feature_dim])

    def body(i, parts):
        return i + 1, parts.write(i, encoder_fn(clips[i * ENCODER_BATCH:(i + 1) * ENCODER_BATCH]))

    _, parts = tf.while_loop(lambda i, _: i < groups, body, [tf.constant(0), parts], parallel_iterations=1)
    return tf.reshape(parts.concat(), [-1, feature_dim])


def encode_frames(frames: tf.Tensor, layout: VideoLayout, encoder_fn: Callable) -> tf.Tensor:
    """(B, F, H, W, 3) uint8 -> (B, k, D): the snippets of N frames every S that fit."""
    n, s, d = layout.snippet_frames, layout.snippet_stride, layout.feature_dim
    shape = tf.shape(frames)
    b, f = shape[0], shape[1]
    k = tf.maximum((f - n) // s + 1, 0)
    index = tf.range(k)[:, None] * s + tf.range(n)[None, :]  # (k, N) frame of each snippet's frame
    clips = tf.gather(frames, index, axis=1)  # (B, F, H, W, 3) -> (B, k, N, H, W, 3)
    clips = tf.reshape(clips, [-1, n, layout.height, layout.width, 3])  # (B * k, N, H, W, 3)
    feats = tf.cond(tf.shape(clips)[0] > 0, lambda: encode_clips(clips, encoder_fn, d),
                    lambda: tf.zeros([0, d], tf.float32))
    return tf.ensure_shape(tf.reshape(feats, tf.stack([b, k, d])), [None, None, d])


def make_video_fns(layout: VideoLayout, encoder_fn: Callable, detect: Callable) -> dict[str, Callable]:
    """The bodies of the three signatures: {name: fn} (traced by ExportArchive)."""
    layout_json = layout.to_json()

    def encoded(frames):
        feats = encode_frames(frames, layout, encoder_fn)
        return {
            signatures.SNIPPET_FEATURES: tf.identity(feats, name=signatures.SNIPPET_FEATURES),
            signatures.VIDEO_LAYOUT: tf.fill(tf.shape(frames)[:1], layout_json, name=signatures.VIDEO_LAYOUT),
        }

    def encode(frames):
        with tf.control_dependencies([check_raw_bytes(frames, layout.max_chunk_bytes, signatures.ENCODE)]):
            shape = tf.shape(frames)
        flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))  # (B, F, h, w, 3) -> (B * F, h, w, 3)
        fitted = fit_frames(flat, layout)
        return encoded(tf.reshape(fitted, tf.concat([shape[:2], [layout.height, layout.width, 3]], 0)))

    def encode_jpeg(jpeg_frames):
        return encoded(decode_jpegs(jpeg_frames, layout, layout.max_chunk_bytes, signatures.ENCODE_JPEG))

    def detect_video(jpeg_frames, duration):
        frames = decode_jpegs(jpeg_frames, layout, layout.max_video_bytes, signatures.DETECT_VIDEO)
        feats = encode_frames(pad_last_snippet(frames, layout), layout, encoder_fn)
        return detect(feats, duration)

    return {signatures.ENCODE: encode, signatures.ENCODE_JPEG: encode_jpeg, signatures.DETECT_VIDEO: detect_video}


def input_signatures() -> dict[str, list[tf.TensorSpec]]:
    """{signature: its input TensorSpecs}: B chunks (or videos) of F frames each."""
    return {
        signatures.ENCODE: [tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=signatures.FRAMES)],
        signatures.ENCODE_JPEG: [tf.TensorSpec([None, None], tf.string, name=signatures.JPEG_FRAMES)],
        signatures.DETECT_VIDEO: [tf.TensorSpec([None, None], tf.string, name=signatures.JPEG_FRAMES),
                                  tf.TensorSpec([None], tf.float32, name=signatures.DURATION)],
    }
