"""Shared fixtures: the real DFT data in ../shared/data and fresh stores."""

from __future__ import annotations

from pathlib import Path

import pytest

import pesdata

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def data() -> Path:
    """The shared data directory."""
    if not DATA.is_dir():
        pytest.fail(f"real data set not found at {DATA}")
    return DATA


@pytest.fixture
def store(tmp_path):
    """A new, empty store."""
    return pesdata.open_store(tmp_path / "store", create=True)
