"""Atoms ⇄ Arrow conversion, key mapping and content hashing."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

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
