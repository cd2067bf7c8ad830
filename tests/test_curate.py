"""Validators, deduplication, conflicts, relabelling and the rejection policy."""

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from pesdata.curate import (
    CellValidator,
    ElementValidator,
    EnergyOutlierValidator,
    FiniteValidator,
    ForceOutlierValidator,
    MinDistanceValidator,
    ShapeValidator,
)
from pesdata.errors import ValidationError
from pesdata.frames import Frame

from .conftest import emt_cells


def _frame(atoms, **labels):
    f = Frame.from_atoms(atoms)
    for k, v in labels.items():
        setattr(f, k, v)
    return f


def test_shape_validator_names_the_field():
    a = bulk("Cu", cubic=True)
    issues = ShapeValidator().check(_frame(a, forces=np.zeros((3, 3))))
    assert [(i.validator, i.field) for i in issues] == [("shape", "forces")]
    assert "(3, 3)" in issues[0].message and "(4, 3)" in issues[0].message
    assert ShapeValidator().check(_frame(a, forces=np.zeros((4, 3)))) == []
    assert ShapeValidator().check(_frame(a, stress=np.zeros(5)))[0].field == "stress"


def test_finite_validator():
    a = bulk("Cu", cubic=True)
    f = np.zeros((4, 3))
    f[2, 0] = np.inf
    issues = FiniteValidator().check(_frame(a, forces=f, energy=np.nan))
    assert {i.field for i in issues} == {"forces", "energy"}
    assert FiniteValidator().check(_frame(a, energy=-1.0)) == []


def test_min_distance_validator_periodic_images():
    a = bulk("Cu", "fcc", a=3.6)  # 1 atom; nearest neighbor 2.55 Å through the images
    assert MinDistanceValidator().check(_frame(a)) == []
    squeezed = bulk("Cu", "fcc", a=1.5)  # images 1.06 Å apart, < 0.5 * 2 * 1.32
    issues = MinDistanceValidator().check(_frame(squeezed))
    assert issues and issues[0].field == "positions" and "Å apart" in issues[0].message
    mol = molecule("H2O")
    assert MinDistanceValidator().check(_frame(mol)) == []  # O-H 0.97 Å > 0.5 * (0.66 + 0.31)
    mol.positions[1] = mol.positions[0] + [0.2, 0, 0]
    assert MinDistanceValidator().check(_frame(mol))[0].validator == "overlap"


def test_cell_validator():
    a = bulk("Cu", cubic=True)
    assert CellValidator().check(_frame(a)) == []
    flat = a.copy()
    flat.cell[2] = flat.cell[0] + flat.cell[1] * 1e-5
    assert "near-singular" in CellValidator().check(_frame(flat))[0].message
    zero = a.copy()
    zero.cell[1] = 0
    assert "zero length" in CellValidator().check(_frame(zero))[0].message
    assert CellValidator().check(_frame(molecule("CH4"))) == []  # no pbc, no cell needed


def test_element_validator():
    a = Atoms("X2", positions=[[0, 0, 0], [2, 0, 0]])
    assert ElementValidator().check(_frame(a))[0].message == "unknown atomic number(s) [0]"


def test_outlier_validators_flag_unit_errors_only():
    rng = np.random.default_rng(0)
    n = 40
    stats = {
        "group": np.array(["PBE|Cu"] * n, dtype=object),
        "fmax": rng.uniform(0.5, 6.0, n),
        "energy_per_atom": -3.7 + rng.normal(0, 0.3, n),
    }
    assert ForceOutlierValidator().check_population(stats) == {}
    assert EnergyOutlierValidator().check_population(stats) == {}
    stats["fmax"][7] *= 27.2114  # Hartree-scaled forces
    stats["energy_per_atom"][3] = -3.7 * 96.485  # kJ/mol
    assert list(ForceOutlierValidator().check_population(stats)) == [7]
    assert list(EnergyOutlierValidator().check_population(stats)) == [3]
    stats["group"][:] = [f"PBE|g{i}" for i in range(n)]  # groups too small to judge
    assert ForceOutlierValidator().check_population(stats) == {}


def test_duplicates_and_conflicts_within_and_across_runs(store):
    cells = emt_cells(4)
    shifted = cells[1].copy()
    shifted.calc = SinglePointCalculator(
        shifted, energy=cells[1].get_potential_energy() + 0.1,  # 3 meV/atom
        forces=cells[1].get_forces(),
    )
    tiny = cells[2].copy()
    tiny.calc = SinglePointCalculator(
        tiny, energy=cells[2].get_potential_energy() + 0.01, forces=cells[2].get_forces() + 1e-4
    )
    report = store.curate([*cells, cells[0], shifted, tiny], method="EMT")
    assert (report.read, report.added, report.duplicates) == (7, 4, 3)
    assert len(report.conflicts) == 1
    c = report.conflicts[0]
    assert c["sources"] == ["<memory>#1", "<memory>#5"]
    assert c["energy_per_atom_diff"] == pytest.approx(0.1 / 32)
    again = store.curate([shifted, cells[3]], method="EMT")
    assert (again.added, again.duplicates, len(again.conflicts)) == (0, 2, 1)
    assert again.conflicts[0]["sources"][0] == "<memory>#1"  # the stored row's source
    assert again.committed is False and store.version == 2
    kept = store.read().to_pandas().set_index("source").loc["<memory>#1", "energy"]
    assert kept == cells[1].get_potential_energy()  # the stored label is never replaced


def test_unlabelled_then_labelled_in_one_run_keeps_the_labels(store):
    cell = emt_cells(1)[0]
    report = store.curate([cell.copy(), cell], method="EMT")
    assert (report.added, report.duplicates, report.unlabelled) == (1, 1, 1)
    df = store.read().to_pandas()
    assert len(df) == 1 and df["energy"].iloc[0] == cell.get_potential_energy()


def _bad_file(path, cells):
    bad = cells[1].copy()
    forces = cells[1].get_forces().copy()
    forces[0, 0] = np.nan
    bad.calc = SinglePointCalculator(bad, energy=cells[1].get_potential_energy(), forces=forces)
    ase.io.write(path, [cells[0], bad, cells[2]], format="extxyz")


def test_invalid_frame_rejects_whole_batch(store, tmp_path):
    _bad_file(tmp_path / "bad.xyz", emt_cells(3))
    with pytest.raises(ValidationError) as err:
        store.curate(tmp_path / "bad.xyz", method="EMT")
    msg = str(err.value)
    assert f"{tmp_path / 'bad.xyz'}: frame 1: field 'forces'" in msg and "non-finite" in msg
    assert err.value.report.rejected_by_reason == {"non_finite": 1}
    assert store.version == 1 and len(store.read()) == 0
    assert store.artefacts.list("curate_report") == []


def test_quarantine_commits_valid_frames_and_reports_the_rest(store, tmp_path):
    _bad_file(tmp_path / "bad.xyz", emt_cells(3))
    report = store.curate(tmp_path / "bad.xyz", method="EMT", quarantine=True)
    assert (report.added, report.committed, report.version) == (2, True, 2)
    assert report.rejected[0]["source"] == f"{tmp_path / 'bad.xyz'}#1"
    doc = store.artefacts.load("curate_report", store.artefacts.list("curate_report")[0])
    assert doc["rejected"][0]["reasons"][0]["field"] == "forces"
    assert doc["rejected_by_reason"] == {"non_finite": 1}


def test_new_per_atom_array_adds_a_column(store):
    cells = emt_cells(2)
    store.curate(cells[:1], method="EMT")
    tagged = cells[1].copy()
    tagged.calc = cells[1].calc
    tagged.set_tags(np.arange(len(tagged)))
    store.curate([tagged], method="EMT")
    assert "arr_tags" in store.read().dataset.schema.names
    atoms = [a for a in store.read().to_atoms() if "tags" in a.arrays]
    assert len(atoms) == 1 and atoms[0].get_tags().tolist() == list(range(32))
    assert "schema: add columns arr_tags" in store.log()["message"].tolist()


def test_batches_without_an_existing_extra_array_get_nulls(store):
    cells = emt_cells(3)
    tagged = cells[0].copy()
    tagged.calc = cells[0].calc
    tagged.set_tags(np.arange(len(tagged)))
    store.curate([tagged], method="EMT")
    store.curate(cells[1:], method="EMT")  # no tags in this batch: the column stays null
    df = store.read().to_pandas()
    assert len(df) == 3 and df["version_added"].tolist() == [3, 4, 4]
    atoms = store.read().to_atoms()
    assert "tags" in atoms[0].arrays and "tags" not in atoms[1].arrays
