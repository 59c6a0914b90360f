"""``--class_map``: class names in id order from any of the files users keep them in."""

from __future__ import annotations

import csv
import json

from apache_beam.io.filesystems import FileSystems


def load_class_map(path: str) -> list[str]:
    """Class names in id order from ``path``.

    Accepted: a manifest.json of earlier shards (its ``class_names``), a JSON list of
    names, a JSON object ``{name: id}`` (ids 0..K-1), a BSN ``action_name.csv`` (header
    ``action``) or a text file with one name per line. The file's order defines the ids:
    to keep the evaluator's ids (sorted names of the annotation file) pass the training
    shards' manifest.json, not BSN's action_name.csv (which is not sorted).
    Raises ValueError naming the file.
    """
    try:
        with FileSystems.open(path) as f:
            text = f.read().decode("utf-8")
    except Exception as e:
        raise ValueError(f"--class_map {path}: cannot read ({e})") from e
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--class_map {path}: invalid JSON ({e})") from e
        if isinstance(data, dict) and "class_names" in data:
            data = data["class_names"]
        if isinstance(data, dict):
            ids = sorted(data.values())
            if ids != list(range(len(ids))):
                raise ValueError(f"--class_map {path}: ids must be 0..{len(ids) - 1}, got {ids[:5]}...")
            names = [n for n, _ in sorted(data.items(), key=lambda kv: kv[1])]
        elif isinstance(data, list) and all(isinstance(n, str) for n in data):
            names = list(data)
        else:
            raise ValueError(f"--class_map {path}: expected a list of names or {{name: id}}")
    else:
        rows = [r[0].strip() for r in csv.reader(text.splitlines()) if r and r[0].strip()]
        if path.lower().endswith(".csv") and rows and rows[0].lower() in ("action", "name", "class", "label"):
            rows = rows[1:]
        names = rows
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--class_map {path}: expected unique, non-empty class names")
    return names
