"""JSON files: reading user-supplied ones with one-line errors that name the file, and
the one atomic write (no TensorFlow import: the evaluator uses it)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


class _DuplicateKey(ValueError):
    pass


class RepeatedKeys(dict):
    """A JSON object that listed some key more than once (``duplicates="mark"``).

    Holds the *first* value of each key; ``repeated`` is ``{key: times listed}`` so the
    caller can reject the affected entries instead of silently keeping one of them.
    """

    repeated: dict[str, int]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _mark_repeated(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    repeated: dict[str, int] = {}
    for key, value in pairs:
        if key in out:
            repeated[key] = repeated.get(key, 1) + 1
        else:
            out[key] = value
    if not repeated:
        return out
    marked = RepeatedKeys(out)
    marked.repeated = repeated
    return marked


def repeated_keys(obj: Any) -> dict[str, int]:
    """``{key: times listed}`` of an object read with ``duplicates="mark"`` ({} if none)."""
    return dict(getattr(obj, "repeated", {})) if isinstance(obj, RepeatedKeys) else {}


def read_json(path: str | os.PathLike, error: type[Exception], duplicates: str = "error") -> Any:
    """Parses ``path``; a missing, unreadable or invalid file raises ``error`` with
    ``"<path>: <problem>"``.

    A key repeated inside one JSON object is an error with ``duplicates="error"``
    (``json`` would keep the last value and silently drop the others, e.g. a video id
    listed twice); with ``duplicates="mark"`` such objects are returned as
    :class:`RepeatedKeys` so a reader can reject just the entries concerned.
    Numbers too large for a float and nesting too deep for the parser are one-line
    errors too (never an OverflowError or RecursionError traceback).
    """
    path = os.fspath(path)
    hook = {"error": _unique_keys, "mark": _mark_repeated}[duplicates]
    try:
        with open(path, "rb") as fobj:
            return json.loads(fobj.read(), object_pairs_hook=hook)
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
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to read (arrays/objects inside each other "
                    "thousands of levels deep)") from None
    except ValueError as err:  # e.g. an integer literal with more digits than Python allows
        raise error(f"{path}: invalid JSON ({' '.join(str(err).split())})") from None


def write_json(path: str | os.PathLike, obj: Any, *, lines: bool = False, indent: int | None = None,
               sort_keys: bool = True, allow_nan: bool = True) -> None:
    """Writes ``obj`` as JSON (``lines=True``: an iterable of objects, one per line) so that
    ``path`` holds either its old content or the whole new one: a temporary file in the
    same directory, flushed and fsynced, then ``os.replace``d (atomic on POSIX and
    Windows). ``allow_nan=False`` refuses NaN and infinity (not JSON; submissions). The one atomic JSON write
    of the package (runs, checkpoints' bookkeeping, submissions)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if lines:
                f.writelines(json.dumps(row, sort_keys=sort_keys, allow_nan=allow_nan) + "\n" for row in obj)
            else:
                json.dump(obj, f, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
