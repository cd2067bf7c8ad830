"""Hostile input for curate: broken geometry, absurd coordinates, hot MD populations,
unmapped label keys, and an import path free of torch (issue 14 §2, §5; adversarial.sh D1-D5)."""

import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import pesdata
from pesdata.curate import CoordinateValidator, MinDistanceValidator, curate_new
from pesdata.curate._neighbors import neighbor_pairs
from pesdata.errors import ValidationError
from pesdata.frames import Frame

G = 'Lattice="5.43 0 0 0 5.43 0 0 0 5.43" Properties=species:S:1:pos:R:3:forces:R:3 energy=-10.0'
VALID = "2\n{h} pbc=\"T T T\"\nSi 0 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n"


def _write(path: Path, *frames: str) -> str:
    path.write_text("".join(frames))
    return str(path)


def _reasons(report) -> list[tuple[str, str, str]]:
    return [
        (e["source"].rpartition("#")[2], r["validator"], r["field"])
        for e in report.rejected
        for r in e["reasons"]
    ]


# -- no torch on the curate path ----
def test_import_pesdata_curate_pulls_in_no_heavy_module():
    code = (
        "import sys, pesdata.curate; "
        "print(sorted(m for m in ('torch', 'sklearn', 'zarr', 'faiss', 'matplotlib', 'vesin')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the neighbor search equals vesin's ----
def _pairs(i, j, d):
    return sorted(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist(),
                      np.round(d, 9).tolist(), strict=True))


def _vesin(atoms, cutoff):
    from vesin import NeighborList

    box = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
    nl = NeighborList(cutoff=cutoff, full_list=False)
    return nl.compute(atoms.positions, box, atoms.pbc.tolist(), quantities="ijd")


def _cases(data):
    frames = ase.io.read(data / "mlearn" / "Si_training.extxyz", "::10")
    tri = bulk("Si", "diamond", a=5.43)  # primitive fcc cell: triclinic, 2 atoms
    tri.set_cell([[3.9, 0, 0], [1.97, 3.26, 0], [1.73, 1.09, 3.06]], scale_atoms=True)
    small = bulk("Cu", "fcc", a=3.6)  # 1 atom, plane spacing 2.08 Å << cutoff 5 Å
    slab = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    slab.pbc = [True, True, False]
    return [(a, rc) for a in frames for rc in (1.11, 4.0)] + [
        (tri, 6.0), (small, 5.0), (slab, 4.0), (molecule("C6H6"), 2.0)
    ]


def test_neighbor_pairs_equal_vesin_on_real_and_small_cells(data):
    checked = 0
    for atoms, rc in _cases(data):
        ours = neighbor_pairs(atoms.positions, atoms.cell.array, atoms.pbc, rc)
        assert _pairs(*ours) == _pairs(*_vesin(atoms, rc))
        checked += len(ours[0])
    assert checked > 1000


def test_overlap_validator_unchanged_against_vesin_min_distance(data):
    """Same min distance ratio (hence the same verdict and message) as the vesin version."""
    from ase.data import covalent_radii

    v = MinDistanceValidator(factor=0.9)  # strict enough that real frames are flagged
    flagged = 0
    for atoms, _ in _cases(data):
        frame = Frame.from_atoms(atoms)
        radii = covalent_radii[frame.numbers]
        i, j, d = _vesin(atoms, 0.9 * 2 * radii.max())
        ratio = d / (0.9 * (radii[i] + radii[j])) if len(d) else np.array([])
        issues = v.check(frame)
        assert bool(issues) == bool((ratio < 1).any())
        if issues:
            flagged += 1
            k = np.argmin(ratio)
            assert f"{d[k]:.3f} Å apart" in issues[0].message
    assert flagged


def test_atoms_at_the_same_place_overlap():
    mol = molecule("H2O")
    mol.positions[2] = mol.positions[1]
    (issue,) = MinDistanceValidator().check(Frame.from_atoms(mol))
    assert issue.message.startswith("atoms 1 and 2 are 0.000")


# -- broken geometry is rejected frame by frame, never crashes the run (D1, D1b, D2, D5) ----
def test_nan_position_is_a_rejection_naming_frame_and_field(store, tmp_path):
    bad = f"2\n{G} pbc=\"T T T\"\nSi nan 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n"
    path = _write(tmp_path / "nanpos.xyz", VALID.format(h=G), bad)
    with pytest.raises(ValidationError, match=r"nanpos.xyz: frame 1: field 'positions'"):
        store.curate(path)
    report = store.curate(path, quarantine=True)
    assert report.committed and report.added == 1
    assert _reasons(report) == [("1", "non_finite", "positions")]


def test_all_zero_periodic_cell_is_a_rejection(store, tmp_path):
    zero = G.replace('Lattice="5.43 0 0 0 5.43 0 0 0 5.43"', 'Lattice="0 0 0 0 0 0 0 0 0"')
    path = _write(tmp_path / "zcell.xyz", VALID.format(h=zero), VALID.format(h=G))
    report = store.curate(path, quarantine=True)
    assert report.added == 1 and _reasons(report) == [("0", "cell", "cell")]


def test_atoms_1e6_apart_in_a_molecule_are_refused(store, tmp_path):
    far = ("2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-10.0 pbc=\"F F F\"\n"
           "Si 1000000 0 0 0 0 0\nSi 0 0 0 0 0 0\n")
    path = _write(tmp_path / "far.xyz", far)
    with pytest.raises(ValidationError) as err:
        store.curate(path)
    assert _reasons(err.value.report) == [("0", "coordinates", "positions")]
    assert "span 1e+06 Å along x" in err.value.report.rejected[0]["reasons"][0]["message"]


def test_coordinates_beyond_the_hash_range_are_refused(store, tmp_path):
    huge = (f"2\n{G} pbc=\"T T T\"\nSi 1e12 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n"
            f"2\n{G} pbc=\"T T T\"\nSi 2e12 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n")
    report = store.curate(_write(tmp_path / "hugepos.xyz", huge), quarantine=True)
    assert report.added == 0 and report.duplicates == 0
    assert _reasons(report) == [("0", "coordinates", "positions"),
                                ("1", "coordinates", "positions")]


def test_coordinate_validator_periodic_and_ordinary_frames(data):
    v = CoordinateValidator()
    for a in ase.io.read(data / "mlearn" / "Si_test.extxyz", ":"):
        assert v.check(Frame.from_atoms(a)) == []
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    a.positions[3] += [0, 0, 5.43 * 1e5]  # far outside along c, wraps to the same geometry
    (issue,) = v.check(Frame.from_atoms(a))
    assert "outside the periodic cell along cell vector c" in issue.message
    a.positions[3] -= [0, 0, 5.43 * (1e5 - 3)]  # a few cells out is an ordinary unwrapped atom
    assert v.check(Frame.from_atoms(a)) == []


# -- outliers are judged within their config_type ----
def _emt(rattle, seed, config_type=None):
    a = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)
    a.symbols[::4] = "Au"  # a two-element set
    a.rattle(rattle, seed=seed)
    a.calc = EMT()
    e, f = a.get_potential_energy(), a.get_forces()
    a.calc = SinglePointCalculator(a, energy=e, forces=f)
    if config_type:
        a.info["config_type"] = config_type
    return a, float(np.linalg.norm(f, axis=1).max())


def _hot_md_set(with_config_type):
    eq = [_emt(0.08, k, "eq" if with_config_type else None)[0] for k in range(40)]
    hot, seed = [], 1000
    while len(hot) < 12:  # 5000 K-like snapshots: fmax 20-32 eV/Å
        atoms, fmax = _emt(0.27, seed, "md5000K" if with_config_type else None)
        seed += 1
        if 20 <= fmax <= 32:
            hot.append(atoms)
    return eq + hot


def test_hot_md_frames_with_their_own_config_type_are_kept(tmp_path):
    pooled = pesdata.open_store(tmp_path / "pooled", create=True)
    with pytest.raises(ValidationError) as err:  # without config_type they are outliers
        pooled.curate(_hot_md_set(False), method="EMT")
    assert err.value.report.rejected_by_reason == {"force_outlier": len(err.value.report.rejected)}
    store = pesdata.open_store(tmp_path / "split", create=True)
    report = store.curate(_hot_md_set(True), method="EMT")
    assert report.rejected == [] and report.added == 52


def test_outlier_reason_names_the_population(store):
    frames = _hot_md_set(True)
    broken, _ = _emt(0.27, 1000, "md5000K")
    broken.calc.results["forces"] = broken.calc.results["forces"] * 27.2  # Hartree-scaled
    broken.positions[0] += 0.01  # another geometry
    report = store.curate([*frames, broken], method="EMT", quarantine=True)
    (entry,) = report.rejected
    (reason,) = entry["reasons"]
    assert reason["validator"] == "force_outlier"
    assert reason["population"] == {
        "method": "EMT", "composition": "AuCu3", "config_type": "md5000K", "n": 13
    }
    assert "among the 13 frames of method 'EMT', composition 'AuCu3', config_type 'md5000K'" in (
        reason["message"]
    )


# -- label-like keys that were not mapped ----
def test_gap_style_file_without_key_flags_warns_with_the_flags(store, data):
    path = data / "quirks" / "Si_tiny.xyz"
    report = store.curate(path, method="CASTEP")
    n = len(ase.io.read(path, ":"))
    assert report.warnings == [
        f"{n} frame(s) carry info key(s) 'dft_energy', 'gap_energy' but no energy was mapped: "
        "pass --energy-key dft_energy",
        f"{n} frame(s) carry per-atom 'dft_force', 'gap_force' but no forces were mapped: "
        "pass --forces-key dft_force",
        f"{n} frame(s) carry info key(s) 'dft_virial', 'gap_virial' but no stress was mapped: "
        "pass --virial-key dft_virial (a virial in eV; use --stress-key for a stress in eV/Å³)",
    ]
    assert report.summary()["warnings"] == report.warnings
    (name,) = store.artefacts.list("curate_report")
    assert store.artefacts.load("curate_report", name)["warnings"] == report.warnings


def test_per_atom_force_key_warns(tmp_path, data):
    store = pesdata.open_store(tmp_path / "s", create=True)
    src = ase.io.read(data / "mlearn" / "Cu_train_acedata.xyz", ":5")
    report = store.curate(src, method="PBE")
    assert report.warnings == [
        "5 frame(s) carry per-atom 'force' but no forces were mapped: pass --forces-key force"
    ]


def test_mapped_keys_give_no_warning(store, data):
    report = store.curate(
        data / "quirks" / "Si_tiny.xyz", method="CASTEP", energy_key="dft_energy",
        forces_key="dft_force", virial_key="dft_virial",
    )
    assert report.warnings == [] and report.unlabelled == 0


# -- a rejected first curate leaves no store behind ----
def test_curate_new_removes_the_store_it_created_when_rejected(tmp_path):
    bad = f"2\n{G} pbc=\"T T T\"\nSi nan 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n"
    path = _write(tmp_path / "bad.xyz", bad)
    with pytest.raises(ValidationError):
        curate_new(tmp_path / "new", path)
    assert not (tmp_path / "new").exists()
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(ValidationError):
        curate_new(keep, path)
    assert sorted(p.name for p in keep.iterdir()) == ["notes.txt"]
    good = _write(tmp_path / "good.xyz", VALID.format(h=G))
    report = curate_new(tmp_path / "new", good)
    assert report.committed and report.version == 2
    with pytest.raises(ValidationError):  # an existing store is never removed
        curate_new(tmp_path / "new", path)
    assert pesdata.open_store(tmp_path / "new").version == 2


def _rejected_while_another_writer_holds_the_lock(monkeypatch):
    """Make curate_new's curate fail, then let another writer take the lock before cleanup."""
    import threading

    from pesdata.curate import _curate
    from pesdata.store._lock import write_lock

    held, release = threading.Event(), threading.Event()

    def hold(lock_path):
        with write_lock(lock_path, timeout=10):
            held.set()
            release.wait(10)

    real = _curate.curate

    def rejecting(store, paths, **options):
        try:
            return real(store, paths, **options)
        except ValidationError:
            threading.Thread(target=hold, args=(store.lock_path,), daemon=True).start()
            assert held.wait(10)
            raise

    monkeypatch.setattr(_curate, "curate", rejecting)
    monkeypatch.setattr(_curate, "_CLEANUP_LOCK_TIMEOUT", 0.2)
    return release


def test_curate_new_keeps_its_error_when_the_cleanup_cannot_take_the_lock(tmp_path, monkeypatch):
    bad = f"2\n{G} pbc=\"T T T\"\nSi nan 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n"
    path = _write(tmp_path / "bad.xyz", bad)
    release = _rejected_while_another_writer_holds_the_lock(monkeypatch)
    try:
        with pytest.warns(RuntimeWarning, match=r"could not remove .*ConcurrentWriteError"), \
                pytest.raises(ValidationError) as err:
            curate_new(tmp_path / "new", path)
    finally:
        release.set()
    assert err.value.report is not None and err.value.report.rejected
    assert (tmp_path / "new").exists()  # left behind, as the warning says


def test_curate_new_keeps_its_error_when_the_cleanup_fails(tmp_path, monkeypatch):
    from pesdata.curate import _curate

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(_curate, "_artefact_dirs", broken)
    path = _write(tmp_path / "bad.xyz", f"2\n{G} pbc=\"T T T\"\nSi nan 0 0 0 0 0\nSi 1 1 1 0 0 0\n")
    with pytest.warns(RuntimeWarning, match="disk on fire"), \
            pytest.raises(ValidationError) as err:
        curate_new(tmp_path / "new", path)
    assert err.value.report.rejected


# -- labels that are not numbers are rejected with the reason, quoting the value ------------

_PLAIN = ('2\nLattice="5.43 0 0 0 5.43 0 0 0 5.43" Properties=species:S:1:pos:R:3:forces:R:3 '
          'pbc="T T T" {tag}\nSi 0 0 0 0 0 0\nSi 1.5 1.5 1.5 0 0 0\n')


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("energy=T", "energy value True is a boolean, not a number"),
        ("energy=F", "energy value False is a boolean, not a number"),
        ("energy=abc", "energy value 'abc' is not a number"),
        ('energy="1 2 3"', "energy value [1, 2, 3] is not one number (3 values)"),
    ],
    ids=["T", "F", "abc", "three"],
)
def test_energy_that_is_not_a_number_is_rejected_saying_why(store, tmp_path, tag, message):
    path = _write(tmp_path / "e.xyz", VALID.format(h=G), _PLAIN.format(tag=tag))
    report = store.curate(path, quarantine=True)
    assert report.added == 1
    (rejected,) = report.rejected
    assert rejected["source"].endswith("#1")
    assert rejected["reasons"] == [
        {"validator": "label_value", "field": "energy", "message": message, "severity": "error"}
    ]
    with pytest.raises(ValidationError, match="field 'energy'"):
        store.curate(_write(tmp_path / "e2.xyz", _PLAIN.format(tag=tag)))


def test_nan_energy_is_still_the_finite_validators(store, tmp_path):
    report = store.curate(_write(tmp_path / "n.xyz", _PLAIN.format(tag="energy=nan")),
                          quarantine=True)
    assert _reasons(report) == [("0", "non_finite", "energy")]
    assert "energy contains 1 non-finite value(s)" in report.rejected[0]["reasons"][0]["message"]


def test_forces_and_stress_that_are_not_numbers_are_rejected(store, tmp_path):
    bool_forces = ('2\nProperties=species:S:1:pos:R:3:forces:L:3 energy=1.0 pbc="F F F"\n'
                   "Si 0 0 0 T T T\nSi 1.5 1.5 1.5 F F F\n")
    text_forces = ('2\nProperties=species:S:1:pos:R:3:forces:S:3 energy=1.0 pbc="F F F"\n'
                   "Si 0 0 0 a b c\nSi 1.5 1.5 1.5 d e f\n")
    text_stress = _PLAIN.format(tag='energy=-1.0 my_stress="a b c d e f"')
    path = _write(tmp_path / "fs.xyz", bool_forces, text_forces, text_stress)
    report = store.curate(path, quarantine=True, stress_key="my_stress")
    assert _reasons(report) == [
        ("0", "label_value", "forces"), ("1", "label_value", "forces"),
        ("2", "label_value", "stress"),
    ]
    messages = [e["reasons"][0]["message"] for e in report.rejected]
    assert messages[0] == ("forces value [[True, True, True], [False, False, False]] holds "
                           "booleans, not numbers")
    assert messages[1] == ("forces value [['a', 'b', 'c'], ['d', 'e', 'f']] is not an array "
                           "of numbers")
    assert messages[2] == "stress value 'a b c d e f' is not an array of numbers"


def test_in_memory_bool_energy_is_rejected(store):
    a = bulk("Si")
    a.calc = SinglePointCalculator(a, energy=True)
    report = store.curate([a], method="X", quarantine=True)
    assert report.rejected[0]["reasons"][0]["message"] == (
        "energy value True is a boolean, not a number"
    )
