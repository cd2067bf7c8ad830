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
    """EMT that counts its evaluations; ``kind`` goes wrong on the evaluations in ``bad``.

    ``kind``: ``"nan"`` (a NaN force component), ``"raise"`` (a RuntimeError), ``"huge"`` (a
    1000 eV/Å force), ``"nan_energy"`` (a NaN energy).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, kind="nan", bad=(), only_requested=False):
        super().__init__()
        self.inner = EMT()
        self.calls = 0
        self.kind, self.bad, self.only_requested = kind, bad, only_requested

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        wrong = self.bad(self.calls) if callable(self.bad) else self.calls in self.bad
        if wrong and self.kind == "raise":
            raise RuntimeError("SCF did not converge")
        self.inner.calculate(self.atoms, ["energy", "forces"], all_changes)
        energy, forces = self.inner.results["energy"], self.inner.results["forces"].copy()
        if wrong and self.kind == "nan":
            forces[3, 1] = np.nan
        if wrong and self.kind == "huge":
            forces[0, 0] = 1e3
        if wrong and self.kind == "nan_energy":
            energy = math.nan
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if self.only_requested:  # a calculator that keeps only what it was asked for
            self.results = {k: v for k, v in self.results.items() if k in properties}


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
    md = MDExplorer(steps=1, interval=1, timestep=0.1, rattle=0.1, strain=0.04, copies=3)
    frames = list(md.explore(EMT(), [seed_atoms], seed=0))  # one 0.1 fs step: ~no motion
    assert [f.info["copy"] for f in frames] == [0, 1, 2, 3]
    assert np.allclose(frames[0].cell, seed_atoms.cell)
    assert np.abs(frames[0].positions - seed_atoms.positions).max() < 0.01
    for atoms in frames[1:]:
        # the deformation that maps the seed's cell onto the copy's: a symmetric strain
        deform = np.linalg.solve(seed_atoms.cell.array, atoms.cell.array)
        eps = deform - np.eye(3)
        assert np.allclose(eps, eps.T)
        assert 0 < np.abs(eps).max() <= 0.04
        noise = atoms.positions - seed_atoms.positions @ deform
        assert 0.07 < noise.std() < 0.13  # σ = 0.1 Å over 96 components
    assert not np.allclose(frames[1].positions, frames[2].positions)


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
    md = MDExplorer(temperatures=(300, 1500), steps=200, interval=20, timestep=2.0,
                    friction=0.05)
    frames = list(md.explore(EMT(), [start], seed=0))
    cold = [f for f in frames if f.info["temperature"] == 300]
    hot = [f for f in frames if f.info["temperature"] == 1500]
    assert len(cold) == len(hot) == 10
    msd_cold, msd_hot = _msd(cold[3:], start), _msd(hot[3:], start)
    # harmonic solid: the mean square displacement grows about linearly with T
    assert msd_hot > 2.5 * msd_cold, (msd_cold, msd_hot)
    assert 1e-3 < msd_cold < 0.1


def test_thermostat_reaches_its_temperature():
    """Kinetic temperature from central differences of the yielded positions (frames carry no
    velocities) after equilibration: near the thermostat's 800 K (a low friction, as the
    position differences of the Langevin integrator read about (1 - γΔt/2) of the velocity)."""
    start = cu((3, 3, 3))
    frames = list(MDExplorer(temperatures=(800,), steps=240, interval=1, timestep=2.0,
                             friction=0.01).explore(EMT(), [start], seed=2))
    dt = 2.0 * units.fs
    masses = start.get_masses()[:, None]
    kin = [0.5 * float(np.sum(masses * ((frames[k + 1].positions - frames[k - 1].positions)
                                        / (2 * dt)) ** 2))
           for k in range(120, len(frames) - 1, 3)]
    t_kin = 2 * np.mean(kin) / (3 * len(start) * units.kB)
    assert 680 < t_kin < 920, t_kin


# -- blow-ups stop one trajectory, never the exploration ----------------------------------------

@pytest.mark.parametrize(("kind", "reason"), [
    ("nan", "non-finite forces on 1 atom(s)"),
    ("raise", "calculator raised RuntimeError: SCF did not converge"),
    ("huge", "force 1000 eV/Å exceeds max_force=50.0"),
    ("nan_energy", "non-finite energy nan"),
])
def test_blow_up_stops_that_trajectory_only(kind, reason):
    calc = Counting(kind)
    md = MDExplorer(temperatures=(300, 600), steps=20, interval=5)
    frames = []
    for frame in md.explore(calc, [cu(), cu()], seed=0):
        frames.append(frame)
        if frame.info["group"] == "md-0-600K" and frame.info["step"] == 10:
            calc.bad = {calc.calls + 3}  # goes wrong at step 13 of this trajectory
    by_group = {}
    for frame in frames:
        by_group.setdefault(frame.info["group"], []).append(frame.info["step"])
    assert by_group == {"md-0-300K": [5, 10, 15, 20], "md-0-600K": [5, 10],
                        "md-1-300K": [5, 10, 15, 20], "md-1-600K": [5, 10, 15, 20]}
    assert md.stopped_ == [{"group": "md-0-600K", "step": 13, "reason": reason}]
    assert md.n_calls_ == calc.calls == 3 * 21 + 14
    assert all(np.isfinite(f.positions).all() for f in frames)


def test_energy_evaluations_are_counted_when_not_cached_with_the_forces():
    calc = Counting(only_requested=True)
    md = MDExplorer(steps=6, interval=2)
    assert len(list(md.explore(calc, [cu()], seed=0))) == 3
    assert md.n_calls_ == calc.calls == 7 + 3  # forces at every step, energies at the frames


def test_calculator_broken_for_good_stops_every_trajectory_without_crashing():
    calc = Counting("nan", bad=lambda n: n > 5)  # NaN forces from the 6th evaluation on
    md = MDExplorer(temperatures=(300, 600), steps=20, interval=2)
    frames = list(md.explore(calc, [cu()], seed=0))
    assert [f.info["step"] for f in frames] == [2, 4]
    assert [(s["group"], s["step"]) for s in md.stopped_] == [("md-0-300K", 5),
                                                              ("md-0-600K", 0)]
    assert md.n_calls_ == calc.calls == 7


# -- registry, parameters, imports -------------------------------------------------------------

def test_registry_finds_the_md_explorer():
    assert get_explorer("md") is MDExplorer
    assert issubclass(MDExplorer, Explorer) and MDExplorer.name == "md"
    assert repr(MDExplorer(steps=10)).startswith("MDExplorer(temperatures=(300.0,), steps=10,")


@pytest.mark.parametrize(("params", "quoted"), [
    ({"temperatures": ()}, "temperatures=()"),
    ({"temperatures": (300, -5)}, "temperatures=-5"),
    ({"temperatures": (300, math.nan)}, "temperatures=nan"),
    ({"temperatures": (300, 300.0)}, "temperatures=(300, 300.0)"),
    ({"temperatures": "hot"}, "temperatures='h'"),
    ({"temperatures": None}, "temperatures=None"),
    ({"steps": 0}, "steps=0"),
    ({"steps": 2.5}, "steps=2.5"),
    ({"interval": 0}, "interval=0"),
    ({"steps": 10, "interval": 20}, "interval=20"),
    ({"timestep": 0.0}, "timestep=0.0"),
    ({"timestep": math.inf}, "timestep=inf"),
    ({"friction": -0.1}, "friction=-0.1"),
    ({"rattle": -1}, "rattle=-1"),
    ({"strain": 0.7}, "strain=0.7"),
    ({"copies": -1}, "copies=-1"),
    ({"copies": True}, "copies=True"),
    ({"copies": 2}, "copies=2 needs rattle > 0 or strain > 0"),
    ({"max_force": 0}, "max_force=0"),
    ({"max_force": math.nan}, "max_force=nan"),
])
def test_bad_parameters_are_refused_naming_the_value(params, quoted):
    md = MDExplorer(**params)  # the constructor stores only
    with pytest.raises(ParameterError) as err:
        md.explore(EMT(), [cu()])
    assert quoted in str(err.value)


@pytest.mark.parametrize(("args", "quoted"), [
    ((None, [cu()]), "calculator=None"),
    ((EMT(), []), "seeds=[]"),
    ((EMT(), [cu(), "Cu"]), "seeds[1]='Cu'"),
    ((EMT(), [cu()[:0]]), "seeds[0]=Atoms(symbols=''"),
    ((EMT(), [cu()], -1), "seed=-1"),
    ((EMT(), [cu()], 1.5), "seed=1.5"),
])
def test_bad_explore_arguments_are_refused_before_any_step(args, quoted):
    with pytest.raises(ParameterError) as err:
        MDExplorer().explore(*args)  # eager: no next() needed
    assert quoted in str(err.value)


def test_single_atoms_seed_and_infinite_max_force():
    md = MDExplorer(steps=4, interval=2, max_force=math.inf)
    frames = list(md.explore(EMT(), cu(), seed=0))
    assert [f.info["group"] for f in frames] == ["md-0-300K"] * 2


def test_importing_the_explorers_does_not_import_torch():
    code = ("import sys, pesdata.explore, pesdata.explore.md; "
            "pesdata.explore.get_explorer('md'); "
            "import json; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert "pesdata" in loaded
    assert not loaded & {"torch", "sklearn", "faiss", "matplotlib", "zarr", "vesin"}


# -- pesdata's own committee drives it --------------------------------------------------------

def test_committee_calculator_drives_md():
    pytest.importorskip("torch")
    from pesdata.descriptors import from_config
    from pesdata.train import Committee
    from pesdata.train.calculator import PesdataCalculator

    desc = from_config({"descriptor": "acsf", "species": ["Cu"], "r_cut": 4.5, "g4_params": [],
                        "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.3, 4.0], [0.05, 0.0]]})
    committee = Committee(desc, n_members=2, dtype="float64", hidden=(8,), epochs=2,
                          force_weight=0.1).fit(emt(3, 11))
    calc = PesdataCalculator(committee)
    md = MDExplorer(temperatures=(300, 900), steps=6, interval=3, timestep=1.0)
    start = cu()
    frames = list(md.explore(calc, [start], seed=0))
    assert md.stopped_ == []
    assert [(f.info["config_type"], f.info["step"]) for f in frames] == [
        ("md-300K", 3), ("md-300K", 6), ("md-900K", 3), ("md-900K", 6)]
    assert md.n_calls_ == 2 * 7
    assert all(f.calc is None for f in frames)
    moved = [np.abs(f.positions - start.positions).max() for f in frames]
    assert all(0 < m < 0.5 for m in moved)
    # the committee's spread on the frames is finite: what selection reads next
    std = committee.predict_std(frames)["forces_std"]
    assert all(np.isfinite(s).all() for s in std)
