"""The vectorised extxyz reader gives the same Atoms as ASE's, frame by frame."""

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io.extxyz import XYZError

from pesdata.errors import InputError
from pesdata.frames import Frame
from pesdata.io import read_frames
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
    with pytest.raises(XYZError, match="Frame has 2 atoms, expected 3"):  # ASE's own error
        list(iread_extxyz(tmp_path / "cut.xyz"))
    with pytest.raises(InputError, match=r"cut.xyz: frame 0: cannot parse \(XYZError: "
                                         r"ase.io.extxyz: Frame has 2 atoms, expected 3\)"):
        list(read_frames(tmp_path / "cut.xyz"))  # what users see


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


def _same(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and (
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return type(a) is type(b) and a == b


CRAFTED = [
    'Lattice="5.43 0 0 0 5.43 0 0 0 5.43" Properties=species:S:1:pos:R:3 energy=-10.0 pbc="T T T"',
    "energy=-1 free_energy=2.5e-3 n=7 big=123456789012345678901234567890 flag ok=F b=true",
    'stress="1 2 3 4 5 6 7 8 9" virial="1 0 0 0 1 0 0 0 1" uid=007 note="a b = c"',
    'v="1,2,3" w="1.5 nan inf" s=hello t="T F T" j="_JSON [1, 2]" k="_JSON {\\"a\\": 1}"',
    "a = b  c=[1 2 3] d={x} e='q r' f=\\\"g h=", "  x=1   y=2  ", "key= energy=1",
    'config_type=bulk_2 "quoted key"=1 a="b"c', "lonely", "=5", 'a="unterminated',
    "pbc=[T, T, T] energy=-442.85 Lattice=\"10.8 0 0 0 10.8 0 0 0 10.8\" x={1 2} y='3' z=[a{b]",
    'a="" b=[] c=\'it"s\' d={[x]} stress=[1 2 3] virial="1 2" e="q"r',
]


def test_fast_comment_parser_equals_ase(data, monkeypatch):
    """The fast path of the comment-line parser gives ASE's dict, line for line."""
    from ase.io import extxyz
    from ase.io.extxyz import key_val_str_to_dict as ase_kv

    from pesdata.io._extxyz import key_val_str_to_dict

    slow = []
    monkeypatch.setattr(extxyz, "key_val_str_to_dict", lambda s: slow.append(s) or ase_kv(s))

    lines = list(CRAFTED)
    for path in sorted(data.rglob("*.xyz")) + sorted(data.rglob("*.extxyz")):
        with open(path, errors="replace") as fh:
            text = fh.read().splitlines()
        k = 0
        while k < len(text) and len(lines) < 20000:
            try:
                n = int(text[k].split()[0])
            except (ValueError, IndexError):
                break
            if k + 1 < len(text):
                lines.append(text[k + 1])
            k += n + 2
    assert len(lines) > 1000
    for line in lines:
        try:
            want = ase_kv(line)
        except Exception as exc:  # noqa: BLE001 - the fast path must fail alike
            with pytest.raises(type(exc)):
                key_val_str_to_dict(line)
            continue
        assert _same(key_val_str_to_dict(line), want), line
    assert len(slow) < len(lines) / 10  # the real files take the fast path
    assert "a = b  c=[1 2 3] d={x} e='q r' f=\\\"g h=" in slow  # odd lines go to ASE
    assert CRAFTED[-2] not in slow  # brackets, braces and single quotes take the fast path


@pytest.mark.parametrize(
    "atom_lines",
    [
        ["Si 0.1 0 0 'a", "Si 2.0 0 0 b'"],
        ['Si 0.1 0 0 ""', "Si 2.0 0 0 x,y"],
    ],
    ids=["single-quoted", "empty-quotes"],
)
def test_per_atom_strings_split_as_ase_splits(tmp_path, atom_lines):
    path = tmp_path / "q.xyz"
    header = ('Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:lab:S:1 '
              'energy=-1.0 pbc="T T T"')
    path.write_text("\n".join(["2", header, *atom_lines]) + "\n")
    ours, = iread_extxyz(path)
    theirs = ase.io.read(path, format="extxyz")
    assert_same(ours, theirs)
    assert list(Frame.from_parts(ours).arrays["lab"]) == list(theirs.arrays["lab"])


@pytest.mark.parametrize("atom_lines, atom", [
    (['Si 0.1 0 0 "a b"', "Si 2.0 0 0 c"], 0),  # a quote is a character: 6 values, not 5
    (["Si 0.1 0 0 a", "Si 2.0 0 0 b extra"], 1),  # ASE would drop 'extra' silently
])
def test_more_values_than_properties_declares_is_refused(tmp_path, atom_lines, atom):
    path = tmp_path / "q.xyz"
    header = 'Properties=species:S:1:pos:R:3:lab:S:1 energy=-1.0 pbc="F F F"'
    path.write_text("\n".join(["2", header, *atom_lines]) + "\n")
    with pytest.raises(InputError, match=rf"q.xyz: frame 0: field 'Properties': atom {atom} "
                                         r"has 6 values but Properties declares 5 columns"):
        list(read_frames(path))


def test_a_missing_string_token_is_ases_error(tmp_path):
    path = tmp_path / "short.xyz"
    path.write_text("2\nProperties=species:S:1:pos:R:3:lab:S:1\nSi 0 0 0 a\nSi 2 0 0\n")
    with pytest.raises(Exception) as theirs:
        ase.io.read(path, format="extxyz")
    with pytest.raises(type(theirs.value)):
        list(iread_extxyz(path))
