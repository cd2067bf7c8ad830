"""The linear baseline: forces consistent with its energies, fits EMT data, metrics."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from pesdata.descriptors import ACSF
from pesdata.errors import PesdataError
from pesdata.train import LinearPotential, error_metrics


def emt(n, seed):
    out = []
    rng = np.random.default_rng(seed)
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True) * (2, 2, 2)
        a.rattle(0.08, seed=seed * 100 + k)
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


DESC = ACSF(["Cu"], 4.5, g2_params=[[0.5, 2.5], [1.0, 3.0], [0.3, 4.0], [0.05, 0.0]],
            g4_params=[[0.01, 1, 1], [0.01, 1, -1], [0.01, 4, 1]])


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
    with pytest.raises(PesdataError, match="energy label"):
        LinearPotential(DESC).fit(unlabelled)
