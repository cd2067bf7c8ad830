"""The MD explorer: frame counts and tags, determinism, temperature, blow-ups, parameters.

References are independent of the explorer: frame counts from the parameters, the kinetic
temperature of a plain ASE Langevin run and the displacements measured with numpy on the
yielded frames, strains recovered from the copies' cells with numpy, force evaluations counted
by the test's own calculator wrapper.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from pesdata.errors import ParameterError
from pesdata.explore import Explorer, get_explorer
from pesdata.explore.md import MDExplorer

from .conftest import emt


def cu(size=(2, 2, 2)):
    """A perfect fcc Cu cell (32 atoms for 2x2x2)."""
    return bulk("Cu", "fcc", a=3.61, cubic=True) * size


class Counting(Calculator):
    """EMT that counts its evaluations and can turn NaN or raise after ``k`` of them."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, nan_after=None, raise_after=None, huge_after=None):
        super().__init__()
        self.inner = EMT()
        self.calls = 0
        self.nan_after, self.raise_after, self.huge_after = nan_after, raise_after, huge_after

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.raise_after is not None and self.calls > self.raise_after:
            raise RuntimeError("SCF did not converge")
        self.inner.calculate(self.atoms, ["energy", "forces"], all_changes)
        energy, forces = self.inner.results["energy"], self.inner.results["forces"].copy()
        if self.nan_after is not None and self.calls > self.nan_after:
            forces[3, 1] = np.nan
        if self.huge_after is not None and self.calls > self.huge_after:
            forces[0, 0] = 1e3
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


# -- counts, tags, geometry only -----------------------------------------------------------------

def test_frame_count_tags_and_geometry_only():
    seeds = [cu(), cu()[:-1]]  # a perfect cell and one with a vacancy
    md = MDExplorer(temperatures=(300, 900.0), steps=30, interval=10, rattle=0.05, strain=0.02,
                    copies=1)
    frames = list(md.explore(EMT(), seeds, seed=3))
    assert len(frames) == 2 * (1 + 1) * 2 * (30 // 10)
    assert md.stopped_ == []
    assert md.n_calls_ == 2 * 2 * 2 * (30 + 1)  # one force evaluation per step, plus the first
    groups = {}
    for atoms in frames:
        info = atoms.info
        assert {"explorer", "group", "config_type", "step", "temperature"} <= set(info)
        assert info["explorer"] == "md"
        t = info["temperature"]
        assert t in (300.0, 900.0)
        assert info["config_type"] == f"md-{t:g}K"
        assert info["step"] in (10, 20, 30)
        groups.setdefault(info["group"], []).append(info["step"])
        assert atoms.calc is None
        assert "momenta" not in atoms.arrays
        assert set(atoms.arrays) == {"numbers", "positions"}
        assert len(atoms) == len(seeds[info["seed_index"]])
        assert np.isfinite(atoms.positions).all()
    assert sorted(groups) == sorted(
        f"md-{i}{'' if k == 0 else f'.{k}'}-{t}K" for i in (0, 1) for k in (0, 1)
        for t in (300, 900))
    assert all(steps == [10, 20, 30] for steps in groups.values())
    assert frames[0].info["group"] == "md-0-300K"  # order: seed, copy, temperature, step
    assert seeds[0].calc is None and np.allclose(seeds[0].positions, cu().positions)


def test_steps_not_a_multiple_of_interval():
    frames = list(MDExplorer(steps=25, interval=10).explore(EMT(), cu(), seed=0))
    assert [f.info["step"] for f in frames] == [10, 20]


def test_copies_are_strained_within_bounds_and_rattled():
    seed_atoms = cu()
    md = MDExplorer(steps=1, interval=1, rattle=0.1, strain=0.04, copies=3)
    copies = [md._copy(seed_atoms, 0, 0, k) for k in (1, 2, 3)]
    for atoms in copies:
        # the deformation that maps the seed's cell onto the copy's: a symmetric strain
        deform = np.linalg.solve(seed_atoms.cell.array, atoms.cell.array)
        eps = deform - np.eye(3)
        assert np.allclose(eps, eps.T)
        assert 0 < np.abs(eps).max() <= 0.04
        noise = atoms.positions - seed_atoms.positions @ deform
        assert 0.05 < noise.std() < 0.15  # σ = 0.1 Å over 96 components
    assert not np.allclose(copies[0].positions, copies[1].positions)
    assert np.allclose(md._copy(seed_atoms, 0, 0, 1).positions, copies[0].positions)


# -- determinism -----------------------------------------------------------------------------

def test_same_seed_same_frames_other_seed_other_frames():
    md = MDExplorer(temperatures=(600,), steps=20, interval=10, rattle=0.02, copies=1)
    a = list(md.explore(EMT(), [cu()], seed=7))
    b = list(md.explore(EMT(), [cu()], seed=7))
    c = list(md.explore(EMT(), [cu()], seed=8))
    assert len(a) == len(b) == len(c) == 4
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)
        assert x.info == y.info
    for x, z in zip(a, c, strict=True):
        assert np.abs(x.positions - z.positions).max() > 1e-3


def test_temperatures_of_the_ladder_are_independent_of_each_other():
    """A trajectory's frames do not depend on the other temperatures of the ladder."""
    one = list(MDExplorer(temperatures=(900,), steps=10, interval=5).explore(EMT(), cu(), 1))
    two = list(MDExplorer(temperatures=(900, 300), steps=10, interval=5).explore(EMT(), cu(), 1))
    for x, y in zip(one, two[:2], strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)
    assert not np.allclose(two[0].positions, two[2].positions)


# -- physics ---------------------------------------------------------------------------------

def _msd(frames, start):
    return float(np.mean([np.sum((f.positions - start.positions) ** 2, axis=1).mean()
                          for f in frames]))


def test_hotter_runs_move_atoms_further():
    start = cu()
    md = MDExplorer(temperatures=(300, 1500), steps=300, interval=20, timestep=2.0,
                    friction=0.05)
    frames = list(md.explore(EMT(), [start], seed=0))
    cold = [f for f in frames if f.info["temperature"] == 300]
    hot = [f for f in frames if f.info["temperature"] == 1500]
    assert len(cold) == len(hot) == 15
    msd_cold, msd_hot = _msd(cold[5:], start), _msd(hot[5:], start)
    # harmonic solid: the mean square displacement grows about linearly with T
    assert msd_hot > 2.5 * msd_cold, (msd_cold, msd_hot)
    assert 1e-3 < msd_cold < 0.1


def test_thermostat_reaches_its_temperature():
    """Kinetic temperature from central differences of the yielded positions (frames carry no
    velocities) after equilibration: near the thermostat's 800 K."""
    start = cu((3, 3, 3))
    frames = list(MDExplorer(temperatures=(800,), steps=300, interval=1, timestep=2.0,
                             friction=0.05).explore(EMT(), [start], seed=2))
    dt = 2.0 * units.fs
    masses = start.get_masses()[:, None]
    kin = [0.5 * float(np.sum(masses * ((frames[k + 1].positions - frames[k - 1].positions)
                                        / (2 * dt)) ** 2))
           for k in range(100, len(frames) - 1, 4)]
    t_kin = 2 * np.mean(kin) / (3 * len(start) * units.kB)
    assert 650 < t_kin < 950, t_kin
