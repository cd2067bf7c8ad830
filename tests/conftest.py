"""Shared fixtures and helpers: the real DFT data in ../shared/data, fresh stores, EMT-labelled
Cu cells and the descriptor configs several test modules use (import them from here, never
from another test module)."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

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


# -- test data shared by several test modules (plain functions and constants) ----------------

#: A small ACSF config on Cu (4 G2, 3 G4): the descriptor of the linear and HDNN unit tests.
CU_ACSF_CONFIG = {"descriptor": "acsf", "species": ["Cu"], "r_cut": 4.5,
                  "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.3, 4.0], [0.05, 0.0]],
                  "g4_params": [[0.01, 1, 1], [0.01, 1, -1], [0.01, 4, 1]]}

#: A smaller one (3 G2, 1 G4): training through the store, the CLI and the model registry.
CU_ACSF_SMALL_CONFIG = {"descriptor": "acsf", "species": ["Cu"], "r_cut": 4.5,
                        "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.05, 0.0]],
                        "g4_params": [[0.01, 1, 1]]}


def emt(n: int, seed: int) -> list:
    """``n`` rattled, slightly strained 32-atom Cu cells labelled by EMT (energy, forces)."""
    out = []
    rng = np.random.default_rng(seed)
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True) * (2, 2, 2)
        a.rattle(0.08, seed=seed * 100 + k)
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def emt_cells(n: int, seed: int = 0, size=(2, 2, 2), rattle: float = 0.05) -> list:
    """``n`` distinct rattled Cu cells labelled by EMT (energy, forces, stress)."""
    out = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * size
        a.rattle(rattle, seed=seed * 1000 + k)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        out.append(a)
    return out


def contract_structures() -> list:
    """Real structures for descriptor contract tests: an mlearn Si surface slab (24 atoms),
    a TiO2 cell (24 atoms, Ti and O) and a non-periodic 10-atom Si cluster."""
    si = ase.io.read(DATA / "mlearn/Si_test.extxyz", "8")
    tio2 = ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", "0")
    cluster = si[:10]
    cluster.pbc = False
    return [si, tio2, cluster]


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: a SIGALRM interrupts a runaway parser or reader loop."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
