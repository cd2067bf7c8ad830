"""Labelling queues: write/read, label export, label run, label import (and their commands).

References are independent of the code under test: ASE's EMT called directly, ASE's VASP reader,
a brute-force numpy Lennard-Jones sum, the geometry of the frames as they were made.
"""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from typer.testing import CliRunner

import pesdata
import pesdata.cli._label  # noqa: F401 - registers `pesdata label` (the lead wires it in)
from pesdata.cli import app
from pesdata.errors import ArtefactError, InputError, OutputError, ParameterError
from pesdata.frames import Frame
from pesdata.label import (
    export_queue,
    geometry_deviation,
    import_results,
    label_queue,
    read_queue,
    write_queue,
)

from .conftest import emt_cells
from .label_calcs import CALLS_ENV

runner = CliRunner()
N = 6


def _candidates(n: int = N, seed: int = 7) -> list:
    """Labelled EMT Cu cells as a selection would queue them: ids, sources, extra info keys
    (a string "12" that extxyz would read as an int, a float, a bool, an array), a per-atom
    array, and old labels (calculator results and a REF_energy) that must not travel."""
    out = []
    for i, a in enumerate(emt_cells(n, seed=seed)):
        a.info.update(pesdata_id=Frame.from_atoms(a).id, pesdata_source=f"cands.xyz#{i}",
                      config_type="md300", temperature=300.0 + i, run="12", ok=True,
                      tilt=np.array([0.0, 0.5, 1.0 + i]), REF_energy=-1.0)
        a.arrays["site"] = np.arange(len(a), dtype=np.int64) % 4
        out.append(a)
    return out


def _reference(store) -> int:
    ref = emt_cells(3, seed=1)
    for a in ref:
        a.arrays["site"] = np.zeros(len(a), dtype=np.int64)
    store.curate(ref)
    return store.version


@pytest.fixture
def queued(tmp_path, store):
    """(store, queue path, candidates) with the reference curated and the queue written."""
    version = _reference(store)
    cands = _candidates()
    ledger = pd.DataFrame({"id": [a.info["pesdata_id"] for a in cands],
                           "novelty": np.linspace(2.0, 1.1, N), "decision": "selected"})
    path = write_queue(tmp_path / "queue", cands, ledger, store=str(store.uri),
                       reference_version=version, selection="round1")
    return store, path, cands


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# -- the queue directory ----------------------------------------------------------------------


def test_queue_keeps_geometry_info_and_arrays_but_no_labels(queued):
    _, path, cands = queued
    q = read_queue(path)
    assert q.status == "open" and q.selection == "round1"
    assert q.ids == [a.info["pesdata_id"] for a in cands]
    assert q.ledger()["id"].tolist() == q.ids
    images = q.images()
    for a, b in zip(cands, images, strict=True):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-8, rtol=0)
        np.testing.assert_allclose(b.cell.array, a.cell.array, atol=1e-8, rtol=0)
        assert (b.numbers == a.numbers).all() and (b.pbc == a.pbc).all()
        assert b.info["run"] == "12" and b.info["ok"] is True  # types kept, not extxyz's
        assert b.info["temperature"] == a.info["temperature"]
        np.testing.assert_array_equal(b.info["tilt"], a.info["tilt"])
        assert b.info["config_type"] == "md300"
        assert b.info["pesdata_source"] == a.info["pesdata_source"]
        np.testing.assert_array_equal(b.arrays["site"], a.arrays["site"])
        # the candidate's labels are not in the queue, neither as results nor as keys
        assert b.calc is None and "REF_energy" not in b.info and "forces" not in b.arrays
    text = (path / "frames.extxyz").read_text()
    assert "energy" not in text and "forces" not in text and "stress" not in text
    assert json.loads((path / "manifest.json").read_text())["n_structures"] == N


def test_write_queue_refusals(tmp_path, queued):
    _, path, cands = queued
    led = pd.DataFrame({"id": [a.info["pesdata_id"] for a in cands]})
    with pytest.raises(OutputError, match="not empty"):
        write_queue(path, cands, led, store="s", reference_version=1, selection="x")
    (tmp_path / "empty").mkdir()  # an empty directory is fine
    write_queue(tmp_path / "empty", cands[:2], led, store="s", reference_version=1,
                selection="x")
    no_id = [a.copy() for a in cands[:2]]
    del no_id[1].info["pesdata_id"]
    with pytest.raises(ParameterError, match="image 1: info\\['pesdata_id'\\]"):
        write_queue(tmp_path / "q2", no_id, led, store="s", reference_version=1, selection="x")
    with pytest.raises(ParameterError, match="already image 0"):
        write_queue(tmp_path / "q3", [cands[0], cands[0]], led, store="s",
                    reference_version=1, selection="x")
    with pytest.raises(ParameterError, match="'id' column"):
        write_queue(tmp_path / "q4", cands, pd.DataFrame({"x": [1]}), store="s",
                    reference_version=1, selection="x")
    assert not (tmp_path / "q2").exists() and not (tmp_path / "q3").exists()


def test_read_queue_errors_name_the_file(tmp_path, queued):
    _, path, _ = queued
    with pytest.raises(InputError, match="nowhere.*no queue directory"):
        read_queue(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="plain/manifest.json.*missing"):
        read_queue(tmp_path / "plain")
    manifest = path / "manifest.json"
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "status": "done"}))
    with pytest.raises(ArtefactError, match="manifest.json.*status"):
        read_queue(path)
    manifest.write_text("{not json")
    with pytest.raises(InputError, match="manifest.json"):
        read_queue(path)
    manifest.write_text(json.dumps(doc))
    (path / "frames.extxyz").unlink()
    with pytest.raises(InputError, match="frames.extxyz"):
        read_queue(path).images()


# -- export -----------------------------------------------------------------------------------


def test_export_extxyz_and_vasp(tmp_path, queued):
    _, path, cands = queued
    export_queue(path, tmp_path / "out.extxyz")
    back = ase.io.read(tmp_path / "out.extxyz", ":")
    assert len(back) == N
    for a, b in zip(cands, back, strict=True):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-8, rtol=0)
        assert b.calc is None
    summary = export_queue(path, tmp_path / "vasp", format="vasp")
    manifest = json.loads((tmp_path / "vasp" / "manifest.json").read_text())
    assert manifest["folders"] == summary["folders"]
    assert manifest["selection"] == "round1"
    assert list(manifest["folders"].values()) == [a.info["pesdata_id"] for a in cands]
    for (folder, sid), a in zip(manifest["folders"].items(), cands, strict=True):
        assert folder.endswith(sid[:12])
        p = ase.io.read(tmp_path / "vasp" / folder / "POSCAR", format="vasp")
        np.testing.assert_allclose(p.positions, a.positions, atol=1e-8, rtol=0)
        np.testing.assert_allclose(p.cell.array, a.cell.array, atol=1e-8, rtol=0)
        assert (p.numbers == a.numbers).all()
    with pytest.raises(OutputError, match="not empty"):
        export_queue(path, tmp_path / "vasp", format="vasp")
    with pytest.raises(ParameterError, match="'cif'"):
        export_queue(path, tmp_path / "x.cif", format="cif")


def test_vasp_export_keeps_atom_order_of_mixed_cells(tmp_path):
    a = emt_cells(1, seed=3)[0]
    a.numbers[[1, 5, 6]] = 79  # Cu Au Cu Cu Cu Au Au ...: never sorted by element
    a.info["pesdata_id"] = "mixed"
    write_queue(tmp_path / "q", [a], pd.DataFrame({"id": ["mixed"]}), store="s",
                reference_version=1, selection="mix")
    export_queue(tmp_path / "q", tmp_path / "v", format="vasp")
    (folder,) = [p for p in (tmp_path / "v").iterdir() if p.is_dir()]
    p = ase.io.read(folder / "POSCAR", format="vasp")
    assert (p.numbers == a.numbers).all()
    np.testing.assert_allclose(p.positions, a.positions, atol=1e-8, rtol=0)


# -- label run and import: the round trip -----------------------------------------------------


def test_round_trip_run_and_import(queued):
    store, path, cands = queued
    report = label_queue(path, "emt")
    assert report.labelled == N and not report.failed and report.status == "labelled"
    q = read_queue(path)
    for a in cands:  # independent reference: ASE's EMT on the original frame
        ref = a.copy()
        ref.calc = EMT()
        got = ase.io.read(q.result_path(a.info["pesdata_id"]))
        assert got.get_potential_energy() == pytest.approx(ref.get_potential_energy(),
                                                           abs=1e-6)
        np.testing.assert_allclose(got.get_forces(), ref.get_forces(), atol=1e-6)
        np.testing.assert_allclose(got.get_stress(), ref.get_stress(), atol=1e-7)
    before = store.version
    n_before = len(store.read())
    rep = import_results(store, path)
    assert rep.committed and rep.added == N and rep.matched["run"] == N and not rep.missing
    assert store.version == before + 1 and len(store.read()) == n_before + N
    assert read_queue(path).status == "imported"
    new = {a.info["selection_id"]: a for a in store.read().to_atoms()
           if a.info.get("selection") == "round1"}
    assert sorted(new) == sorted(a.info["pesdata_id"] for a in cands)
    for a in cands:
        b = new[a.info["pesdata_id"]]
        ref = a.copy()
        ref.calc = EMT()
        assert b.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-6)
        assert b.info["run"] == "12" and b.info["temperature"] == a.info["temperature"]
        assert b.info["config_type"] == "md300" and b.info["method"] == "EMT"
        assert b.info["candidate_source"] == a.info["pesdata_source"]
        np.testing.assert_array_equal(b.arrays["site"], a.arrays["site"])
    # the same results again: nothing added, no new version
    again = import_results(store, path)
    assert not again.committed and again.added == 0 and again.duplicates == N
    assert store.version == before + 1


def _result(atoms, calc=None):
    a = atoms.copy()
    a.calc = calc or EMT()
    e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
    a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
    return a


def test_a_result_not_in_the_queue_is_refused_and_nothing_committed(tmp_path, queued):
    store, path, cands = queued
    foreign = _result(emt_cells(1, seed=99)[0])
    good = _result(cands[0])
    ase.io.write(tmp_path / "mixed.extxyz", [good, foreign])
    before = store.version
    with pytest.raises(InputError, match=r"mixed.extxyz: frame 1: matches no entry of queue"):
        import_results(store, path, [tmp_path / "mixed.extxyz"])
    assert store.version == before and read_queue(path).status == "open"
    twice = tmp_path / "twice.extxyz"
    ase.io.write(twice, [good, good])
    with pytest.raises(InputError, match="frame 1: a second result for queue id"):
        import_results(store, path, [twice])
    assert store.version == before


def test_results_match_by_geometry_within_tolerance(tmp_path, queued):
    store, path, cands = queued
    rng = np.random.default_rng(0)
    close = []
    for a in cands[:3]:
        r = _result(a)
        del r.info["pesdata_id"]
        r.positions = r.positions + rng.uniform(-1e-5, 1e-5, r.positions.shape)
        close.append(r)
    close[1].positions[4] += close[1].cell[0]  # wrapped by a lattice vector: same structure
    ase.io.write(tmp_path / "close.extxyz", close)
    far = _result(cands[3])
    del far.info["pesdata_id"]
    far.positions[2] += [0.1, 0.0, 0.0]
    ase.io.write(tmp_path / "far.extxyz", far)
    before = store.version
    with pytest.raises(InputError, match=r"far.extxyz: frame 0: matches no entry.*0\.1 Å away"):
        import_results(store, path, [tmp_path / "far.extxyz"], method="EMT")
    assert store.version == before
    rep = import_results(store, path, [tmp_path / "close.extxyz"], method="EMT")
    assert rep.matched["geometry"] == 3 and rep.added == 3 and len(rep.missing) == N - 3
    assert rep.ids == [a.info["pesdata_id"] for a in cands[:3]]


def test_pesdata_id_with_another_geometry_is_refused(tmp_path, queued):
    store, path, cands = queued
    moved = _result(cands[0])
    moved.positions[0] += [0.05, 0, 0]  # e.g. a relaxation that kept the info keys
    ase.io.write(tmp_path / "moved.extxyz", moved)
    with pytest.raises(InputError, match="matches queue id .* by id, but its geometry"):
        import_results(store, path, [tmp_path / "moved.extxyz"])


def test_results_in_exported_vasp_folders_match_by_folder(tmp_path, queued):
    store, path, cands = queued
    summary = export_queue(path, tmp_path / "vasp", format="vasp")
    files = []
    for folder, a in list(zip(summary["folders"], cands, strict=True))[:2]:
        r = _result(a)
        r.info.clear()  # an OUTCAR carries no ids
        r.positions = np.round(r.positions, 5)  # and 5 decimals
        files.append(tmp_path / "vasp" / folder / "result.extxyz")
        ase.io.write(files[-1], r)
    rep = import_results(store, path, files, method="PBE-like")
    assert rep.matched["folder"] == 2 and rep.added == 2
    stored = [a for a in store.read().to_atoms() if a.info.get("selection") == "round1"]
    assert {a.info["method"] for a in stored} == {"PBE-like"}
    assert {a.info["label_source"].rsplit("/", 2)[-2] for a in stored} == set(
        list(summary["folders"])[:2])


def test_bad_labels_are_rejected_as_curate_rejects_them(tmp_path, queued):
    store, path, cands = queued
    bad = _result(cands[0])
    bad.calc.results["energy"] = float("nan")
    ase.io.write(tmp_path / "bad.extxyz", bad)
    before = store.version
    with pytest.raises(pesdata.errors.ValidationError, match=r"bad.extxyz: frame 0: field"):
        import_results(store, path, [tmp_path / "bad.extxyz"])
    assert store.version == before


# -- label run: resumability, failures, workers, calculators ---------------------------------


def test_run_resumes_and_recomputes_only_missing(tmp_path, queued, monkeypatch):
    _, path, cands = queued
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv(CALLS_ENV, str(calls))
    spec = "tests.label_calcs:counting"
    assert label_queue(path, spec).labelled == N
    first = calls.read_text().split()
    assert sorted(set(first)) == sorted(a.info["pesdata_id"] for a in cands)
    q = read_queue(path)
    gone = cands[2].info["pesdata_id"]
    q.result_path(gone).unlink()
    calls.write_text("")
    report = label_queue(path, spec)
    assert report.skipped == N - 1 and report.labelled == 1
    assert set(calls.read_text().split()) == {gone}
    with pytest.raises(ParameterError, match="would mix two levels of theory"):
        q.result_path(gone).unlink()
        label_queue(path, "emt")


def test_a_failing_structure_is_recorded_and_the_rest_labelled(tmp_path, store):
    cands = _candidates(4)
    cands[1].info["fail"] = "raise"
    cands[2].info["fail"] = "nan"
    cands[3].info["fail"] = "inf_forces"
    ids = [a.info["pesdata_id"] for a in cands]
    write_queue(tmp_path / "q", cands, pd.DataFrame({"id": ids}), store="s",
                reference_version=1, selection="flaky")
    result = _invoke("label", "run", tmp_path / "q", "--calculator",
                     "tests.label_calcs:flaky", "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    reasons = {f["id"]: f["reason"] for f in doc["failed"]}
    assert doc["labelled"] == 1 and set(reasons) == set(ids[1:])
    assert "SCF did not converge" in reasons[ids[1]]
    assert "energy is not finite" in reasons[ids[2]]
    assert "forces is not finite" in reasons[ids[3]]
    q = read_queue(tmp_path / "q")
    assert q.labelled_ids() == ids[:1] and set(q.failures()) == set(ids[1:])
    assert q.status == "open"
    assert json.loads(q.failed_path(ids[1]).read_text())["id"] == ids[1]


def test_two_workers_give_the_same_results_as_one(tmp_path):
    cands = _candidates(4, seed=11)
    led = pd.DataFrame({"id": [a.info["pesdata_id"] for a in cands]})
    for name in ("one", "two"):
        write_queue(tmp_path / name, cands, led, store="s", reference_version=1,
                    selection=name)
    assert label_queue(tmp_path / "one", "emt", workers=1).labelled == 4
    assert label_queue(tmp_path / "two", "emt", workers=2).labelled == 4
    for a in cands:
        sid = a.info["pesdata_id"]
        x = ase.io.read(read_queue(tmp_path / "one").result_path(sid))
        y = ase.io.read(read_queue(tmp_path / "two").result_path(sid))
        # the same to rounding: a reused EMT neighbour list may sum in another order
        assert x.get_potential_energy() == pytest.approx(y.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(x.get_stress(), y.get_stress(), rtol=0, atol=1e-12)


def test_lj_is_untruncated_on_a_cluster(tmp_path):
    rng = np.random.default_rng(3)
    a = ase.Atoms("Ar8", positions=rng.uniform(0, 6, (8, 3)))
    a.info["pesdata_id"] = "cluster"
    write_queue(tmp_path / "q", [a], pd.DataFrame({"id": ["cluster"]}), store="s",
                reference_version=1, selection="lj")
    assert label_queue(tmp_path / "q", "lj").labelled == 1
    got = ase.io.read(read_queue(tmp_path / "q").result_path("cluster"))
    a = read_queue(tmp_path / "q").images()[0]  # as queued (extxyz keeps 8 decimals)
    d = a.positions[:, None] - a.positions[None]
    r = np.linalg.norm(d, axis=-1)
    iu = np.triu_indices(8, 1)
    energy = np.sum(4 * (r[iu] ** -12 - r[iu] ** -6))  # every pair, ε = σ = 1
    np.fill_diagonal(r, np.inf)
    dudr = 4 * (-12 * r ** -13 + 6 * r ** -7)
    forces = -np.sum((dudr / r)[..., None] * d, axis=1)
    assert got.get_potential_energy() == pytest.approx(energy, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(got.get_forces(), forces, rtol=0, atol=1e-8)  # extxyz: %.8f
    assert "stress" not in got.calc.results  # not periodic


def test_geometry_deviation_uses_the_minimum_image():
    a = emt_cells(1, seed=5)[0]
    b = a.copy()
    b.positions[0] += a.cell[1] + [2e-4, 0, 0]
    assert geometry_deviation(a, b) == pytest.approx(2e-4, abs=1e-9)
    b.numbers[3] = 79
    assert geometry_deviation(a, b) == np.inf


# -- the commands -----------------------------------------------------------------------------


def test_cli_round_trip_with_json(tmp_path, queued):
    store, path, cands = queued
    r = _invoke("label", "export", path, tmp_path / "v", "--format", "vasp", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["folders"]) == N
    r = _invoke("label", "run", path, "--calculator", "emt", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["labelled"] == N
    r = _invoke("label", "import", store.uri, "--queue", path, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["committed"] and doc["added"] == N and doc["selection"] == "round1"
    r = _invoke("label", "import", store.uri, "--queue", path)
    assert r.exit_code == 0, r.output
    assert "nothing new" in r.stdout


def test_cli_errors(tmp_path, queued):
    store, path, _ = queued
    r = _invoke("label", "run", tmp_path / "missing", "--calculator", "emt")
    assert r.exit_code == 2 and "missing" in r.stderr and "no queue directory" in r.stderr
    r = _invoke("label", "run", path, "--calculator", "dft")
    assert r.exit_code == 2 and "unknown calculator 'dft'" in r.stderr
    r = _invoke("label", "run", path, "--calculator", "no_such_module_xyz:make")
    assert r.exit_code == 2 and "cannot import module 'no_such_module_xyz'" in r.stderr
    r = _invoke("label", "run", path, "--calculator", "tests.label_calcs:NOT_CALLABLE")
    assert r.exit_code == 2 and "no callable 'NOT_CALLABLE'" in r.stderr
    r = _invoke("label", "run", path, "--calculator", "tests.label_calcs:not_a_calculator")
    assert r.exit_code == 2 and "not an ASE calculator" in r.stderr
    assert not list((path / "results" / "failed").iterdir())  # stopped before any structure
    r = _invoke("label", "export", path, tmp_path / "o", "--format", "cif")
    assert r.exit_code == 2 and "unknown export format 'cif'" in r.stderr
    r = _invoke("label", "import", store.uri, "--queue", path)
    assert r.exit_code == 2 and "no results to import" in r.stderr


def test_real_outcar_in_an_exported_folder_and_loose(tmp_path, store):
    """A real VASP OUTCAR (Ni18, 5 printed decimals) comes back into a queue whose geometry
    carries more digits: by folder inside the export, by geometry outside it."""
    from .conftest import DATA

    outcar = DATA / "ase" / "OUTCAR_example_1"
    dft = ase.io.read(outcar)  # the independent reference of the labels
    q = dft.copy()
    q.calc = None
    q.positions += np.random.default_rng(1).uniform(-4e-6, 4e-6, q.positions.shape)
    q.info.update(pesdata_id="ni18", pesdata_source="md.traj#40", config_type="cluster")
    write_queue(tmp_path / "q", [q], pd.DataFrame({"id": ["ni18"]}), store=str(store.uri),
                reference_version=store.version, selection="ni")
    summary = export_queue(tmp_path / "q", tmp_path / "vasp", format="vasp")
    (folder,) = summary["folders"]
    (tmp_path / "vasp" / folder / "OUTCAR").write_bytes(outcar.read_bytes())
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "OUTCAR").write_bytes(outcar.read_bytes())
    rep = import_results(store, tmp_path / "q", [tmp_path / "vasp" / folder / "OUTCAR"],
                         method="PBE")
    assert rep.matched["folder"] == 1 and rep.added == 1
    (row,) = store.read().to_atoms()
    assert row.get_potential_energy() == pytest.approx(dft.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(row.get_forces(), dft.get_forces(), atol=1e-9)
    np.testing.assert_allclose(row.positions, q.positions, atol=1e-8)  # the queued geometry
    assert row.info["selection"] == "ni" and row.info["config_type"] == "cluster"
    again = import_results(store, tmp_path / "q", [tmp_path / "loose" / "OUTCAR"],
                           method="PBE")
    assert again.matched["geometry"] == 1 and not again.committed and again.duplicates == 1
