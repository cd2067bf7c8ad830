"""Hypothesis-generated extxyz text through ``curate`` (issue 19, hostile input).

Valid frames, then mutated (random header keys and values, random tokens, lying Properties
and atom counts, NaN/inf/1e308, dropped and repeated lines, random truncation), each curated
into a fresh store. Invariant: either a CurateReport whose counts add up and whose committed
rows read back, or a one-line PesdataError and no new version — never another exception.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pesdata
from pesdata.errors import PesdataError, ValidationError
from pesdata.testing.strategies import extxyz_frames, hostile_extxyz

from .conftest import deadline


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="pesdata-hyp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _curate(workdir: Path, text: str, quarantine: bool):
    """Curate ``text`` into a fresh store; (outcome, store, input path)."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    path = folder / "input.xyz"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    store = pesdata.open_store(folder / "store", create=True)
    with deadline(60), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in 1e308 arithmetic
        try:
            outcome = store.curate(str(path), method="DFT", quarantine=quarantine)
        except PesdataError as exc:
            outcome = exc
    return outcome, store, path


def _check(outcome, store, path, quarantine: bool) -> None:
    versions = len(store.table.dataset().versions())
    if isinstance(outcome, PesdataError):
        message = str(outcome)
        assert "\n" not in message and 0 < len(message) < 2000, message
        assert str(path) in message, message  # names the file (and frame, field)
        assert versions == 1, "a failed curate left a version behind"
        if isinstance(outcome, ValidationError):
            assert not quarantine and outcome.report.rejected
        return
    report = outcome
    assert report.added + report.duplicates + report.relabelled == report.read - len(
        report.rejected
    ), report.summary()
    assert quarantine or not report.rejected
    for entry in report.rejected:
        assert entry["source"].startswith(f"{path}#") and entry["reasons"]
        assert all(r["field"] and r["message"] for r in entry["reasons"])
    snap = pesdata.open_store(store.root).read()
    assert versions == (2 if report.committed else 1)
    assert snap.count() == report.added
    if report.added:  # committed rows read back: finite geometry, one row per id
        table = snap.table(columns=["id", "positions", "source"]).to_pylist()
        assert len({r["id"] for r in table}) == len(table)
        for row in table:
            assert np.isfinite(np.asarray(row["positions"], dtype=float)).all()
            assert row["source"].startswith(f"{path}#")
        atoms = snap.to_atoms()
        assert len(atoms) == report.added
        assert all(np.isfinite(a.positions).all() and len(a) for a in atoms)


@settings(max_examples=100, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=hostile_extxyz(), quarantine=st.booleans())
def test_hostile_extxyz_through_curate(workdir, text, quarantine):
    outcome, store, path = _curate(workdir, text, quarantine)
    _check(outcome, store, path, quarantine)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=extxyz_frames())
def test_valid_generated_frames_are_committed(workdir, text):
    """The generator's valid text curates cleanly: the mutations above are what breaks it."""
    outcome, store, path = _curate(workdir, text, quarantine=False)
    assert not isinstance(outcome, PesdataError), str(outcome)
    _check(outcome, store, path, quarantine=False)
    assert outcome.committed and outcome.added >= 1
