"""Frozen configuration dataclasses and named presets (anet, thumos, demo).

Defaults live here. A preset is a set of overrides on the defaults, and the command
line (``--set section.key=value``) overrides a preset. Unknown keys are errors.

Scales and snippet counts (see docs/design.md): ``model.base_snippets`` is the
number of snippets at scale 1, and scale ``s`` works on ``s * base_snippets`` snippets,
which reproduces Table 5 of the paper (scales {1}, {1,2}, {1,2,4} -> 100 / 100,200 /
100,200,400 snippets on ActivityNet). Every video is resampled to the finest
resolution ``input_snippets = base_snippets * max(scales)``; scale ``s`` temporally
pools that sequence with stride ``max(scales) // s`` (Eq. 1 "pools the finest
resolution down").

This module imports nothing heavy (no TensorFlow) so the evaluator and the Beam
pipelines can use it.

Presets: :mod:`tags_tf.presets`.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from tags_tf.presets import PRESETS


class ConfigError(ValueError):
    """An override names an unknown key or gives a value of the wrong type."""


# Allowed values of postprocess.mask_source / mask_score (the decoder checks them too).
MASK_SOURCES = ("mask", "actionness", "both")
MASK_SCORES = ("mean", "contrast", "gated", "consensus")
CLASS_FUSIONS = ("none", "external")
BOUNDARY_REGIONS = ("interior", "band")  # loss.boundary
MASK_HEADS = ("paper", "bilinear")  # model.mask_head
POSITION_ENCODINGS = ("sine", "none")  # model.position_encoding
POOL_TYPES = ("avg", "max")  # model.pool_type
SCHEDULES = ("constant", "cosine")  # train.schedule
RECIPES = ("auto", "preset")  # train.recipe
PROTOCOLS = ("anet", "thumos")  # tags_tf.evaluation.metrics.tiou_thresholds_for


def _default_thresholds() -> tuple[float, ...]:
    # Theta = {0.1, 0.15, ..., 0.9} (paper Sec. 4, implementation details).
    return tuple(round(0.1 + 0.05 * i, 2) for i in range(17))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture (paper Sec. 3.1-3.2)."""

    num_classes: int = 200  # K action classes; the background class id is K.
    feature_dim: int = 400  # 400: TSN two-stream (200 RGB + 200 flow); 2048: I3D.
    base_snippets: int = 100  # T at scale 1 (Table 5).
    scales: tuple[int, ...] = (1, 2)  # {1}, {1, 2} (default), {1, 2, 4}.
    embed_dim: int = 512  # C, snippet embedding width.
    num_heads: int = 4  # n_h.
    pool_type: str = "avg"  # temporal pooling P(theta) of Q/K/V: "avg" or "max".
    pool_kernel: int = 0  # 0 -> equal to the stride of each scale.
    pool_padding: int = 0  # symmetric zero padding (in snippets) before pooling.
    position_encoding: str = "sine"  # "sine" or "none" (see layers.encoder)
    mlp_activation: str = "gelu"
    dropout: float = 0.1
    cls_kernel: int = 3  # H_c: 1-D conv kernel of the classification branch.
    mask_kernel: int = 3  # H_b: kernel of the first two of its three 1-D convs.
    # H_b's read-out: "paper" (Eq. 4 as printed, a 1x1 conv to T^s channels: a free
    # weight vector per absolute position) or "bilinear" (query of the predicting
    # snippet . key of the masked position; translation-equivariant). docs/design.md.
    mask_head: str = "bilinear"
    mask_key_dim: int = 128  # d of the bilinear head's query and key.
    mask_hidden_dim: int = 0  # width of H_b's first two convs; 0 = embed_dim (C).
    # Scale of the gradient the mask branch sends into the shared encoder: 0 (default: the
    # mask head learns on the encoder that the classification branch trains; its own
    # weights still learn), 1 (the paper: one network trained end to end). Chosen on
    # validation (docs/design.md).
    mask_trunk_gradient: float = 0.0

    @property
    def input_snippets(self) -> int:
        """Length every video is resampled to (the finest scale)."""
        return self.base_snippets * max(self.scales)

    def snippets(self, scale: int) -> int:
        """T^s, the number of snippets at scale ``scale``."""
        return self.base_snippets * scale

    def pool_stride(self, scale: int) -> int:
        return max(self.scales) // scale


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and hyper-parameters (paper Eq. 5-9)."""

    lambda1: float = 0.4  # focal vs. class-balanced logistic regression (Eq. 5).
    lambda2: float = 0.4  # dice weight (Eq. 6).
    focal_gamma: float = 2.0  # gamma (Eq. 5).
    alpha: float = 10.0  # class-balancing weight of the hard negatives (Eq. 5).
    hard_negative_ratio: float = 0.1  # |N| = max(1, round(K * ratio)) (Eq. 5).
    beta: float = 2.0  # prediction-promotion exponent (Eq. 8).
    delta: float = 0.25  # outer-inner contrast margin (Eq. 7).
    erosion_kernel: int = 7  # Phi, morphological erosion (Eq. 6) of boundary="interior".
    # Region of Eq. 6's boundary IoU: "interior" (the eroded mask, as printed; default,
    # docs/design.md) or "band" (Boundary IoU, the cited metric: the cells within
    # boundary_width * T^s of a boundary).
    boundary: str = "interior"
    boundary_width: float = 0.05
    # Weight of a BCE toward an all-zero mask on background snippets' rows (0, default =
    # the paper: only foreground rows are trained; docs/design.md).
    mask_background: float = 0.0
    mask_bce: float = 1.0  # weight of a BCE on the mask logits added to Eq. 6; 0 = the paper's Eq. 6.
    theta_m: float = 0.5  # mask binarisation threshold (Eq. 9).
    theta_p: float = 0.3  # classification binarisation threshold (Eq. 9).
    topk: int = 40  # top-k snippets of the consistency loss (Eq. 9).
    epsilon: float = 3.354626279025119e-04  # e^-8 (Eq. 6).
    cls_weight: float = 1.0
    mask_weight: float = 1.0  # 0 disables the mask branch's loss (Table 6 ablation).
    pp_weight: float = 1.0
    fc_weight: float = 1.0


@dataclass(frozen=True)
class PostprocessConfig:
    """Inference (paper Sec. 3.4)."""

    mask_thresholds: tuple[float, ...] = field(default_factory=_default_thresholds)
    top_snippets: int = 32  # top-scoring snippets per scale whose masks are decoded.
    soft_nms_sigma: float = 0.5  # Gaussian Soft-NMS (Bodla et al.).
    pre_nms_top_k: int = 1000  # candidates kept (by score) before Soft-NMS.
    max_detections: int = 100  # N detections per video (100 ANet, 200 THUMOS).
    score_threshold: float = 1e-4  # detections below this score are dropped.
    class_fusion: str = "none"  # "none" or "external" video-level classifier scores.
    # "mask": decode the global masks (the paper). "actionness": decode runs of the
    # classification branch's foreground probability instead (the "w/o mask branch"
    # ablation of Table 6; use with loss.mask_weight=0). "both": the candidates of the
    # two pooled before Soft-NMS.
    mask_source: str = "mask"
    # Candidate mask score: "mean" of the mask over the run (the paper, Sec. 3.4);
    # "contrast": that mean minus the mean over ceil(contrast_delta * length) cells on
    # each side, Eq. 7's outer-inner contrast, which does not favour runs cut too short;
    # "gated": runs and mean of the mask gated by local actionness, m[t, k] * (1 - P_bg[k]);
    # "consensus": the contrast averaged over the masks of every snippet in the run.
    # Default "contrast": best on the demo's validation split (docs/design.md).
    mask_score: str = "contrast"
    contrast_delta: float = 0.25
    fusion_top_k: int = 1  # class_fusion="external": each candidate labelled with this many best classes.
    nms_per_class: bool = True  # Soft-NMS within a class (False: across classes).


@dataclass(frozen=True)
class DataConfig:
    """Input pipeline."""

    train_subset: str = "training"
    val_subset: str = "validation"  # model selection (best.keras)
    test_subset: str = "test"  # held out: reported after training when the shards have it
    shuffle_buffer: int = 512
    compression: str = ""  # "" or "GZIP", must match the shards.
    # Scoring protocol of validation, test and tags_tf.evaluate's default: "anet" (tIoU
    # 0.5:0.05:0.95) or "thumos" (0.3:0.1:0.7). Written to the run's config.json.
    protocol: str = "anet"
    # Long videos (tags_tf.data.windows, docs/design.md): 0 = every video resampled
    # whole to model.input_snippets (the paper); W > 0 = windows of W native snippets,
    # overlapping by window_overlap, for training, validation and inference, each resampled
    # to model.input_snippets; a video's detections are pooled and Soft-NMS'd once.
    window_snippets: int = 0
    window_overlap: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe (paper Sec. 4: Adam, 15 epochs)."""

    learning_rate: float = 1e-4
    batch_size: int = 50
    epochs: int = 15
    weight_decay: float = 0.0  # > 0 switches Adam to AdamW.
    clipnorm: float = 0.0  # 0 disables gradient clipping.
    # > 0: keep an exponential moving average of the weights (Polyak averaging, momentum
    # per optimizer step) and validate, checkpoint and export the averaged weights
    # (tags_tf.training.ema). 0 (the paper): the raw weights. docs/design.md.
    ema_momentum: float = 0.0
    # "constant" (the paper) or "cosine": linear warm-up over warmup_fraction of the
    # steps, then cosine decay to final_lr_fraction x learning_rate (tags_tf.training.recipe).
    schedule: str = "constant"
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.0
    min_steps: int = 0  # > 0: more epochs than `epochs` until this many optimizer steps.
    # "auto": a shard directory whose training subset is smaller than reference_videos
    # (the preset's own dataset) gets the recipe fitted to its size (tags_tf.training.recipe.fit);
    # "preset": the preset's recipe as it is (the paper's, for anet and thumos).
    recipe: str = "auto"
    reference_videos: int = 10024  # ActivityNet-1.3 training videos
    fit_steps: int = 280  # optimizer steps of a fitted recipe (docs/training.md)
    # Peak of the fitted recipe's warm-up + cosine (measured: ActivityNet geometry, and THUMOS
    # geometry on windows, where 3e-5 = 3x the paper's THUMOS rate barely learned).
    fit_learning_rate: float = 3e-4
    early_stopping_patience: int = 0  # > 0: stop after this many validations without a better mAP.
    validate_every: int = 1  # epochs between validation runs.
    seed: int = 0


@dataclass(frozen=True)
class TagsConfig:
    name: str = "anet"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def validate(cfg: TagsConfig) -> None:
    m = cfg.model
    if not m.scales or any(s < 1 for s in m.scales) or len(set(m.scales)) != len(m.scales):
        raise ConfigError(f"model.scales must be distinct positive ints, got {m.scales}")
    for s in m.scales:
        if max(m.scales) % s:
            raise ConfigError(f"model.scales: {max(m.scales)} is not a multiple of scale {s}")
        stride = m.pool_stride(s)
        kernel = m.pool_kernel or stride
        out = (m.input_snippets + 2 * m.pool_padding - kernel) // stride + 1
        if out != m.snippets(s):
            raise ConfigError(
                f"pooling (kernel {kernel}, stride {stride}, padding {m.pool_padding}) turns "
                f"{m.input_snippets} snippets into {out}, but scale {s} needs {m.snippets(s)}"
            )
    if m.embed_dim % m.num_heads:
        raise ConfigError(f"model.embed_dim {m.embed_dim} is not divisible by num_heads {m.num_heads}")
    if m.position_encoding not in POSITION_ENCODINGS:
        raise ConfigError(f"model.position_encoding must be one of {POSITION_ENCODINGS}, got {m.position_encoding!r}")
    if m.mask_head not in MASK_HEADS:
        raise ConfigError(f"model.mask_head must be one of {MASK_HEADS}, got {m.mask_head!r}")
    if not 0.0 <= m.mask_trunk_gradient <= 1.0:
        raise ConfigError(f"model.mask_trunk_gradient must be in [0, 1], got {m.mask_trunk_gradient}")
    if m.pool_type not in POOL_TYPES:
        raise ConfigError(f"model.pool_type must be one of {POOL_TYPES}, got {m.pool_type!r}")
    if m.mask_hidden_dim < 0:
        raise ConfigError(f"model.mask_hidden_dim must be >= 0 (0: embed_dim), got {m.mask_hidden_dim}")
    for name in ("num_classes", "feature_dim", "base_snippets", "embed_dim", "num_heads", "mask_key_dim"):
        if getattr(m, name) < 1:
            raise ConfigError(f"model.{name} must be >= 1, got {getattr(m, name)}")
    if cfg.loss.boundary not in BOUNDARY_REGIONS:
        raise ConfigError(f"loss.boundary must be one of {BOUNDARY_REGIONS}, got {cfg.loss.boundary!r}")
    if not 0.0 < cfg.loss.boundary_width < 0.5:
        raise ConfigError(f"loss.boundary_width must be in (0, 0.5), got {cfg.loss.boundary_width}")
    if cfg.loss.mask_background < 0:
        raise ConfigError(f"loss.mask_background must be >= 0, got {cfg.loss.mask_background}")
    if cfg.data.window_snippets < 0 or not 0.0 <= cfg.data.window_overlap < 1.0:
        raise ConfigError("data.window_snippets must be >= 0 (0: whole videos) and data.window_overlap in [0, 1)")
    if cfg.data.protocol not in PROTOCOLS:
        raise ConfigError(f"data.protocol must be one of {PROTOCOLS}, got {cfg.data.protocol!r}")
    validate_postprocess(cfg.postprocess, m.num_classes)
    t = cfg.train
    if t.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {SCHEDULES}, got {t.schedule!r}")
    if not 0.0 <= t.warmup_fraction < 1.0 or not 0.0 <= t.final_lr_fraction <= 1.0:
        raise ConfigError("train.warmup_fraction must be in [0, 1) and train.final_lr_fraction in [0, 1]")
    if not 0.0 <= t.ema_momentum < 1.0:
        raise ConfigError(f"train.ema_momentum must be in [0, 1) (0 = off), got {t.ema_momentum}")
    if t.recipe not in RECIPES:
        raise ConfigError(f"train.recipe must be one of {RECIPES}, got {t.recipe!r}")
    if t.fit_learning_rate <= 0:
        raise ConfigError(f"train.fit_learning_rate must be > 0, got {t.fit_learning_rate}")
    if t.reference_videos < 1 or t.fit_steps < 1:
        raise ConfigError("train.reference_videos and train.fit_steps must be >= 1")
    if t.min_steps < 0 or t.early_stopping_patience < 0:
        raise ConfigError("train.min_steps and train.early_stopping_patience must be >= 0")
    if cfg.train.batch_size < 1 or cfg.train.epochs < 0:
        raise ConfigError("train.batch_size must be >= 1 and train.epochs >= 0")


def validate_postprocess(p: PostprocessConfig, num_classes: int) -> None:
    """The decoder's settings (also checked by ``DetectionDecoder`` itself)."""
    th = p.mask_thresholds
    if not th or any(not 0.0 < t < 1.0 for t in th):
        raise ConfigError(f"postprocess.mask_thresholds must lie in (0, 1), got {tuple(th)}")
    if p.mask_source not in MASK_SOURCES:
        raise ConfigError(f"postprocess.mask_source must be one of {MASK_SOURCES}, got {p.mask_source!r}")
    if p.mask_score not in MASK_SCORES:
        raise ConfigError(f"postprocess.mask_score must be one of {MASK_SCORES}, got {p.mask_score!r}")
    if not 0.0 < p.contrast_delta <= 1.0:
        raise ConfigError(f"postprocess.contrast_delta must be in (0, 1], got {p.contrast_delta}")
    if p.class_fusion not in CLASS_FUSIONS:
        raise ConfigError(f"postprocess.class_fusion must be one of {CLASS_FUSIONS}, got {p.class_fusion!r}")
    if p.soft_nms_sigma <= 0:
        raise ConfigError(f"postprocess.soft_nms_sigma must be > 0 (Gaussian Soft-NMS), got {p.soft_nms_sigma}")
    for name in ("top_snippets", "pre_nms_top_k", "max_detections", "fusion_top_k"):
        if int(getattr(p, name)) < 1:
            raise ConfigError(f"postprocess.{name} must be >= 1, got {getattr(p, name)}")
    if num_classes < 1 or p.fusion_top_k > num_classes:
        raise ConfigError(f"num_classes must be >= 1 and >= postprocess.fusion_top_k {p.fusion_top_k}, "
                          f"got {num_classes}")


def _coerce(key: str, current: Any, value: Any) -> Any:
    """Converts ``value`` (often a string from the command line) to ``current``'s type."""
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as e:
            raise ConfigError(f"{key}: cannot parse {value!r}") from e
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false (True/False), got {value!r}")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an int, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(current, tuple):
        if isinstance(value, (int, float)):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list such as (1, 2), got {value!r}")
        elem = type(current[0]) if current else type(value[0]) if value else int
        return tuple(_coerce(key, elem(0), v) for v in value)
    if isinstance(current, str):
        return str(value)
    raise ConfigError(f"{key}: unsupported type {type(current).__name__}")


def apply_overrides(cfg: TagsConfig, overrides: Mapping[str, Any]) -> TagsConfig:
    """Returns ``cfg`` with ``{"section.key": value}`` overrides applied."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 1 and parts[0] == "name":
            top["name"] = str(value)
            continue
        if len(parts) != 2 or parts[0] not in {f.name for f in dataclasses.fields(cfg)} or parts[0] == "name":
            raise ConfigError(f"unknown config key {key!r}; keys look like 'model.embed_dim' (see tags_tf/config.py)")
        section, name = parts
        sub = getattr(cfg, section)
        if name not in {f.name for f in dataclasses.fields(sub)}:
            known = ", ".join(f.name for f in dataclasses.fields(sub))
            raise ConfigError(f"unknown config key {key!r}; {section} has: {known}")
        sections.setdefault(section, {})[name] = _coerce(key, getattr(sub, name), value)
    new_sections = {s: dataclasses.replace(getattr(cfg, s), **kv) for s, kv in sections.items()}
    return dataclasses.replace(cfg, **top, **new_sections)


def parse_set_args(items: Sequence[str]) -> dict[str, str]:
    """Parses ``["model.embed_dim=256", ...]`` into a dict; malformed items are errors."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def get_config(preset: str = "anet", overrides: Mapping[str, Any] | None = None) -> TagsConfig:
    """The named preset with ``overrides`` applied."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = apply_overrides(TagsConfig(name=preset), PRESETS[preset])
    return apply_overrides(cfg, overrides or {})


def from_dict(d: Mapping[str, Any]) -> TagsConfig:
    """Inverse of ``TagsConfig.to_dict`` (e.g. the config saved beside checkpoints)."""
    flat = {}
    for section, values in d.items():
        if section == "name":
            flat["name"] = values
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"config section {section!r} must be a mapping")
        for k, v in values.items():
            flat[f"{section}.{k}"] = tuple(v) if isinstance(v, list) else v
    return apply_overrides(TagsConfig(), flat)
