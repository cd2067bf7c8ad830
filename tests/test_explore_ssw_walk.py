"""Whole SSW walks: evaluation counting and the cap, determinism, resume after a kill,
constraints, fragmentation, rigid motions, LJ13's global minimum, a variable-cell Cu walk and
the store round trip of the recorded frames.

References are independent of the walker: a counting calculator wrapper, an uninterrupted run
in a fresh directory, the start geometry of fixed atoms, Kabsch alignment with numpy, Wales &
Doye's LJ13 energy, ASE's own variable-cell relaxation of fcc Cu and neighbour shells counted
with ASE's neighbour list.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from ase.neighborlist import neighbor_list
from ase.optimize import BFGS

import pesdata
from pesdata.errors import ParameterError
from pesdata.explore.archive import is_fragmented
from pesdata.explore.counting import CountingCalculator
from pesdata.explore.lj import LennardJonesCluster
from pesdata.explore.ssw import SSW
from pesdata.explore.surface import Surface

from .ssw_helpers import one_blas_thread, random_cluster  # noqa: F401 - fixture

LJ13_GM = -44.326801  # Wales & Doye, J. Phys. Chem. A 101, 5111 (1997)




def kabsch_rmsd(p: np.ndarray, q: np.ndarray) -> float:
    """RMSD of ``p`` from ``q`` after the best rigid translation and rotation (numpy SVD)."""
    p, q = p - p.mean(axis=0), q - q.mean(axis=0)
    u, _, vt = np.linalg.svd(p.T @ q)
    r = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return float(np.sqrt(((p @ r - q) ** 2).sum(axis=1).mean()))


# -- a shared LJ7 walk ----------------------------------------------------------------------------

LJ7_STEPS = 4


def lj7_walk(seed: int, **kwargs):
    """An LJ7 walk from a fixed random start; returns (walk, calculator, states) where
    ``states[k]`` is (positions, energy) of the current minimum after step k."""
    calc = CountingCalculator(LennardJonesCluster())
    walk = SSW(random_cluster(7, 1), calc, seed=seed, record_climb=1, record_quench=4, **kwargs)
    states = {}

    def keep(w):
        states[w.n_steps_] = (w.atoms_.positions.copy(), w.energy_)

    walk.run(LJ7_STEPS, keep)
    return walk, calc, states


@pytest.fixture(scope="module")
def lj7():
    return lj7_walk(3)


def test_evaluations_counted_like_the_calculator(lj7):
    walk, calc, _ = lj7
    assert walk.stopped_ is None and walk.n_steps_ == LJ7_STEPS
    assert walk.n_evaluations_ == calc.n_calls > 0
    evals = [h["evaluations"] for h in walk.history_]
    assert evals == sorted(evals) and evals[-1] == walk.n_evaluations_
    assert [h["step"] for h in walk.history_] == list(range(LJ7_STEPS + 1))


def test_max_evaluations_stops_at_the_cap_in_the_last_finished_state(lj7):
    walk, _, states = lj7
    h = walk.history_
    cap = (h[2]["evaluations"] + h[3]["evaluations"]) // 2  # half-way through step 3
    capped, calc, _ = lj7_walk(3, max_evaluations=cap)
    assert capped.stopped_ and "budget" in capped.stopped_
    assert capped.n_evaluations_ == calc.n_calls == cap  # the discarded step's calls count
    assert capped.n_steps_ == 2
    assert capped.history_ == h[:3]
    positions, energy = states[2]
    assert np.array_equal(capped.atoms_.positions, positions)
    assert capped.energy_ == energy
    check = capped.atoms_.copy()
    check.calc = LennardJonesCluster()
    assert check.get_potential_energy() == pytest.approx(capped.energy_, abs=1e-9)
    # no frame of the discarded step
    assert max(f.info["ssw_step"] for f in capped.frames_) == 2
    assert len(capped.frames_) == sum(f.info["ssw_step"] <= 2 for f in walk.frames_)


def test_max_evaluations_within_the_first_quench():
    calc = CountingCalculator(LennardJonesCluster())
    walk = SSW(random_cluster(7, 1), calc, max_evaluations=5).run(3)
    assert walk.stopped_ and walk.n_steps_ == 0 and walk.atoms_ is None
    assert walk.n_evaluations_ == calc.n_calls == 5
    assert walk.history_ == [] and walk.frames_ == []


def _frames_equal(a, b) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.positions, y.positions)
        and x.get_potential_energy() == y.get_potential_energy()
        and np.array_equal(x.get_forces(), y.get_forces())
        and x.info == y.info
        for x, y in zip(a, b, strict=True))


def test_same_seed_same_walk_other_seed_other_walk(lj7):
    walk, _, _ = lj7
    again, _, _ = lj7_walk(3)
    assert again.history_ == walk.history_
    assert _frames_equal(again.frames_, walk.frames_)
    assert {f.info["phase"] for f in walk.frames_} == {"climb", "quench", "minimum"}
    other, _, _ = lj7_walk(4)
    assert other.history_ != walk.history_
    assert not _frames_equal(other.frames_, walk.frames_)


def test_recorded_frames_carry_tags_and_true_labels(lj7):
    walk, _, _ = lj7
    for f in walk.frames_:
        assert set(f.info) >= {"ssw_step", "phase", "accepted", "walker", "config_type"}
        assert f.info["config_type"] == f"ssw-{f.info['phase']}" and f.info["walker"] == 0
        ref = Atoms(f.numbers, f.positions)
        ref.calc = LennardJonesCluster()
        assert f.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        assert np.abs(f.get_forces() - ref.get_forces()).max() < 1e-8
    by_step = {h["step"]: h for h in walk.history_}
    for f in walk.frames_:
        assert f.info["accepted"] == by_step[f.info["ssw_step"]]["accepted"]


# -- rigid motions of a free cluster -------------------------------------------------------------


def test_free_cluster_directions_exclude_translation():
    atoms = random_cluster(13, 2)
    atoms.calc = LennardJonesCluster()
    v = Surface(atoms).project(np.random.default_rng(0).normal(size=39)).reshape(-1, 3)
    assert np.abs(v.sum(axis=0)).max() < 1e-12


def test_free_cluster_directions_exclude_rigid_rotations():
    atoms = random_cluster(13, 2)
    atoms.calc = LennardJonesCluster()
    v = Surface(atoms).project(np.random.default_rng(0).normal(size=39)).reshape(-1, 3)
    r = atoms.positions - atoms.positions.mean(axis=0)
    for axis in np.eye(3):
        rotation = np.cross(axis, r).ravel()
        assert abs(v.ravel() @ rotation) < 1e-9 * np.linalg.norm(rotation)


def test_cluster_climb_is_not_a_rigid_rotation():
    """Ten Gaussians of 0.5 ε must deform the cluster: in every step some climbing structure
    differs from the step's starting minimum by more than a rigid motion (one ds = 0.6 σ push
    alone is 0.6/√13 = 0.17 σ RMSD)."""
    walk = SSW(random_cluster(13, 2), LennardJonesCluster(), seed=2, temperature=5000.0,
               record_climb=1)
    starts = {}  # the current minimum each step starts from
    walk.run(2, lambda w: starts.__setitem__(w.n_steps_ + 1, w.atoms_.positions.copy()))
    deformation: dict[int, float] = {}
    for f in walk.frames_:
        if f.info["phase"] == "climb":
            k = f.info["ssw_step"]
            deformation[k] = max(deformation.get(k, 0.0), kabsch_rmsd(f.positions, starts[k]))
    assert sorted(deformation) == [1, 2]
    assert min(deformation.values()) > 0.05, deformation


# -- resume after a kill ---------------------------------------------------------------------------

RESUME_SCRIPT = """
import json, sys
from threadpoolctl import threadpool_limits
from ase import Atoms
from pesdata.explore.lj import LennardJonesCluster
from pesdata.explore.ssw import SSW

threadpool_limits(1)
steps, positions = int(sys.argv[1]), json.loads(sys.argv[2])
walk = SSW(Atoms("Ar7", positions=positions), LennardJonesCluster(), seed=5, record_climb=1,
           record_quench=3, trajectory="frames.extxyz", checkpoint="walk.json")
walk.run(steps - walk.n_steps_ if walk.atoms_ is not None else steps)
print(json.dumps({"history": walk.history_, "evaluations": walk.n_evaluations_}))
"""


def _walk_process(directory, steps: int, **kwargs) -> subprocess.Popen:
    script = directory / "walk.py"
    script.write_text(RESUME_SCRIPT)
    positions = json.dumps(random_cluster(7, 1).positions.tolist())
    return subprocess.Popen([sys.executable, str(script), str(steps), positions],
                            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def test_resume_after_kill_gives_the_uninterrupted_walk(tmp_path):
    steps = 6
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir()
    run_dir.mkdir()
    proc = _walk_process(run_dir, steps)
    checkpoint = run_dir / "walk.json"
    done = -1
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            done = json.loads(checkpoint.read_text())["counters"]["n_steps_"]
            if done >= 2:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the walk was not killed half-way"
    assert 2 <= done < steps
    # as if it died while writing the next step's frames: a partial frame after the checkpoint
    with open(run_dir / "frames.extxyz", "a") as fh:
        fh.write("7\nLattice=... partial frame of a killed step\nAr 0.0 0.")
    reference = _walk_process(ref_dir, steps)  # uninterrupted, in a fresh directory
    resumed = _finish(_walk_process(run_dir, steps))
    reference = _finish(reference)
    assert resumed == reference
    assert [h["step"] for h in resumed["history"]] == list(range(steps + 1))
    ref_bytes = (ref_dir / "frames.extxyz").read_bytes()
    assert ref_bytes and (run_dir / "frames.extxyz").read_bytes() == ref_bytes

    # a checkpoint is refused by a walk with other settings, naming the setting
    start = random_cluster(7, 1)
    with pytest.raises(ParameterError, match="temperature"):
        SSW(start, LennardJonesCluster(), seed=5, record_climb=1, record_quench=3,
            temperature=900.0, checkpoint=run_dir / "walk.json")
    with pytest.raises(ParameterError, match="seed"):
        SSW(start, LennardJonesCluster(), seed=6, record_climb=1, record_quench=3,
            checkpoint=run_dir / "walk.json")


# -- constraints and fragmentation ----------------------------------------------------------------


def test_fixed_atoms_of_a_slab_never_move():
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, "Cu", 2.0, "fcc")
    fixed = slab.get_tags() == 3  # bottom layer
    assert fixed.sum() == 4
    slab.set_constraint(FixAtoms(mask=fixed))
    start = slab.positions.copy()
    walk = SSW(slab, EMT(), seed=1, n_gaussians=3, record_climb=1, record_quench=5)
    assert walk.kind == "slab"
    walk.run(2)
    frames = walk.frames_ + [m.atoms for m in walk.archive_.minima] + [walk.atoms_]
    assert len(frames) > 5
    moved = 0.0
    for f in frames:
        assert np.array_equal(f.positions[fixed], start[fixed])
        moved = max(moved, float(np.abs(f.positions[~fixed] - start[~fixed]).max()))
    assert moved > 0.05  # the free atoms did move
    # the labels are the true forces, also on the fixed atoms (which keep their FixAtoms)
    assert all(np.abs(f.get_forces(apply_constraint=False)[fixed]).max() > 0
               for f in walk.frames_)
    assert all(f.constraints for f in walk.frames_)


def test_fragmented_minima_are_rejected_and_counted():
    bond = 1.5 * 2 ** (1 / 6)  # 1.5 x LJ's nearest-neighbour distance
    walk = SSW(random_cluster(7, 1), LennardJonesCluster(), seed=1, height=3.0, width=1.0,
               n_gaussians=4, record_climb=0)
    currents = []

    def check(w):
        currents.append(w.energy_)
        assert not is_fragmented(w.atoms_, bond)

    walk.run(6, check)
    assert walk.n_fragmented_ > 0
    fragmented = [h for h in walk.history_ if h["reason"] == "fragmented"]
    assert len(fragmented) == walk.n_fragmented_
    assert not any(h["accepted"] for h in fragmented)
    for k, h in enumerate(walk.history_):
        if h["reason"] == "fragmented":  # the current minimum stays what it was
            assert currents[k] == currents[k - 1]
    assert all(not is_fragmented(m.atoms, bond) for m in walk.archive_.minima)


# -- physics: LJ13's global minimum, a Cu crystal ---------------------------------------------


class _Found(Exception):
    pass


def test_lj13_reaches_the_global_minimum():
    """From a seeded random start, within 20 000 counted evaluations (at the time of writing
    this seed needs ~3 400)."""
    calc = CountingCalculator(LennardJonesCluster())
    walk = SSW(random_cluster(13, 1), calc, seed=1, temperature=5000.0, record_climb=0,
               max_evaluations=20_000)

    def stop(w):
        if w.best_energy_ < LJ13_GM + 1e-4:
            raise _Found

    with pytest.raises(_Found):
        walk.run(500, stop)
    assert walk.best_energy_ == pytest.approx(LJ13_GM, abs=1e-4)
    assert calc.n_calls == walk.n_evaluations_ <= 20_000
    best = walk.best_atoms_.copy()
    best.calc = LennardJonesCluster()
    assert best.get_potential_energy() == pytest.approx(LJ13_GM, abs=1e-4)
    # icosahedral: one atom with 12 neighbours within 1.2 σ
    d = np.linalg.norm(best.positions[:, None] - best.positions[None], axis=-1)
    assert sorted(((d < 1.2).sum(axis=1) - 1).tolist())[-1] == 12


@pytest.fixture(scope="module")
def cu_walk():
    """A variable-cell EMT walk of 4 Cu atoms from a strongly strained, rattled fcc cell."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    strain = np.eye(3) + np.random.default_rng(0).uniform(-0.15, 0.15, (3, 3))
    atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
    atoms.rattle(0.15, seed=0)
    start = atoms.copy()
    walk = SSW(atoms, EMT(), seed=2, record_climb=2, record_quench=10, walker=3)
    assert walk.kind == "bulk" and walk.cell
    walk.run(2)
    return start, walk


def _shells(atoms) -> tuple[np.ndarray, np.ndarray]:
    i, d = neighbor_list("id", atoms, 4.3)
    first = np.bincount(i[d < 2.9], minlength=len(atoms))
    third = np.bincount(i[(d > 4.0) & (d < 4.3)], minlength=len(atoms))
    return first, third


def test_variable_cell_walk_reaches_a_close_packed_crystal(cu_walk):
    start, walk = cu_walk
    ref = bulk("Cu")
    ref.calc = EMT()
    BFGS(FrechetCellFilter(ref), logfile=None).run(fmax=1e-4)
    v_fcc = ref.get_volume() / len(ref)
    e_fcc = ref.get_potential_energy() / len(ref)
    first, _ = _shells(start)
    assert first.min() < 12  # the start is not close-packed
    best = walk.best_atoms_
    first, third = _shells(best)
    assert first.tolist() == [12] * 4
    assert abs(best.get_volume() / 4 / v_fcc - 1) < 0.01
    assert not np.allclose(best.cell.cellpar(), start.cell.cellpar(), atol=0.05)  # cell walked
    e = walk.best_energy_ / 4
    if third.tolist() == [0] * 4:  # fcc
        assert e == pytest.approx(e_fcc, abs=5e-4)
    else:  # hcp: two third-shell neighbours each, ~1 meV/atom below fcc under EMT
        assert third.tolist() == [2] * 4
        assert e_fcc - 3e-3 < e < e_fcc


def test_recorded_frames_round_trip_through_the_store(cu_walk, tmp_path):
    _, walk = cu_walk
    frames = walk.frames_
    assert {f.info["phase"] for f in frames} >= {"climb", "minimum"}
    assert all("stress" in f.calc.results for f in frames)
    sources = [f"ssw-walk#{k}" for k in range(len(frames))]
    store = pesdata.open_store(tmp_path / "store", create=True)
    store.curate(frames, method="EMT", sources=sources)
    snapshot = store.read()
    rows = snapshot.to_pandas()
    back = dict(zip(rows["source"], snapshot.to_atoms(), strict=True))
    # every frame is back, unless curate merged two identical geometries (e.g. the last quench
    # frame and the minimum of the same step)
    assert set(back) <= set(sources) and len(back) >= len(frames) - 2
    for name, a in back.items():
        f = frames[sources.index(name)]
        assert np.array_equal(a.numbers, f.numbers)
        assert np.allclose(a.positions, f.positions, rtol=0, atol=1e-12)
        assert np.allclose(a.cell, f.cell, rtol=0, atol=1e-12)
        assert a.get_potential_energy() == pytest.approx(f.get_potential_energy(), abs=1e-12)
        assert np.allclose(a.get_forces(), f.get_forces(), rtol=0, atol=1e-12)
        assert np.allclose(a.get_stress(), f.get_stress(), rtol=0, atol=1e-12)
        assert a.info["config_type"] == f.info["config_type"]
        assert a.info.get("method") == "EMT"
        for key in ("ssw_step", "phase", "accepted", "walker"):
            assert a.info[key] == f.info[key], key
        assert a.info["walker"] == 3


def test_bad_parameters_are_refused_naming_the_value():
    start = random_cluster(7, 1)
    for kwargs, quoted in [({"temperature": -1.0}, "temperature"), ({"width": 0.0}, "width"),
                           ({"n_gaussians": 0}, "n_gaussians"), ({"mixing": (1.0, 0.5)},
                                                                 "mixing"),
                           ({"cell": True}, "cell=True"), ({"optimizer": "CG"}, "optimizer"),
                           ({"kind": "gas"}, "kind"), ({"seed": -3}, "seed")]:
        with pytest.raises(ParameterError, match=quoted):
            SSW(start, LennardJonesCluster(), **kwargs)
    assert math.isnan(SSW(start, LennardJonesCluster()).energy_)
