"""Shared fixtures: the real-data folder (skips cleanly when PLAYNEXT_DATA_DIR is unset)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = os.environ.get("PLAYNEXT_DATA_DIR")
    if not root:
        pytest.skip("PLAYNEXT_DATA_DIR not set: real-data test skipped")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"PLAYNEXT_DATA_DIR={root} is not a folder")
    return path
