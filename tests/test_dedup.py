"""The identity, duplicate and conflict rules of pesdata.curate.dedup (DESIGN §3)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from pesdata.curate import CurateReport, dedup
from pesdata.curate.dedup import ENERGY_TOL, FORCE_TOL, classify, is_conflict, label_diff
from pesdata.frames import Frame


def _cu(method="EMT", labelled=True, de=0.0, df=0.0):
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=1)
    frame = Frame.from_atoms(a, method=method, source=f"f.xyz#{method}")
    if labelled:
        a.calc = EMT()
        frame.energy = a.get_potential_energy() + de
        frame.forces = a.get_forces().copy()
        frame.forces[0, 0] += df
    return frame


def _report():
    return CurateReport(version=1, previous_version=1, files=["f.xyz"])


def _stored(frame):
    return {frame.id: {"energy": frame.energy, "forces": frame.forces, "source": "old.xyz#0"}}


def test_tolerances_are_the_documented_ones():
    assert (ENERGY_TOL, FORCE_TOL) == (1e-3, 1e-3)
    assert dedup.ENERGY_TOL is ENERGY_TOL


def test_label_diff_per_atom_energy_and_max_force_component():
    f1 = np.zeros((4, 3))
    f2 = f1.copy()
    f2[2, 1] = -0.5
    de, df = label_diff(-10.0, f1, -10.2, f2, 4)
    assert de == pytest.approx(0.05) and df == pytest.approx(0.5)
    assert label_diff(None, None, -1.0, f1, 4) == (None, None)
    assert label_diff(-1.0, f1, -1.0, np.zeros((3, 3)), 4) == (0.0, None)  # shapes differ


def test_conflict_threshold_is_strict_and_none_never_conflicts():
    assert not is_conflict(None, None)
    assert not is_conflict(ENERGY_TOL, FORCE_TOL)
    assert is_conflict(ENERGY_TOL * 1.01, None)
    assert is_conflict(None, FORCE_TOL * 1.01)


def test_duplicate_within_tolerance_is_counted_not_added():
    stored = _cu()
    n = stored.n_atoms
    incoming = _cu(de=0.5 * ENERGY_TOL * n, df=0.5 * FORCE_TOL)
    report = _report()
    kind = classify(incoming, _stored(stored), report)
    assert kind == "duplicate" and report.duplicates == 1 and report.added == 0
    assert report.conflicts == []


@pytest.mark.parametrize("de_per_atom, df", [(2 * ENERGY_TOL, 0.0), (0.0, 2 * FORCE_TOL)])
def test_conflict_beyond_1mev_per_atom_or_1e3_ev_per_a(de_per_atom, df):
    stored = _cu()
    incoming = _cu(de=de_per_atom * stored.n_atoms, df=df)
    report = _report()
    assert classify(incoming, _stored(stored), report) == "conflict"  # not spooled: stored stays
    (c,) = report.conflicts
    assert c["sources"] == ["old.xyz#0", incoming.source]
    if de_per_atom:
        assert c["energy_per_atom_diff"] == pytest.approx(de_per_atom)
    else:
        assert c["max_force_diff"] == pytest.approx(df)


def test_labelled_copy_relabels_an_unlabelled_stored_row():
    stored = _cu(labelled=False)
    incoming = _cu()
    existing = {stored.id: {"energy": None, "forces": None, "source": "old.xyz#0"}}
    report = _report()
    assert classify(incoming, existing, report) == "relabelled"
    assert report.relabelled == 1 and report.duplicates == 1  # the store holds it


@pytest.mark.parametrize("spill", [False, True])
def test_labelled_copy_supersedes_an_unlabelled_one_of_the_same_run(tmp_path, spill):
    """resolve: the unlabelled first copy is dropped for the labelled one; a later unlabelled
    copy, a later identical one and a later conflicting one are dropped, the conflict named."""
    from pesdata.curate._spool import Spool
    from pesdata.frames import frames_to_table

    copies = [_cu(labelled=False), _cu(), _cu(labelled=False), _cu(), _cu(de=0.5)]
    report = _report()
    assert [classify(f, {}, report) for f in copies] == ["added"] * 5
    spool = Spool(tmp_path / "spool")
    ids = dedup.RunIds(tmp_path / "ids.bin" if spill else None)
    for k, (f, pos) in enumerate(zip(copies, spool.append(frames_to_table(copies)), strict=True)):
        ids.record(f, pos, "added", 10 + k)
    found = dedup.resolve(ids, spool, report, tmp_path / "dedup", mem_rows=1 if spill else None)
    assert (report.added, report.duplicates) == (1, 4)
    assert spool.dropped().tolist() == [0, 2, 3, 4]  # (file 0, rows 0, 2, 3, 4)
    ((seq, conflict),) = found
    assert seq == 14 and conflict["id"] == copies[0].id
    assert conflict["energy_per_atom_diff"] == pytest.approx(0.5 / copies[0].n_atoms)


def test_same_geometry_with_another_method_is_a_new_row():
    a, b = _cu(method="EMT"), _cu(method="PBE", de=5.0)
    assert a.geometry_hash == b.geometry_hash and a.id != b.id
    report = _report()
    existing = _stored(a)
    assert classify(b, existing, report) == "added"
    assert report.added == 1 and report.conflicts == []


def test_curate_uses_the_same_rules(store):
    """End to end: the run counts what classify decides."""
    frames = [_cu(), _cu(de=0.1), _cu(method="PBE")]
    atoms = []
    for f in frames:
        a = Atoms(numbers=f.numbers, positions=f.positions, cell=f.cell, pbc=f.pbc)
        a.info["method"] = f.method
        a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces)
        atoms.append(a)
    report = store.curate(atoms)
    assert (report.added, report.duplicates, len(report.conflicts)) == (2, 1, 1)


@pytest.mark.parametrize("batch_size", [1, 2, 512])
def test_committed_order_does_not_depend_on_the_batch_size(store, batch_size):
    """An unlabelled copy, another structure, then the labelled copy: the labelled copy is
    committed where it arrived, whatever the batching."""
    cu, other = _cu(), _cu(method="PBE")
    atoms = []
    for f, labelled in ((cu, False), (other, True), (cu, True)):
        a = Atoms(numbers=f.numbers, positions=f.positions, cell=f.cell, pbc=f.pbc)
        a.info["method"] = f.method
        if labelled:
            a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces)
        atoms.append(a)
    report = store.curate(atoms, batch_size=batch_size)
    assert (report.added, report.duplicates) == (2, 1)
    assert store.read().table(["source"]).column("source").to_pylist() == [
        "<memory>#1", "<memory>#2"]
