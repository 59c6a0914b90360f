"""The identity of a run's dataset, kept in the run directory and checked on restart.

``dataset.json`` holds the class names, the videos per subset, the feature width, a
SHA-256 of the shards' manifest (canonical JSON) and the size of every shard file. A restart or ``--resume`` with
shards that differ in any of them is refused with a one-line error, so one run never
trains epoch 1 on one dataset and epoch 2 on another (or overwrites class_names.json).
"""

from __future__ import annotations

import hashlib
import json
import os

from tags_tf.data.jsonio import write_json
from tags_tf.data.schema import Manifest
from tags_tf.data.tfrecord import verify_shards

FINGERPRINT_NAME = "dataset.json"


class DatasetMismatchError(FileExistsError):
    """The run directory was trained on other shards (one-line message)."""


def dataset_fingerprint(manifest: Manifest, shard_dir: str = "") -> dict:
    """What identifies a shard directory's data (``shard_dir`` is informational only).

    The hash is of the manifest's JSON object as read (Manifest.to_dict round-trips the
    file), so fingerprints saved by earlier versions still match.
    """
    canonical = json.dumps(manifest.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    return {
        "class_names": list(manifest.class_names),
        "feature_dim": manifest.feature_dim,
        "videos": {name: s.get("videos") for name, s in sorted((manifest.subsets or {}).items())},
        "manifest_sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        "shard_bytes": _shard_sizes(manifest, shard_dir),
        "shard_dir": os.path.abspath(shard_dir) if shard_dir else "",
    }


def _shard_sizes(manifest: Manifest, shard_dir: str) -> dict[str, int | None]:
    """{shard file: size in bytes} of the files the manifest lists (a cheap data identity:
    a stat per file, no read; None for a file not found)."""
    out = {}
    for sub in (manifest.subsets or {}).values():
        for name in sub.get("files", []):
            path = os.path.join(shard_dir, name)
            out[name] = os.path.getsize(path) if shard_dir and os.path.isfile(path) else None
    return dict(sorted(out.items()))


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    a, b = list(old.get("class_names") or []), new["class_names"]
    if a != b:
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        out.append(f"class names ({len(a)} vs {len(b)}; first difference at id {first}: "
                   f"{a[first] if first < len(a) else None!r} vs {b[first] if first < len(b) else None!r})")
    if old.get("feature_dim") != new["feature_dim"]:
        out.append(f"feature dim {old.get('feature_dim')} vs {new['feature_dim']}")
    if old.get("videos") != new["videos"]:
        out.append(f"videos per subset {old.get('videos')} vs {new['videos']}")
    if not out and old.get("manifest_sha256") != new["manifest_sha256"]:
        out.append("manifest contents (same classes and counts, other data or sources)")
    if not out and old.get("shard_bytes", new["shard_bytes"]) != new["shard_bytes"]:
        out.append("shard files (names or sizes)")
    return out


def check_fingerprint(workdir: str, fingerprint: dict) -> bool:
    """Raises DatasetMismatchError when ``workdir`` was trained on other shards.

    Returns True when ``workdir`` already has a fingerprint (it matched), False when it
    has none yet (a new run, or one from before fingerprints: then it is adopted).
    """
    path = os.path.join(workdir, FINGERPRINT_NAME)
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetMismatchError(f"{path}: unreadable dataset fingerprint ({e}); "
                                   "use another --workdir") from None
    diff = _differences(old, fingerprint)
    if diff:
        raise DatasetMismatchError(
            f"{path}: this run was trained on other shards ({old.get('shard_dir') or '?'}); "
            f"--dataset gives {fingerprint['shard_dir'] or '?'}, which differs in {'; '.join(diff)}. "
            "Use another --workdir, or the same shards to resume")
    return True


def verify_shard_files(manifest: Manifest, shard_dir: str, subsets) -> str:
    """Checks every shard file of ``subsets`` (None entries skipped) against the sizes and
    SHA-256 digests in the manifest's ``shard_checksums`` (tags_tf.data.tfrecord.verify_shards;
    raises its ShardChecksumError naming the file); returns a line saying what was checked."""
    if not manifest.shard_checksums:
        return f"{shard_dir}: manifest.json has no shard checksums (written before they were recorded): not verified"
    names = [f for s in subsets if s for f in (manifest.subsets or {}).get(s, {}).get("files", [])]
    n = verify_shards(shard_dir, manifest.shard_checksums, names)
    return f"{shard_dir}: {n} shard files match the sizes and SHA-256 of manifest.json"


def save_fingerprint(workdir: str, fingerprint: dict) -> None:
    path = os.path.join(workdir, FINGERPRINT_NAME)
    write_json(path, fingerprint, indent=2)
