"""Shared test fixtures and helpers."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The ../shared folder (or $TAGS_SHARED_DIR)."""
    env = os.environ.get("TAGS_SHARED_DIR")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture
def shared():
    d = shared_dir()
    if not d.is_dir():
        pytest.skip(f"shared data folder not found at {d} (set TAGS_SHARED_DIR to run this test)")
    return d
