"""Shared fixtures: the real DFT data in ../shared/data and fresh stores."""

from __future__ import annotations

import shutil
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


@pytest.fixture(scope="session")
def si_store(tmp_path_factory):
    """A store holding mlearn Si training data (version 2), shared read-only by tests."""
    path = tmp_path_factory.mktemp("si") / "store"
    st = pesdata.open_store(path, create=True)
    st.curate([DATA / "mlearn" / "Si_training.extxyz"], method="PBE")
    return st


@pytest.fixture
def copy_store(tmp_path):
    """Copy a store directory so a test can write to it."""

    def _copy(st) -> pesdata.Store:
        dst = tmp_path / "copy"
        shutil.copytree(st.uri, dst)
        return pesdata.open_store(dst)

    return _copy
