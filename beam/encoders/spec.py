"""The encoder SPEC grammar: ``KIND:NAME[:key=value]...`` -> :class:`EncoderSpec`.

Options are the trailing ``key=value`` parts, so NAME may itself contain ``:`` as in
``savedmodel:gs://bucket/model``; each KIND accepts only its own option keys. Also the
error every encoder raises and the option value parsers the backends share. Pure
Python: parsing a spec imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import re

KINDS = ("movinet", "keras_app", "savedmodel")
_OPTION_KEYS = {
    "movinet": {"checkpoint", "size", "causal", "num_classes", "conv_type", "fast_conv"},
    "keras_app": {"weights", "size", "alpha"},
    "savedmodel": {"signature", "input", "output", "size", "input_range"},
}
_OPTION_RE = re.compile(r"^([a-z_]+)=(.*)$")


class EncoderError(ValueError):
    """A bad encoder spec or model (message names the spec and what was expected)."""


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """A parsed SPEC string: ``kind``, ``name`` and the ``key=value`` options."""

    kind: str
    name: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> "EncoderSpec":
        kind, sep, rest = str(spec).partition(":")
        if not sep or kind not in KINDS or not rest:
            raise EncoderError(
                f"encoder spec {spec!r}: expected KIND:NAME[:key=value...] with KIND one of {KINDS}, "
                "e.g. movinet:a0:checkpoint=PATH, keras_app:mobilenet_v3_small, savedmodel:/path/to/model"
            )
        parts: list[str] = []
        for part in rest.split(":"):  # "gs://b/m" stays one part (URL schemes in names and values)
            if part.startswith("//") and parts:
                parts[-1] += ":" + part
            else:
                parts.append(part)
        options: list[tuple[str, str]] = []
        while len(parts) > 1 and _OPTION_RE.match(parts[-1]):  # peel key=value parts off the right
            key, value = _OPTION_RE.match(parts.pop()).groups()
            if key not in _OPTION_KEYS[kind]:
                raise EncoderError(
                    f"encoder spec {spec!r}: unknown option {key!r} for {kind}; known: {sorted(_OPTION_KEYS[kind])}"
                )
            if any(k == key for k, _ in options):
                raise EncoderError(f"encoder spec {spec!r}: option {key!r} given twice")
            options.append((key, value))
        name = ":".join(parts)
        if not name:
            raise EncoderError(f"encoder spec {spec!r}: empty model name/path")
        return cls(kind, name, tuple(sorted(options)))

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def __str__(self) -> str:
        return ":".join([self.kind, self.name] + [f"{k}={v}" for k, v in self.options])


def as_spec(spec: str | EncoderSpec) -> EncoderSpec:
    """``spec`` parsed, unless it already is an :class:`EncoderSpec`."""
    return spec if isinstance(spec, EncoderSpec) else EncoderSpec.parse(spec)


def parse_size(spec: EncoderSpec, default: tuple[int, int] | None) -> tuple[int, int] | None:
    """Option ``size=H`` or ``size=HxW`` as (H, W); ``default`` when absent."""
    raw = spec.get("size")
    if raw is None:
        return default
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", raw)
    if not m or int(m.group(1)) < 1:
        raise EncoderError(f"encoder spec {spec}: size must be H or HxW (positive ints), got {raw!r}")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def parse_bool(spec: EncoderSpec, key: str, default: bool) -> bool:
    """Option ``key=true|false`` (also 1/0, yes/no); ``default`` when absent."""
    raw = spec.get(key)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise EncoderError(f"encoder spec {spec}: {key} must be true/false, got {raw!r}")
