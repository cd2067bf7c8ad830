"""``pesdata explore`` and :func:`pesdata.explore.walkers.run_walkers`: extxyz and store output,
labels against independent calculators, seeded multi-walker runs and their merged archive,
resume from the work directory, errors before any output."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from scipy.spatial.distance import pdist
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.errors import ParameterError
from pesdata.explore.walkers import resolve_calculator

runner = CliRunner()
INFO_KEYS = ("ssw_step", "phase", "accepted", "walker", "config_type", "group")


def _explore(*args):
    return runner.invoke(app, ["explore", *[str(a) for a in args]])


def _lj7(path):
    """A random, compact 7-atom cluster (not a minimum) written to ``path``: neon, whose
    covalent radius (0.58 Å) lets curate accept the close contacts of LJ climbing frames in
    σ = 1 Å units (argon's 1.06 Å would call them overlaps)."""
    rng = np.random.default_rng(3)
    ase.io.write(path, Atoms("Ne7", positions=rng.uniform(0.0, 2.3, (7, 3))))
    return path


@pytest.fixture(scope="module")
def lj7_runs(tmp_path_factory):
    """One LJ7 walk written to an extxyz file and, the same walk, curated into a new store."""
    d = tmp_path_factory.mktemp("explore")
    start = _lj7(d / "lj7.xyz")
    common = [start, "-c", "lj", "--steps", 2, "--max-evaluations", 1500, "--seed", 4,
              "--record-quench", 5, "--json"]
    r_file = _explore(*common, "--out", d / "out.extxyz")
    r_store = _explore(*common, "--out", d / "store")
    assert r_file.exit_code == 0, r_file.output
    assert r_store.exit_code == 0, r_store.output
    return d, json.loads(r_file.stdout), json.loads(r_store.stdout)


def _lj_reference():
    """ASE's LennardJones with a cutoff beyond any LJ7 pair: the shift 4(100⁻¹² − 100⁻⁶) per
    pair is ~1e-12 eV, so this is the untruncated potential to within 1e-10 eV."""
    return LennardJones(epsilon=1.0, sigma=1.0, rc=100.0, smooth=False)


def test_extxyz_frames_carry_tags_and_exact_lj_labels(lj7_runs):
    d, summary, _ = lj7_runs
    frames = ase.io.read(d / "out.extxyz", ":")
    assert len(frames) == summary["frames"] > 0
    assert summary["method"] == "LJ" and summary["steps"] == 2 and summary["workdir"] is None
    assert not (d / "out.extxyz.ssw-work").exists()  # removed after success
    assert {f.info["phase"] for f in frames} >= {"minimum", "climb", "quench"}
    for f in frames:
        assert all(k in f.info for k in INFO_KEYS), f.info
        assert f.info["group"] == "ssw-w0" and f.info["config_type"] == f"ssw-{f.info['phase']}"
        e, forces = f.get_potential_energy(), f.get_forces()
        ref = f.copy()
        ref.calc = _lj_reference()
        # extxyz keeps 8 decimals of the positions (±5e-9 Å): with climbing-frame forces of
        # up to ~40 eV/Å on 7 atoms that moves the energy by up to ~1e-6 eV
        assert e == pytest.approx(ref.get_potential_energy(), abs=2e-6)
        np.testing.assert_allclose(forces, ref.get_forces(), atol=1e-5)
    # the lowest energy reported is the lowest minimum written
    minima = [f.get_potential_energy() for f in frames if f.info["phase"] == "minimum"]
    assert summary["lowest_energy"] == pytest.approx(min(minima), abs=1e-12)
    assert len(minima) == summary["distinct_minima"]


def test_store_output_round_trips_the_extxyz_labels(lj7_runs):
    d, summary, store_summary = lj7_runs
    assert store_summary["curate"]["committed"] and store_summary["curate"]["added"] > 0
    c = store_summary["curate"]
    assert c["added"] + c["duplicates"] + c["quarantined"] == summary["frames"]
    stored = pesdata.open_store(d / "store").read().to_atoms()
    assert len(stored) == store_summary["curate"]["added"]
    assert {a.info.get("method") for a in stored} == {"LJ"}
    written = ase.io.read(d / "out.extxyz", ":")

    def key(a):
        return (a.info["walker"], a.info["ssw_step"], a.info["phase"],
                round(float(a.get_potential_energy()), 8))

    by_key = {}
    for a in written:
        by_key.setdefault(key(a), []).append(a)
    for a in stored:
        match = [w for w in by_key[key(a)] if np.allclose(w.positions, a.positions, atol=1e-10)]
        assert match, key(a)
        assert a.get_potential_energy() == pytest.approx(match[0].get_potential_energy(),
                                                         abs=1e-10)
        np.testing.assert_allclose(a.get_forces(), match[0].get_forces(), atol=1e-10)


def _same_minimum(a, b) -> bool:
    """Brute force: equal energies (1e-3) and sorted pair distances (0.02 Å)."""
    return (abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-3
            and np.max(np.abs(np.sort(pdist(a.positions)) - np.sort(pdist(b.positions))))
            < 0.02)


def test_two_walkers_are_deterministic_and_share_one_archive(tmp_path):
    start = _lj7(tmp_path / "lj7.xyz")
    outs, summaries = [], []
    for run in ("a", "b"):
        r = _explore(start, "-c", "lj", "--steps", 2, "--walkers", 2, "--seed", 1,
                     "--max-evaluations", 1500, "--record-climb", 3, "--out",
                     tmp_path / f"{run}.extxyz", "--json")
        assert r.exit_code == 0, r.output
        summaries.append(json.loads(r.stdout))
        outs.append((tmp_path / f"{run}.extxyz").read_bytes())
    assert outs[0] == outs[1]
    s = summaries[0]
    assert s["n_walkers"] == 2 and [w["walker"] for w in s["walkers"]] == [0, 1]
    assert s["distinct_minima"] <= sum(w["distinct_minima"] for w in s["walkers"])
    frames = ase.io.read(tmp_path / "a.extxyz", ":")
    walker = [f.info["walker"] for f in frames]
    assert walker == sorted(walker) and set(walker) == {0, 1}  # walker 0's frames first
    assert all(f.info["group"] == f"ssw-w{f.info['walker']}" for f in frames)
    minima = [f for f in frames if f.info["phase"] == "minimum"]
    assert len(minima) == s["distinct_minima"]
    for i, a in enumerate(minima):  # no minimum is written twice
        assert not any(_same_minimum(a, b) for b in minima[:i])
    # every walker's dropped minimum duplicates one kept from an earlier walker
    assert s["duplicate_minima"] == sum(w["distinct_minima"] for w in s["walkers"]) - len(minima)


def test_rerun_with_more_steps_resumes(tmp_path):
    start = _lj7(tmp_path / "lj7.xyz")
    work = tmp_path / "work"
    args = [start, "-c", "lj", "--seed", 2, "--out", tmp_path / "o.extxyz", "--workdir", work,
            "--keep-work", "--json"]
    r1 = _explore(*args, "--steps", 1)
    assert r1.exit_code == 0, r1.output
    first = json.loads((work / "walker-0.json").read_text())["history"]
    frames1 = ase.io.read(tmp_path / "o.extxyz", ":")
    r2 = _explore(*args, "--steps", 3)
    assert r2.exit_code == 0, r2.output
    second = json.loads((work / "walker-0.json").read_text())["history"]
    assert [h["step"] for h in first] == [0, 1]
    assert [h["step"] for h in second] == [0, 1, 2, 3]
    assert second[:2] == first  # continued, not restarted
    frames2 = ase.io.read(tmp_path / "o.extxyz", ":")
    assert len(frames2) > len(frames1)
    for a, b in zip(frames1, frames2, strict=False):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.info == b.info
    # the walk is complete: the same command walks no more and spends no evaluation
    r3 = _explore(*args, "--steps", 3)
    assert r3.exit_code == 0, r3.output
    assert json.loads(r3.stdout)["evaluations"] == json.loads(r2.stdout)["evaluations"]
    assert json.loads((work / "walker-0.json").read_text())["history"] == second


def test_emt_cu_fixed_cell_walk(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)  # 4 atoms; a variable cell is too slow here
    atoms.rattle(0.05, seed=1)
    ase.io.write(tmp_path / "cu.extxyz", atoms)
    r = _explore(tmp_path / "cu.extxyz", "-c", "emt", "--steps", 1, "--no-cell",
                 "--max-evaluations", 300, "--out", tmp_path / "o.extxyz", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["method"] == "EMT" and summary["lowest_energy"] is not None
    frames = ase.io.read(tmp_path / "o.extxyz", ":")
    assert frames and all(f.info["method"] == "EMT" for f in frames)
    assert all(np.allclose(f.cell, atoms.cell) for f in frames)
    for f in frames:
        ref = f.copy()
        ref.calc = EMT()
        assert f.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-7)
        np.testing.assert_allclose(f.get_forces(), ref.get_forces(), atol=1e-6)


@pytest.mark.parametrize("case", ["missing", "calculator", "cell", "steps"])
def test_errors_are_one_line_and_write_nothing(tmp_path, case):
    start = _lj7(tmp_path / "lj7.xyz")
    args = {"missing": [tmp_path / "nope.xyz", "-c", "lj", "--steps", 1],
            "calculator": [start, "-c", "nosuchcalc", "--steps", 1],
            "cell": [start, "-c", "lj", "--steps", 1, "--cell"],
            "steps": [start, "-c", "lj", "--steps", -1]}[case]
    expected = {"missing": "nope.xyz", "calculator": "'nosuchcalc'", "cell": "cell=True",
                "steps": "steps must be a positive integer, got -1"}[case]
    r = _explore(*args, "--out", tmp_path / "o.extxyz")
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert not (tmp_path / "o.extxyz").exists()
    assert not (tmp_path / "o.extxyz.ssw-work").exists()


def test_resolve_calculator(tmp_path):
    assert resolve_calculator("EMT").method == "EMT"
    assert resolve_calculator("lj").method == "LJ"
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(ParameterError, match="without model_card.json"):
        resolve_calculator(str(model))
    (model / "model_card.json").write_text("{}")
    spec = resolve_calculator(str(model))
    assert spec.kind == "model" and spec.method == f"pesdata-model:{model.resolve()}"
    with pytest.raises(ParameterError, match="unknown calculator 'dft'"):
        resolve_calculator("dft")
    with pytest.raises(ParameterError, match="no_such_module_xyz"):
        resolve_calculator("no_such_module_xyz:make")


def test_model_directory_walks_with_the_model(tmp_path):
    from pesdata.descriptors import from_config
    from pesdata.train import LinearPotential, PesdataCalculator, save_model

    from .conftest import CU_ACSF_SMALL_CONFIG, emt

    model = LinearPotential(from_config(CU_ACSF_SMALL_CONFIG), force_weight=0.1).fit(emt(3, 0))
    save_model(model, tmp_path / "model")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=2)
    ase.io.write(tmp_path / "cu.extxyz", atoms)
    r = _explore(tmp_path / "cu.extxyz", "-c", tmp_path / "model", "--steps", 1, "--no-cell",
                 "--max-evaluations", 40, "--out", tmp_path / "o.extxyz", "--json")
    assert r.exit_code == 0, r.output
    method = f"pesdata-model:{(tmp_path / 'model').resolve()}"
    assert json.loads(r.stdout)["method"] == method
    frames = ase.io.read(tmp_path / "o.extxyz", ":")
    assert frames and all(f.info["method"] == method for f in frames)
    calc = PesdataCalculator(str(tmp_path / "model"))
    for f in frames:
        ref = f.copy()
        ref.calc = calc
        assert f.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(f.get_forces(), ref.get_forces(), atol=1e-5)


def test_a_workdir_that_is_not_a_run_is_refused_and_never_deleted(tmp_path):
    start = _lj7(tmp_path / "lj7.xyz")
    work = tmp_path / "wd"
    work.mkdir()
    (work / "precious.txt").write_text("keep")
    r = _explore(start, "-c", "lj", "--steps", 1, "--max-evaluations", 300,
                 "--workdir", work, "--out", work / "out.extxyz")
    assert r.exit_code != 0 and "precious" not in r.output
    assert "--workdir" in r.output
    assert (work / "precious.txt").read_text() == "keep"
    assert not (work / "out.extxyz").exists()
    # an empty (or new) one is used, and only what the run wrote is removed after it
    r = _explore(start, "-c", "lj", "--steps", 1, "--max-evaluations", 300,
                 "--workdir", tmp_path / "wd2", "--out", tmp_path / "wd2" / "out.extxyz")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "wd2").iterdir()) == ["out.extxyz"]


@pytest.mark.parametrize("name", ["walk.traj", "out.cif", "w.extxyz.gz"])
def test_an_out_that_looks_like_another_file_format_is_refused(tmp_path, name):
    start = _lj7(tmp_path / "lj7.xyz")
    r = _explore(start, "-c", "lj", "--steps", 1, "--out", tmp_path / name)
    assert r.exit_code != 0 and "--out" in r.output
    assert not (tmp_path / name).exists()


def test_an_out_directory_of_other_files_is_refused(tmp_path):
    start = _lj7(tmp_path / "lj7.xyz")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    r = _explore(start, "-c", "lj", "--steps", 1, "--out", tmp_path / "mine")
    assert r.exit_code != 0 and "not a store" in r.output
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_nan_positions_are_an_input_error_naming_the_field(tmp_path):
    (tmp_path / "nan.xyz").write_text("2\n\nAr 0 0 0\nAr nan 0 1\n")
    r = _explore(tmp_path / "nan.xyz", "-c", "lj", "--steps", 1, "--out", tmp_path / "o.xyz")
    assert r.exit_code != 0 and "positions" in r.output and "NaN" in r.output
    assert not (tmp_path / "o.xyz.ssw-work").exists()


def test_a_walker_still_running_holds_its_files(tmp_path):
    from pesdata.explore.walkers import _lock_walker

    held = _lock_walker(tmp_path, 0)
    try:
        with pytest.raises(ParameterError, match="walker 0 .* still running"):
            _lock_walker(tmp_path, 0)
    finally:
        held.close()
    _lock_walker(tmp_path, 0).close()  # free again once the first is gone
