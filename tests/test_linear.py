"""The linear baseline: forces consistent with its energies, fits EMT data, metrics."""

import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from pesdata.descriptors import ACSF, batch_atoms, from_config
from pesdata.errors import ParameterError, SchemaError
from pesdata.train import LinearPotential, error_metrics

from .conftest import CU_ACSF_CONFIG, DATA, emt

DESC = from_config(CU_ACSF_CONFIG)


def test_forces_are_minus_the_gradient_of_its_energy():
    model = LinearPotential(DESC, force_weight=0.1).fit(emt(6, 0))
    atoms = emt(1, 9)[0]
    _, (forces,) = model.predict([atoms], forces=True)
    h = 1e-5
    for a, k in [(0, 0), (5, 2), (17, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, k] += h
        minus.positions[a, k] -= h
        fd = -(model.predict([plus])[0] - model.predict([minus])[0]) / (2 * h)
        assert forces[a, k] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_force_rows_equal_autograd_of_the_element_sums():
    """Rows built from the pair Jacobian = torch's dense Jacobian of Σ_{i∈e} G_i (Ti, O)."""
    atoms = ase.io.read(DATA / "tio2" / "TiO2_aenet_subset.extxyz", 3)
    desc = ACSF(["Ti", "O"], 4.0)
    x, rows = LinearPotential(desc, force_weight=1.0)._features(atoms, True)
    b = batch_atoms(atoms, torch.float64, "cpu")
    types = desc.species_index(b.numbers)

    def summed(pos):
        g = desc.forward(pos, b.numbers, b.cells, b.pbc, b.structure)
        return torch.zeros(2, desc.n_features, dtype=g.dtype).index_add(0, types, g).reshape(-1)

    ref = torch.autograd.functional.jacobian(summed, b.positions).reshape(2 * desc.n_features, -1)
    assert rows.shape == (3 * len(atoms), 2 * desc.n_features + 2)
    np.testing.assert_allclose(rows[:, :-2], -ref.T.numpy(), rtol=1e-10, atol=1e-10)
    assert np.all(rows[:, -2:] == 0)
    np.testing.assert_allclose(x[:-2], summed(b.positions).numpy(), rtol=1e-12)
    assert x[-2:].tolist() == [np.sum(atoms.numbers == 8), np.sum(atoms.numbers == 22)]  # O, Ti


def test_fits_emt_much_better_than_a_constant():
    train, test = emt(16, 1), emt(6, 2)
    model = LinearPotential(DESC, force_weight=0.1).fit(train)
    e, f = model.predict(test, forces=True)
    ref_e = [a.get_potential_energy() for a in test]
    n = [len(a) for a in test]
    ref_f = np.concatenate([a.get_forces() for a in test])
    m = error_metrics(e, ref_e, n, np.concatenate(f), ref_f)
    per_atom = np.array(ref_e) / np.array(n)
    baseline = 1000 * np.mean(np.abs(per_atom - per_atom.mean()))
    assert m["energy_mae"] < baseline / 5
    assert m["force_mae"] < 0.5 * np.mean(np.abs(np.concatenate([a.get_forces() for a in test])))
    assert m["n_structures"] == 6 and m["energy_rmse"] >= m["energy_mae"]


def test_missing_labels_are_an_error():
    unlabelled = emt(2, 3)
    unlabelled[1].calc = None
    with pytest.raises(ParameterError, match=r"training structure 1 \(Cu32\) has no energy label"):
        LinearPotential(DESC).fit(unlabelled)


def test_an_element_outside_the_descriptor_names_the_structure():
    images = emt(3, 4)
    images[2].numbers[5] = 47  # one Ag atom in a Cu model
    images[2].info["source"] = "alloy.xyz#12"
    with pytest.raises(SchemaError, match=r"^structure 2 \(alloy.xyz#12\): atomic number\(s\) "
                                          r"\[47\] not in the descriptor's species \[29\]$"):
        LinearPotential(DESC).fit(images)
    model = LinearPotential(DESC).fit(images[:2])
    with pytest.raises(SchemaError, match=r"^structure 2 \(alloy.xyz#12\)"):
        model.predict(images)


def test_force_rows_only_for_structures_with_forces():
    images = emt(6, 5)
    no_forces = images[0]
    no_forces.calc = SinglePointCalculator(no_forces, energy=no_forces.calc.results["energy"])
    model = LinearPotential(DESC, force_weight=0.1).fit(images)
    energies, forces = model.predict(images[1:], forces=True)
    ref = np.concatenate([a.calc.results["forces"] for a in images[1:]])
    assert np.abs(np.concatenate(forces) - ref).mean() < np.abs(ref).mean()
    for a in images:
        a.calc = SinglePointCalculator(a, energy=a.calc.results["energy"])
    with pytest.raises(ParameterError, match="no training structure has forces"):
        LinearPotential(DESC, force_weight=0.1).fit(images)


def _lonely(labelled: bool = False) -> list:
    """An isolated Cu atom and two Cu atoms 10 Å apart (cutoff 4.5 Å): no neighbours at all."""
    iso = ase.Atoms("Cu", positions=[[0, 0, 0]], cell=np.eye(3) * 20, pbc=True)
    far = ase.Atoms("Cu2", positions=[[0, 0, 0], [10, 0, 0]], cell=np.eye(3) * 30, pbc=True)
    if labelled:
        for a, e in ((iso, -0.1), (far, -0.2)):
            a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((len(a), 3)))
    return [iso, far]


def test_structures_without_neighbours_predict_the_intercept_and_zero_forces():
    """No pair inside the cutoff: E = Σ_i (w·G(0) + b), forces and stress exactly zero."""
    from pesdata.train import PesdataCalculator

    normal = emt(2, 7)
    model = LinearPotential(DESC, force_weight=0.1).fit(emt(6, 0))
    iso, far = _lonely()
    g0 = DESC.compute([iso])[0].numpy()  # an atom's features without neighbours
    per_atom = float(model.coef_[:-1] @ g0 + model.coef_[-1])
    energies, forces = model.predict([iso, far], forces=True)
    np.testing.assert_allclose(energies, [per_atom, 2 * per_atom], rtol=1e-12)
    assert [f.shape for f in forces] == [(1, 3), (2, 3)]
    assert all(np.all(f == 0) for f in forces)
    mixed_e, mixed_f = model.predict([iso, normal[0], far, normal[1]], forces=True)
    alone_e, alone_f = model.predict(normal, forces=True)
    np.testing.assert_allclose(mixed_e[[1, 3]], alone_e, rtol=1e-12)
    np.testing.assert_allclose(mixed_e[[0, 2]], energies, rtol=1e-12)
    for got, want in zip([mixed_f[1], mixed_f[3]], alone_f, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.all(mixed_f[0] == 0) and np.all(mixed_f[2] == 0)
    far.calc = PesdataCalculator(model)
    assert far.get_potential_energy() == pytest.approx(2 * per_atom, rel=1e-12)
    assert np.all(far.get_forces() == 0) and np.all(far.get_stress() == 0)


def test_training_set_with_structures_without_neighbours_fits():
    """Isolated atoms among normal frames: a fit with force rows that are all zero for them."""
    model = LinearPotential(DESC, force_weight=0.1).fit(emt(6, 0) + _lonely(labelled=True))
    energies, forces = model.predict(_lonely(), forces=True)
    assert np.isfinite(energies).all() and all(np.all(f == 0) for f in forces)
