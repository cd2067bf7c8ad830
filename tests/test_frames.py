"""Atoms ⇄ Arrow conversion, key mapping and content hashing."""

import numpy as np
import pyarrow as pa
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from pesdata.errors import SchemaError
from pesdata.frames import Frame, LabelKeys, frames_to_table, geometry_hash, table_to_atoms


def _cu(energy=-3.0):
    a = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    a.calc = SinglePointCalculator(
        a, energy=energy, forces=np.arange(6.0).reshape(2, 3), stress=np.arange(6.0) * 0.01
    )
    return a


def test_geometry_hash_rounds_to_micro_angstrom():
    a = _cu()
    h = geometry_hash(a.numbers, a.positions, a.cell.array, a.pbc)
    moved = a.positions + 4e-7  # below the 1e-6 Å rounding
    assert geometry_hash(a.numbers, moved, a.cell.array, a.pbc) == h
    moved = a.positions + 3e-6
    assert geometry_hash(a.numbers, moved, a.cell.array, a.pbc) != h
    assert geometry_hash(a.numbers, a.positions, a.cell.array, [True, True, False]) != h
    assert geometry_hash(a.numbers[::-1], a.positions, a.cell.array, a.pbc) == h  # same Z
    b = a.copy()
    b.numbers[0] = 28
    assert geometry_hash(b.numbers, b.positions, b.cell.array, b.pbc) != h


def test_id_depends_on_method_not_labels():
    a = _cu()
    f1 = Frame.from_atoms(a, method="PBE")
    f2 = Frame.from_atoms(_cu(energy=-9.0), method="PBE")
    f3 = Frame.from_atoms(a, method="EMT")
    assert f1.id == f2.id and f1.geometry_hash == f3.geometry_hash and f1.id != f3.id


def test_missing_labels_stay_null():
    a = bulk("Si", "diamond", a=5.43)
    table = frames_to_table([Frame.from_atoms(a)])
    assert table.column("energy").null_count == 1
    assert table.column("forces").null_count == 1
    assert table.column("stress").null_count == 1
    back = table_to_atoms(table)[0]
    assert back.calc is None


def test_key_mapping_and_virial():
    a = bulk("Si", "diamond", a=5.43)
    a.info["dft_energy"] = -10.5
    a.arrays["dft_force"] = np.ones((2, 3))
    virial = np.arange(9.0).reshape(3, 3)
    virial = virial + virial.T
    a.info["dft_virial"] = virial.reshape(-1)
    f = Frame.from_atoms(
        a, keys=LabelKeys(energy="dft_energy", forces="dft_force", virial="dft_virial")
    )
    assert f.energy == -10.5
    np.testing.assert_array_equal(f.forces, np.ones((2, 3)))
    expected = -virial / a.get_volume()
    np.testing.assert_allclose(
        f.stress, [expected[0, 0], expected[1, 1], expected[2, 2], expected[1, 2],
                   expected[0, 2], expected[0, 1]]
    )
    assert "dft_energy" not in f.info and "dft_force" not in f.arrays


def test_full_stress_matrix_becomes_voigt():
    a = bulk("Cu", "fcc", a=3.6)
    s = np.array([[1.0, 6, 5], [6, 2, 4], [5, 4, 3]])
    a.info["my_stress"] = s
    f = Frame.from_atoms(a, keys=LabelKeys(stress="my_stress"))
    np.testing.assert_array_equal(f.stress, [1, 2, 3, 4, 5, 6])


def test_table_round_trip_keeps_arrays_info_and_calc_extras():
    a = _cu()
    forces, stress = a.get_forces(), a.get_stress()
    a.arrays["site"] = np.array(["a", "b"])
    a.set_initial_magnetic_moments([0.5, -0.5])
    a.info["temperature"] = 300.0
    a.info["vec"] = np.array([1, 2, 3])
    a.info["config_type"] = "bulk"
    a.calc.results["magmoms"] = np.array([0.4, -0.4])
    a.calc.results["free_energy"] = -3.1
    table = frames_to_table([Frame.from_atoms(a, method="PBE", group="g1")])
    b = table_to_atoms(table)[0]
    assert b.info["temperature"] == 300.0 and b.info["config_type"] == "bulk"
    assert b.info["group"] == "g1" and b.info["method"] == "PBE"
    np.testing.assert_array_equal(b.info["vec"], [1, 2, 3])
    assert b.info["vec"].dtype == a.info["vec"].dtype
    np.testing.assert_array_equal(b.arrays["site"], ["a", "b"])
    np.testing.assert_array_equal(b.get_initial_magnetic_moments(), [0.5, -0.5])
    np.testing.assert_array_equal(b.calc.results["magmoms"], [0.4, -0.4])
    assert b.calc.results["free_energy"] == -3.1
    assert b.get_potential_energy() == -3.0
    np.testing.assert_array_equal(b.get_forces(), forces)
    np.testing.assert_array_equal(b.get_stress(), stress)


def test_partial_labels_mixed_in_one_batch():
    frames = [Frame.from_atoms(_cu()), Frame.from_atoms(Atoms("H2", [[0, 0, 0], [0, 0, 0.74]]))]
    frames[1].energy = -1.0
    back = table_to_atoms(frames_to_table(frames))
    assert back[1].get_potential_energy() == -1.0
    assert "forces" not in back[1].calc.results and "stress" not in back[1].calc.results
    np.testing.assert_array_equal(back[0].get_forces(), frames[0].forces)


@pytest.mark.parametrize("bad", [np.array([1.0, 2.0]), "text"])
def test_non_scalar_energy_becomes_nan_for_validators(bad):
    a = bulk("Cu")
    a.info["e"] = bad
    f = Frame.from_atoms(a, keys=LabelKeys(energy="e"))
    assert np.isnan(f.energy)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "energy value True is a boolean, not a number"),
        (np.bool_(False), "energy value False is a boolean, not a number"),
        ("abc", "energy value 'abc' is not a number"),
        (np.array([1, 2, 3]), "energy value [1, 2, 3] is not one number (3 values)"),
        (np.array([]), "energy value [] is not one number (0 values)"),
        ("x" * 500, "energy value '" + "x" * 79 + "... (502 characters) is not a number"),
    ],
    ids=["bool", "numpy-bool", "string", "three", "none", "long-string"],
)
def test_energy_that_is_not_a_number_says_why(value, reason):
    a = bulk("Cu")
    a.info["energy"] = value
    f = Frame.from_atoms(a)
    assert np.isnan(f.energy)
    assert f.label_errors == {"energy": reason}


@pytest.mark.parametrize("value", [-3.5, np.float32(-3.5), np.array([-3.5]), 7, "-3.5"])
def test_energy_that_is_one_number_is_taken(value):
    a = bulk("Cu")
    a.info["energy"] = value
    f = Frame.from_atoms(a)
    assert f.energy == float(value if not isinstance(value, np.ndarray) else value[0])
    assert f.label_errors == {}


def test_nan_energy_is_left_to_the_finite_validator():
    a = bulk("Cu")
    a.calc = SinglePointCalculator(a, energy=float("nan"))
    f = Frame.from_atoms(a)
    assert np.isnan(f.energy) and f.label_errors == {}


def test_forces_and_stress_that_are_not_numbers_say_why():
    a = bulk("Cu", cubic=True)
    n = len(a)
    a.arrays["f"] = np.array([["a", "b", "c"]] * n, dtype=object)
    a.info["s"] = np.array([True] * 6)
    f = Frame.from_atoms(a, keys=LabelKeys(forces="f", stress="s"))
    assert f.forces.shape == (n, 3) and np.isnan(f.forces).all()
    assert f.stress.shape == (6,) and np.isnan(f.stress).all()
    assert f.label_errors["forces"].startswith("forces value [['a', 'b', 'c'],")
    assert f.label_errors["forces"].endswith("is not an array of numbers")
    assert f.label_errors["stress"] == (
        "stress value [True, True, True, True, True, True] holds booleans, not numbers"
    )
    b = bulk("Cu", cubic=True)
    b.info["v"] = "not a virial"
    g = Frame.from_atoms(b, keys=LabelKeys(virial="v"))
    assert g.label_errors == {
        "stress": "virial 'v' value 'not a virial' is not an array of numbers"
    }
    assert np.isnan(g.stress).all() and g.stress.shape == (6,)


def test_constraints_round_trip_as_move_mask():
    from ase.constraints import FixAtoms, FixCartesian

    a = bulk("Cu", cubic=True)
    a.set_constraint(FixAtoms([1, 3]))
    back = table_to_atoms(frames_to_table([Frame.from_atoms(a)]))[0]
    assert isinstance(back.constraints[0], FixAtoms)
    assert sorted(back.constraints[0].index.tolist()) == [1, 3]
    b = bulk("Cu", cubic=True)
    b.set_constraint(FixCartesian(0, mask=[True, False, True]))
    back = table_to_atoms(frames_to_table([Frame.from_atoms(b)]))[0]
    fixed = {c.index[0]: c.mask.tolist() for c in back.constraints if c.mask.any()}
    assert fixed == {0: [True, False, True]}


# -- hashing: pinned values and the int64 range ------------------------------------------------


def test_geometry_hash_of_ordinary_frames_is_pinned():
    """Hashes computed before the overflow fix: stored ids must stay valid."""
    a = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    a.positions[0] += [0.1234567, -0.5, 2.0000005]
    assert geometry_hash(a.numbers, a.positions, a.cell.array, a.pbc) == (
        "84fcc4ea4fb5928eddd9f6fa309d4ff7"
    )
    m = Atoms("H2O", positions=[[0, 0, 0], [0.0, 0.757, 0.586], [-12345.678901, 0.0, -0.586]])
    assert geometry_hash(m.numbers, m.positions, m.cell.array, m.pbc) == (
        "1629038bc29e7933976d95000523dd7d"
    )
    assert Frame.from_atoms(m, method="PBE").id == "3f3a52bd4384721ec71ee7036efd7600"


def test_huge_and_non_finite_coordinates_hash_apart():
    z, cell, pbc = np.array([14, 14]), np.eye(3) * 5.43, [True] * 3
    xs = [1e12, 2e12, -1e12, 1e300, np.inf, -np.inf, np.nan, 9.3e10, 9.1e10, 0.0]
    hashes = [geometry_hash(z, np.array([[x, 0, 0], [1.5, 1.5, 1.5]]), cell, pbc) for x in xs]
    assert len(set(hashes)) == len(xs)
    # a huge cell too, and the hash is stable
    big = np.eye(3) * 1e12
    h = geometry_hash(z, np.zeros((2, 3)), big, pbc)
    assert h == geometry_hash(z, np.zeros((2, 3)), big.copy(), pbc)
    assert h != geometry_hash(z, np.zeros((2, 3)), big * 2, pbc)
    # below the old overflow the 1e-6 Å rounding still holds
    near = np.array([[9.1e10, 0, 0], [0, 0, 0]])
    assert geometry_hash(z, near, cell, pbc) == geometry_hash(z, near + [[4e-7, 0, 0], [0, 0, 0]],
                                                              cell, pbc)


# -- MACE REF_* labels --------------------------------------------------------------------------


def test_ref_labels_are_mapped_when_nothing_else_is_there():
    a = bulk("Si", "diamond", a=5.43)
    a.info["REF_energy"] = -10.5
    a.arrays["REF_forces"] = np.full((2, 3), 0.25)
    a.info["REF_stress"] = np.arange(6.0)
    f = Frame.from_atoms(a)
    assert f.energy == -10.5
    np.testing.assert_array_equal(f.forces, np.full((2, 3), 0.25))
    np.testing.assert_array_equal(f.stress, np.arange(6.0))
    assert not {"REF_energy", "REF_stress"} & set(f.info) and "REF_forces" not in f.arrays


def test_ref_virial_becomes_stress_and_named_keys_win():
    a = bulk("Si", "diamond", a=5.43)
    virial = np.array([[1.0, 0.1, 0.2], [0.1, 2.0, 0.3], [0.2, 0.3, 3.0]])
    a.info["REF_virial"] = virial.reshape(-1)
    a.info["REF_energy"] = -1.0
    a.info["mine"] = -2.0
    f = Frame.from_atoms(a, keys=LabelKeys(energy="mine"))
    assert f.energy == -2.0 and f.info["REF_energy"] == -1.0  # the named key wins
    s = -virial / a.get_volume()
    np.testing.assert_allclose(f.stress, [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    # a calculator label wins over REF_*
    b = _cu(energy=-3.0)
    b.info["REF_energy"] = -7.0
    assert Frame.from_atoms(b).energy == -3.0
    # no cell volume: the virial cannot become a stress and stays in info
    m = Atoms("H2", [[0, 0, 0], [0, 0, 0.74]])
    m.info["REF_virial"] = np.ones(9)
    fm = Frame.from_atoms(m)
    assert fm.stress is None and "REF_virial" in fm.info


def test_ref_labels_from_an_extxyz_file(tmp_path):
    import ase.io

    from pesdata.io import read_frames

    a = bulk("Cu", cubic=True)
    a.info["REF_energy"] = -14.25
    a.arrays["REF_forces"] = np.arange(12.0).reshape(4, 3) / 10
    ase.io.write(tmp_path / "mace.xyz", [a, a], format="extxyz")
    frames = list(read_frames(tmp_path / "mace.xyz"))
    assert [f.energy for f in frames] == [-14.25, -14.25]
    np.testing.assert_array_equal(frames[1].forces, a.arrays["REF_forces"])


# -- per-atom array kinds and schema clashes ---------------------------------------------------


def _with(name, value, source):
    a = Atoms("Si2", [[0, 0, 0], [1.4, 1.4, 1.4]], cell=np.eye(3) * 5.43, pbc=True)
    a.positions[0, 0] += sum(map(ord, source)) * 1e-3  # distinct geometries
    if value is not None:
        a.arrays[name] = value
    return Frame.from_atoms(a, source=source)


def test_string_arrays_are_stored_as_strings_and_come_back_as_ase_reads_them():
    frames = [
        _with("site", np.array(["A", "B"], dtype=object), "f#0"),
        _with("site", np.array(["long_label", "é"]), "f#1"),  # <U in memory
    ]
    frames[0].arrays["pair"] = np.array([["a", "b"], ["c", "d"]], dtype=object)
    frames[1].arrays["pair"] = np.array([["e", "f"], ["g", "h"]], dtype=object)
    table = frames_to_table(frames)
    assert table.schema.field("arr_site").type == pa.list_(pa.string())
    # Lance cannot store fixed-size lists of strings: a list per atom, k in the metadata
    assert table.schema.field("arr_pair").type == pa.list_(pa.list_(pa.string()))
    assert table.schema.field("arr_pair").metadata[b"width"] == b"2"
    back = table_to_atoms(table)
    assert back[0].arrays["site"].dtype == object
    assert back[1].arrays["site"].tolist() == ["long_label", "é"]
    assert back[1].arrays["pair"].dtype == object and back[1].arrays["pair"].shape == (2, 2)
    assert back[1].arrays["pair"].tolist() == [["e", "f"], ["g", "h"]]


def test_object_arrays_that_are_not_strings_are_refused():
    f = _with("obj", np.array([1, "a"], dtype=object), "x.xyz#4")
    with pytest.raises(SchemaError, match=r"x.xyz#4: per-atom array 'obj' has unsupported dtype"):
        frames_to_table([f])


@pytest.mark.parametrize(
    "stored, incoming",
    [
        (np.array([True, False]), np.array([1.5, 2.5])),  # float into bool (was stored as True)
        (np.array([1, 2]), np.array([1.5, 2.5])),  # float into int
        (np.array([1, 2]), np.array([True, False])),  # bool into int
        (np.ones((2, 3)), np.ones((2, 2))),  # width 2 into width 3 (was a raw Arrow error)
        (np.ones(2), np.ones((2, 1))),  # (n, 1) into (n,)
        (np.array(["a", "b"], dtype=object), np.array([1.0, 2.0])),  # number into string
        (np.array([1.0, 2.0]), np.array(["a", "b"], dtype=object)),  # string into number
    ],
    ids=["float>bool", "float>int", "bool>int", "width", "n1>n", "num>str", "str>num"],
)
def test_schema_clash_with_the_store_names_source_array_and_both_types(stored, incoming):
    schema = frames_to_table([_with("flag", stored, "a.xyz#0")]).schema
    with pytest.raises(SchemaError) as info:
        frames_to_table([_with("flag", incoming, "b.xyz#7")], schema)
    msg = str(info.value)
    assert msg.startswith("b.xyz#7: per-atom array 'flag'") and "column 'arr_flag'" in msg
    kinds = {"f": "float", "i": "int", "b": "bool", "O": "string"}
    assert kinds[incoming.dtype.kind] in msg and kinds[stored.dtype.kind] in msg
    assert isinstance(info.value, ValueError)


def test_safe_widenings_are_allowed():
    schema = frames_to_table([_with("q", np.array([0.5, 1.5]), "a#0")]).schema
    t = frames_to_table([_with("q", np.array([1, 2], dtype=np.int32), "b#0")], schema)
    assert t.column("arr_q").to_pylist() == [[1.0, 2.0]]
    assert t.schema.field("arr_q").type == pa.list_(pa.float64())
    schema = frames_to_table([_with("c", np.array([1, 2]), "a#0")]).schema
    t = frames_to_table([_with("c", np.array([3, 4], dtype=np.int32), "b#0")], schema)
    assert t.column("arr_c").to_pylist() == [[3, 4]]
    # int then float in one batch: one float column
    t = frames_to_table(
        [_with("m", np.array([1, 2]), "a#0"), _with("m", np.array([0.5, 1]), "b#0")]
    )
    assert t.schema.field("arr_m").type == pa.list_(pa.float64())
    assert t.column("arr_m").to_pylist() == [[1.0, 2.0], [0.5, 1.0]]


def test_clash_within_one_batch_names_both_frames():
    frames = [_with("w", np.ones((2, 3)), "a.xyz#0"), _with("w", np.ones((2, 2)), "a.xyz#1")]
    with pytest.raises(SchemaError, match=r"a.xyz#1: .*'w' is float \(n_atoms, 2\) but frame "
                                          r"a.xyz#0 .* float \(n_atoms, 3\)"):
        frames_to_table(frames)
    frames = [_with("s", np.array(["a", "b"]), "a#0"), _with("s", np.array([True, False]), "a#1")]
    with pytest.raises(SchemaError, match="bool .* string"):
        frames_to_table(frames)


def test_info_values_json_cannot_hold_are_refused_and_nested_ones_kept():
    a = bulk("Si", "diamond", a=5.43)
    a.info["nested"] = {"a": [1, 2.5, {"b": "c"}], "arr": np.arange(3)}
    a.info["tags"] = ("x", "y")
    back = table_to_atoms(frames_to_table([Frame.from_atoms(a, source="m#0")]))[0]
    assert back.info["nested"]["a"] == [1, 2.5, {"b": "c"}]
    np.testing.assert_array_equal(back.info["nested"]["arr"], np.arange(3))
    assert back.info["tags"] == ["x", "y"]
    a.info["z"] = 1 + 2j
    with pytest.raises(SchemaError, match=r"m#1: info key 'z' holds complex \(1\+2j\)"):
        frames_to_table([Frame.from_atoms(a, source="m#1")])


def test_values_that_do_not_convert_name_the_first_failing_frame():
    def frame(i, tag):
        return Frame(numbers=[1, 1], positions=np.zeros((2, 3)), cell=np.zeros((3, 3)),
                     pbc=[False] * 3, source=f"a.xyz#{i}",
                     arrays={"tag": np.array(tag, dtype=np.uint64)})

    frames = [frame(0, [1, 2]), frame(1, [3, 4]), frame(2, [2**63 + 5, 1]),
              frame(3, [2**64 - 1, 0])]
    with pytest.raises(SchemaError, match=r"^a\.xyz#2: per-atom array 'tag' does not fit column "
                                          r"type int64: Integer value 9223372036854775813"):
        frames_to_table(frames)


def test_chemical_formula_is_ase_s_for_every_ordering_and_public():
    from ase.symbols import Symbols

    from pesdata import frames

    rng = np.random.default_rng(0)
    for numbers in ([8, 1, 1, 6], [6, 1, 1, 8], [29] * 32, [22, 8, 8] * 4, [14, 0], [], [1]):
        for _ in range(3):
            perm = rng.permutation(np.asarray(numbers, dtype=np.int64))
            assert frames.chemical_formula(perm) == Symbols(perm).get_chemical_formula()
    assert frames.chemical_formula([8, 1, 1, 6]) == "CH2O"
    assert frames.reduced_formula("Ti8O16") == "O2Ti"
    assert {"chemical_formula", "reduced_formula"} <= set(frames.__all__)
    assert frames.geometry_hash.__module__ == "pesdata._hash"  # kept importable from here
