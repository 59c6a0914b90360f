"""Reading user-supplied JSON files with one-line errors that name the file (no
TensorFlow import: the evaluator uses it)."""

from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str | os.PathLike, error: type[Exception]) -> Any:
    """Parses ``path``; a missing, unreadable or invalid file raises ``error`` with
    ``"<path>: <problem>"``."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fobj:
            return json.loads(fobj.read())
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read file ({err})") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}: invalid JSON ({err})") from None
