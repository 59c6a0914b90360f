"""Reading user-supplied JSON files with one-line errors that name the file (no
TensorFlow import: the evaluator uses it)."""

from __future__ import annotations

import json
import os
from typing import Any


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_json(path: str | os.PathLike, error: type[Exception]) -> Any:
    """Parses ``path``; a missing, unreadable or invalid file raises ``error`` with
    ``"<path>: <problem>"``. A key repeated inside one JSON object is an error too:
    ``json`` would keep the last value and silently drop the others (e.g. a video id
    listed twice in an annotation or results file)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fobj:
            return json.loads(fobj.read(), object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        raise error(
            f"{path}: key {err.args[0]!r} appears twice in one JSON object; each key "
            "(e.g. a video id) must be listed once, or its entries would be silently merged"
        ) from None
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read file ({err})") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}: invalid JSON ({err})") from None
