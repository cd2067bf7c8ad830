"""The vectorised extxyz reader gives the same Atoms as ASE's, frame by frame."""

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

from pesdata.frames import Frame
from pesdata.io._extxyz import iread_extxyz

from .conftest import DATA

FILES = [
    "mlearn/Si_training.extxyz", "mlearn/Si_test.extxyz", "mlearn/Cu_test.extxyz",
    "mlearn/Cu_train_acedata.xyz", "tio2/TiO2_aenet_subset.extxyz", "quirks/Si_tiny.xyz",
]


def assert_same(parts, atoms):
    """Our parts make the same Frame as ASE's Atoms (labels, arrays, info, hashes)."""
    a, b = Frame.from_parts(parts), Frame.from_atoms(atoms)
    assert a.id == b.id and a.geometry_hash == b.geometry_hash
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.cell, b.cell)
    np.testing.assert_array_equal(a.pbc, b.pbc)
    for k in ("energy", "forces", "stress"):
        x, y = getattr(a, k), getattr(b, k)
        assert (x is None) == (y is None), k
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert set(a.arrays) == set(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
        assert np.asarray(a.arrays[k]).dtype == np.asarray(b.arrays[k]).dtype, k
    assert set(a.info) == set(b.info)
    for k in a.info:
        np.testing.assert_array_equal(a.info[k], b.info[k])
    assert (a.method, a.config_type, a.group) == (b.method, b.config_type, b.group)


@pytest.mark.parametrize("name", FILES)
def test_same_as_ase_on_real_files(name):
    ours = list(iread_extxyz(DATA / name))
    ref = ase.io.read(DATA / name, ":", format="extxyz")
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        assert_same(a, b)


def test_same_as_ase_on_odd_columns(tmp_path):
    a = bulk("Cu", cubic=True) * (2, 1, 1)
    a.arrays["flag"] = np.array([True, False] * 4)
    a.arrays["label"] = np.array(["x", "y"] * 4)
    a.arrays["count"] = np.arange(8)
    a.set_initial_charges(np.linspace(-1, 1, 8))
    a.set_initial_magnetic_moments(np.ones(8))
    a.info["note"] = "two words"
    a.info["flag"] = True
    a.info["vec"] = np.array([1.5, 2.5])
    a.calc = SinglePointCalculator(
        a, energy=-1.0, forces=np.full((8, 3), 0.1), stress=np.arange(6.0), magmoms=np.ones(8)
    )
    m = molecule("CH3CH2OH")
    m.set_constraint(FixAtoms([0, 2]))  # move_mask column: ASE's reader takes this frame
    iso = molecule("H2O")
    iso.calc = SinglePointCalculator(iso, energy=-14.0, forces=np.zeros((3, 3)))
    ase.io.write(tmp_path / "odd.xyz", [a, m, iso], format="extxyz")
    ours = list(iread_extxyz(tmp_path / "odd.xyz"))
    ref = ase.io.read(tmp_path / "odd.xyz", ":")
    for x, y in zip(ours, ref, strict=True):
        assert_same(x, y)


def test_plain_xyz_and_truncated_file(tmp_path):
    (tmp_path / "plain.xyz").write_text("2\nwater-ish\nO 0 0 0\nH 0 0 0.97\n")
    assert_same(next(iread_extxyz(tmp_path / "plain.xyz")), ase.io.read(tmp_path / "plain.xyz"))
    (tmp_path / "cut.xyz").write_text("3\n\nO 0 0 0\nH 0 0 0.97\n")
    with pytest.raises(Exception, match="Frame has 2 atoms, expected 3"):
        list(iread_extxyz(tmp_path / "cut.xyz"))


def test_string_columns_same_as_ase(tmp_path):
    """S:1 and S:k columns come as object arrays of str from both readers, and are stored."""
    a = bulk("Cu", cubic=True)
    a.arrays["site"] = np.array(["A1", "B", "c", "T"], dtype=object)
    a.arrays["pair"] = np.array([["x", "y"]] * 4)
    a.arrays["n"] = np.arange(4)
    b = a.copy()
    b.positions += 0.1
    b.arrays["site"] = np.array(["1", "2", "3", "4"])  # numeric-looking strings stay strings
    ase.io.write(tmp_path / "s.xyz", [a, b], format="extxyz")
    ours = list(iread_extxyz(tmp_path / "s.xyz"))
    ref = ase.io.read(tmp_path / "s.xyz", ":")
    for x, y in zip(ours, ref, strict=True):
        assert_same(x, y)
        assert x.arrays["site"].dtype == object and x.arrays["pair"].shape == (4, 2)
    assert ours[1].arrays["site"].tolist() == ["1", "2", "3", "4"]
    from pesdata.frames import frames_to_table, table_to_atoms

    back = table_to_atoms(frames_to_table([Frame.from_parts(p) for p in ours]))
    for got, want in zip(back, ref, strict=True):
        for k in ("site", "pair"):
            assert got.arrays[k].dtype == want.arrays[k].dtype == object
            np.testing.assert_array_equal(got.arrays[k], want.arrays[k])


@pytest.mark.parametrize("name", ["mlearn/Si_test.extxyz", "quirks/Si_tiny.xyz"])
def test_compressed_real_file_same_as_ase(tmp_path, name):
    import gzip

    packed = tmp_path / (name.rsplit("/", 1)[1] + ".gz")
    packed.write_bytes(gzip.compress((DATA / name).read_bytes()))
    ours = list(iread_extxyz(packed))
    ref = ase.io.read(packed, ":", format="extxyz")
    assert len(ours) == len(ref) > 0
    for a, b in zip(ours, ref, strict=True):
        assert_same(a, b)
