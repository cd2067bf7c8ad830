"""extxyz → store → (export | Snapshot.to_atoms) gives what ``ase.io.read`` gives for the file.

Frames are generated (strained triclinic alloys, slabs, molecules without a cell, stress,
energy-only and unlabelled frames) with per-atom arrays of every kind (float with 1 and k
columns, int, bool, string with 1 and 2 columns) and info values of every type ASE's extxyz
keeps (int, float, bool, str, 1-D arrays of each, a 3×3 matrix, nested lists and dicts), written
with ``ase.io.write``, curated, and compared with ``ase.io.read`` of the same file value by value
and dtype kind by dtype kind: numbers, positions, cell, pbc, arrays, info, calculator results.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.singlepoint import SinglePointCalculator

import pesdata

from .conftest import ROOT

METHOD = "X"


def _strained_alloy(rng: np.random.Generator) -> Atoms:
    """Triclinic, strained Cu/Ni/Au fcc cell with a full set of labels and extras."""
    a = bulk("Cu", "fcc", a=3.6) * (2, 2, 1)
    strain = np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3))
    a.set_cell(a.cell.array @ strain, scale_atoms=True)
    a.rattle(0.05, seed=1)
    a.numbers = rng.choice([28, 29, 79], size=len(a))
    n = len(a)
    a.arrays["q_eff"] = rng.normal(size=n)  # float, 1 column
    a.arrays["dipole_at"] = rng.normal(size=(n, 3))  # float, k columns
    a.arrays["shell"] = rng.integers(-3, 4, size=n)  # int
    a.arrays["fixed_flag"] = rng.random(n) < 0.5  # bool
    a.arrays["site"] = np.array([f"s{i % 3}" for i in range(n)], dtype=object)  # string
    a.arrays["site_pair"] = np.array([[f"a{i}", f"b{i}"] for i in range(n)])  # string, 2 cols
    a.info.update(
        n_md_step=120,
        temperature=812.5,
        converged=True,
        note="strained alloy",
        kpts=np.array([4, 4, 2]),
        weights=np.array([0.25, 0.5, 0.25]),
        flags=np.array([True, False, True]),
        labels=["bulk", "alloy"],
        mixed=[1, "two", 3.0],
        settings={"xc": "PBE", "encut": 520, "smear": {"kind": "mp", "width": 0.1}},
        matrix=np.arange(9.0).reshape(3, 3),
    )
    a.calc = SinglePointCalculator(
        a,
        energy=-3.75 * n,
        free_energy=-3.76 * n,
        forces=rng.normal(scale=0.3, size=(n, 3)),
        stress=rng.normal(scale=0.01, size=6),
        magmoms=rng.normal(size=n),
    )
    return a


def _slab(rng: np.random.Generator) -> Atoms:
    """Ni/Cu (111) slab, pbc T T F, energy and forces, a string and a bool column."""
    s = fcc111("Ni", size=(2, 2, 3), vacuum=6.0)
    del s.info["adsorbate_info"]  # a dict of arrays ASE's extxyz writer skips
    s.numbers[rng.random(len(s)) < 0.4] = 29
    s.arrays["site"] = np.array(["top" if z > 12 else "bulk" for z in s.positions[:, 2]],
                                dtype=object)
    s.arrays["fixed_flag"] = s.positions[:, 2] < 8.5
    s.info["miller"] = np.array([1, 1, 1])
    s.info["termination"] = "Ni-rich"
    s.calc = SinglePointCalculator(s, energy=-55.5, forces=rng.normal(scale=0.2, size=(12, 3)))
    return s


def _molecule() -> Atoms:
    """A molecule without a cell: energy only, an int column."""
    m = molecule("CH3CH2OH")
    m.arrays["shell"] = np.arange(len(m))
    m.info["charge_state"] = 0
    m.info["spin"] = 0.5
    m.calc = SinglePointCalculator(m, energy=-42.125)
    return m


def _unlabelled() -> Atoms:
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.info["origin"] = "generated"
    return si


def _energy_only_periodic(rng: np.random.Generator) -> Atoms:
    c = bulk("Cu", "fcc", a=3.62, cubic=True)
    c.rattle(0.02, seed=3)
    c.arrays["q_eff"] = rng.normal(size=len(c))
    c.calc = SinglePointCalculator(c, energy=-14.5)
    return c


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    """The generated extxyz and a store curated from it."""
    tmp = tmp_path_factory.mktemp("types")
    rng = np.random.default_rng(14)
    images = [
        _strained_alloy(rng),
        _slab(rng),
        _molecule(),
        _unlabelled(),
        _energy_only_periodic(rng),
        _strained_alloy(rng),
    ]
    path = tmp / "generated.xyz"
    ase.io.write(path, images, format="extxyz")
    store = pesdata.open_store(tmp / "store", create=True)
    report = store.curate([path], method=METHOD)
    assert report.rejected == [] and report.added == len(images)
    return path, tmp / "store"


def assert_same_value(got, ref, where: str) -> None:
    """Equal values of the same dtype kind (dicts key by key)."""
    if isinstance(ref, dict):
        assert isinstance(got, dict), f"{where}: {type(got).__name__} instead of dict"
        assert set(got) == set(ref), where
        for key in ref:
            assert_same_value(got[key], ref[key], f"{where}.{key}")
        return
    g, r = np.asarray(got), np.asarray(ref)
    assert g.shape == r.shape, f"{where}: shape {g.shape} != {r.shape}"
    assert g.dtype.kind == r.dtype.kind, f"{where}: dtype {g.dtype} != {r.dtype}"
    if r.dtype.kind == "O":  # mixed lists: element by element
        for k, (x, y) in enumerate(zip(g.reshape(-1), r.reshape(-1), strict=True)):
            assert_same_value(x, y, f"{where}[{k}]")
    else:
        np.testing.assert_array_equal(g, r, err_msg=where)


def assert_same_atoms(got: Atoms, ref: Atoms, where: str) -> None:
    """``got`` (from the store) carries what ASE read for the same frame."""
    np.testing.assert_array_equal(got.numbers, ref.numbers, err_msg=where)
    np.testing.assert_array_equal(got.positions, ref.positions, err_msg=where)
    np.testing.assert_array_equal(got.cell.array, ref.cell.array, err_msg=where)
    np.testing.assert_array_equal(got.pbc, ref.pbc, err_msg=where)
    assert set(got.arrays) == set(ref.arrays), where
    for name, value in ref.arrays.items():
        assert_same_value(got.arrays[name], value, f"{where}: arrays[{name!r}]")
    info = dict(got.info)
    assert info.pop("method") == METHOD, where
    assert set(info) == set(ref.info), where
    for key, value in ref.info.items():
        assert_same_value(info[key], value, f"{where}: info[{key!r}]")
    assert (got.calc is None) == (ref.calc is None), where
    if ref.calc is not None:
        assert set(got.calc.results) == set(ref.calc.results), where
        for key, value in ref.calc.results.items():
            assert_same_value(got.calc.results[key], value, f"{where}: results[{key!r}]")


def _by_source(store_path: Path) -> list[Atoms]:
    snap = pesdata.open_store(store_path).read()
    atoms = snap.to_atoms()
    order = [int(s.rsplit("#", 1)[1]) for s in snap.to_pandas()["source"]]
    return [a for _, a in sorted(zip(order, atoms, strict=True), key=lambda p: p[0])]


def test_generated_file_holds_every_kind(written):
    """The comparison below is only as good as what ASE reads back: check it is all there."""
    ref = ase.io.read(written[0], ":")
    kinds = {v.dtype.kind for a in ref for k, v in a.arrays.items()
             if k not in ("numbers", "positions")}
    assert kinds == {"f", "i", "b", "O"}
    assert any(v.ndim == 2 and v.dtype.kind == "O" for a in ref for v in a.arrays.values())
    info_types = {type(v).__name__ for a in ref for v in a.info.values()}
    assert {"int64", "float64", "bool", "str", "ndarray", "list", "dict"} <= info_types
    assert [a.pbc.tolist() for a in ref[:3]] == [[True] * 3, [True, True, False], [False] * 3]
    assert ref[3].calc is None and set(ref[4].calc.results) == {"energy"}
    assert {"stress", "free_energy", "magmoms"} <= set(ref[0].calc.results)


def test_snapshot_to_atoms_equals_ase_read(written):
    path, store_path = written
    ref = ase.io.read(path, ":")
    got = _by_source(store_path)
    assert len(got) == len(ref)
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        assert_same_atoms(g, r, f"to_atoms frame {i}")


def test_export_read_back_equals_ase_read(written, tmp_path):
    path, store_path = written
    ref = ase.io.read(path, ":")
    store = pesdata.open_store(store_path)
    out = tmp_path / "export.xyz"
    assert store.export(out) == len(ref)
    sources = [int(s.rsplit("#", 1)[1]) for s in store.read().to_pandas()["source"]]
    exported = ase.io.read(out, ":")
    for i, g in zip(sources, exported, strict=True):
        assert_same_atoms(g, ref[i], f"export frame {i}")


def test_export_cli_read_back_equals_ase_read(written, tmp_path):
    path, store_path = written
    exe = Path(sys.executable).with_name("pesdata")
    if not exe.exists():
        exe = ROOT / ".venv" / "bin" / "pesdata"
    out = tmp_path / "cli.xyz"
    run = subprocess.run([str(exe), "export", str(store_path), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    ref = ase.io.read(path, ":")
    sources = [int(s.rsplit("#", 1)[1])
               for s in pesdata.open_store(store_path).read().to_pandas()["source"]]
    for i, g in zip(sources, ase.io.read(out, ":"), strict=True):
        assert_same_atoms(g, ref[i], f"cli export frame {i}")


def test_reingesting_the_export_adds_nothing(written, tmp_path):
    """Export → curate is a no-op: same geometry and method, same labels."""
    _, store_path = written
    store = pesdata.open_store(store_path)
    out = tmp_path / "again.xyz"
    store.export(out)
    report = store.curate([out], method=METHOD)
    assert report.added == 0 and report.conflicts == [] and report.rejected == []


# -- per-atom strings extxyz cannot hold are refused at curate time ---------------------------

@pytest.mark.parametrize(
    ("values", "bad"),
    [
        (["a b", "c"], "'a b'"),
        (["a", ""], "''"),
        (["a", "tab\there"], "'tab\\there'"),
        ([["x", "y z"], ["u", "v"]], "'y z'"),
    ],
    ids=["space", "empty", "tab", "two-columns"],
)
def test_per_atom_strings_with_whitespace_are_refused(tmp_path, values, bad):
    from pesdata.errors import SchemaError

    store = pesdata.open_store(tmp_path / "store", create=True)
    a = Atoms("Si2", [[0, 0, 0], [1.4, 1.4, 1.4]], cell=[5.4] * 3, pbc=True)
    a.arrays["lab"] = np.array(values, dtype=object)
    a.calc = SinglePointCalculator(a, energy=-1.0)
    with pytest.raises(SchemaError) as err:
        store.curate([a], method=METHOD)
    msg = str(err.value)
    assert "'lab'" in msg and bad in msg and "atom " in msg
    assert "non-empty and free of whitespace to be written to extxyz" in msg


def test_per_atom_strings_without_whitespace_export_and_read_back(tmp_path):
    store = pesdata.open_store(tmp_path / "store", create=True)
    a = Atoms("Si2", [[0, 0, 0], [1.4, 1.4, 1.4]], cell=[5.4] * 3, pbc=True)
    a.arrays["lab"] = np.array(['"a', "b,c"], dtype=object)
    a.calc = SinglePointCalculator(a, energy=-1.0)
    store.curate([a], method=METHOD)
    out = tmp_path / "out.xyz"
    store.export(out)
    assert list(ase.io.read(out).arrays["lab"]) == ['"a', "b,c"]
