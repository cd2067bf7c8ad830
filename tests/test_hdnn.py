"""HDNN, committee, dataset/collate and the ASE calculator, checked against independent
references: finite differences of the model's own energy, ASE's numerical stress, EMT labels."""

import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.fd import calculate_numerical_stress
from ase.md.verlet import VelocityVerlet
from ase.units import fs

import pesdata
from pesdata.descriptors import ACSF, PTSD, batch_atoms, describe, from_config
from pesdata.errors import ArtefactError, ParameterError
from pesdata.train import (
    Committee,
    HDNNPotential,
    PesdataCalculator,
    StructureDataset,
    collate,
    error_metrics,
    load_model,
    save_model,
)
from pesdata.train.hdnn import _batch_errors

from .conftest import CU_ACSF_CONFIG, DATA, emt

DESC = from_config(CU_ACSF_CONFIG)
SMALL = {"hidden": (16, 16), "epochs": 300, "force_weight": 0.1, "patience": 60}


@pytest.fixture(scope="module")
def fitted():
    """A small float64 HDNN fitted to EMT copper (shared by several tests)."""
    return HDNNPotential(DESC, dtype="float64", **SMALL).fit(emt(30, 1))


TWO_ELEMENTS = [
    ACSF(["Ti", "O"], 3.5, g5_params=[[0.02, 2, -1], [0.01, 1.5, 1]]),
    PTSD(["Ti", "O"], 3.0, s2=[[1, 2]], s5=[[1, 0, 1, 2]], s6=[[0, 1, 0, 1, 1], [1, 0, 0, 2, -1]]),
]


@pytest.mark.parametrize(
    "desc", [ACSF(["Si"], 4.0), PTSD(["Si"], 4.0), *TWO_ELEMENTS],
    ids=["acsf", "ptsd", "acsf-g5-TiO2", "ptsd-s6-TiO2"],
)
def test_pair_jacobian_gives_the_autograd_gradient(desc):
    """The per-term Jacobian contracted with random dE/dG equals autograd through forward()."""
    if len(desc.species) == 1:
        images = ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":3")
    else:
        images = ase.io.read(DATA / "tio2" / "TiO2_aenet_subset.extxyz", "5:7")
    b = batch_atoms(images, torch.float64, "cpu")
    g, pairs, jac = desc.pair_jacobian(b.positions, b.numbers, b.cells, b.pbc, b.structure)
    w = torch.randn(g.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pos = b.positions.clone().requires_grad_(True)
    g_ref = desc.forward(pos, b.numbers, b.cells, b.pbc, b.structure)
    (grad,) = torch.autograd.grad((g_ref * w).sum(), pos)
    c = torch.einsum("pf,pfk->pk", w[pairs.i], jac)
    via_jac = torch.zeros_like(grad).index_add_(0, pairs.j, c).index_add_(0, pairs.i, -c)
    assert torch.equal(g, g_ref.detach())
    assert torch.allclose(via_jac, grad, rtol=1e-10, atol=1e-10)


def test_collate_flattens_structures_with_local_pairs():
    images = emt(3, 4)
    data = StructureDataset(images, DESC, jacobian=True, dtype=torch.float64, batch_size=2)
    batch = collate([data[2], data[0]])
    assert batch["g"].shape == (64, DESC.n_features)
    assert batch["structure"].tolist() == [0] * 32 + [1] * 32
    assert torch.equal(batch["energy"], data.energy[[2, 0]])
    i, j = batch["pairs"]
    # pairs never cross structures, and the second structure's pairs are shifted by 32
    assert torch.equal(batch["structure"][i], batch["structure"][j])
    assert int(i[-1]) >= 32 and len(i) == len(batch["jac"])


def test_tiny_hdnn_fits_emt(fitted):
    test = emt(8, 2)
    e, f = fitted.predict(test, forces=True)
    ref_e = np.array([a.get_potential_energy() for a in test])
    n = np.array([len(a) for a in test])
    ref_f = np.concatenate([a.get_forces() for a in test])
    m = error_metrics(e, ref_e, n, np.concatenate(f), ref_f)
    spread = 1000 * np.mean(np.abs(ref_e / n - (ref_e / n).mean()))
    assert m["energy_mae"] < spread / 4
    assert m["force_mae"] < 0.25 * np.mean(np.abs(ref_f))
    assert fitted.history_[0]["valid_force_rmse"] > fitted.history_[-1]["valid_force_rmse"]


def test_forces_are_minus_the_fd_gradient_and_stress_matches_ase(fitted):
    atoms = emt(1, 9)[0]
    _, (forces,) = fitted.predict([atoms], forces=True)
    h = 1e-5
    for a, k in [(0, 0), (7, 2), (20, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, k] += h
        minus.positions[a, k] -= h
        fd = -(fitted.predict([plus])[0] - fitted.predict([minus])[0]) / (2 * h)
        assert forces[a, k] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    atoms.calc = PesdataCalculator(fitted)
    stress = atoms.get_stress()
    numeric = calculate_numerical_stress(atoms, eps=1e-6)
    np.testing.assert_allclose(stress, numeric, rtol=1e-5, atol=1e-8)


def test_training_forces_equal_the_autograd_forces(fitted):
    images = emt(2, 6)
    data = StructureDataset(images, DESC, jacobian=True, dtype=torch.float64)
    batch = collate([data[0], data[1]])
    _, _, sf, nf = _batch_errors(fitted.net_, batch, True, create_graph=False)
    _, forces = fitted.predict(images, forces=True)
    direct = float(((np.concatenate(forces) - batch["forces"].numpy()) ** 2).sum())
    assert float(sf) == pytest.approx(direct, rel=1e-9) and nf == 2 * 32 * 3


def test_checkpoint_round_trip_and_mismatch(fitted, tmp_path):
    card = save_model(fitted, tmp_path / "m", version=3)
    model, card2 = load_model(tmp_path / "m")
    assert card2 == card and card["kind"] == "hdnn" and card["params"]["hidden"] == [16, 16]
    images = emt(2, 7)
    np.testing.assert_array_equal(model.predict(images), fitted.predict(images))
    card["params"]["hidden"] = [8, 8]  # the weights belong to another architecture
    (tmp_path / "m" / "model_card.json").write_text(__import__("json").dumps(card))
    with pytest.raises(ArtefactError, match="do not match|do not fit"):
        load_model(tmp_path / "m")


def test_committee_mean_spread_and_calculator_md(tmp_path):
    train = emt(10, 3)
    com = Committee(DESC, n_members=3, hidden=(8,), epochs=15, force_weight=0.1).fit(train)
    atoms = emt(1, 8)[0]
    spread = com.predict_std([atoms])
    members = [m.predict([atoms])[0] for m in com.members]
    assert spread["energy"][0] == pytest.approx(np.mean(members), rel=1e-12)
    assert spread["energy_std"][0] == pytest.approx(np.std(members) / len(atoms), rel=1e-6)
    assert spread["energy_std"][0] > 0 and spread["forces_std"][0].shape == (32,)
    save_model(com, tmp_path / "c")
    loaded, card = load_model(tmp_path / "c")
    assert card["params"]["n_members"] == 3
    np.testing.assert_allclose(loaded.predict([atoms]), com.predict([atoms]), rtol=1e-6)
    atoms.calc = PesdataCalculator(tmp_path / "c")
    dyn = VelocityVerlet(atoms, 2 * fs)
    e0 = atoms.get_total_energy()
    dyn.run(5)
    assert np.isfinite(atoms.positions).all() and "forces_std" in atoms.calc.results
    assert abs(atoms.get_total_energy() - e0) < 0.05 * len(atoms)


def test_dataset_from_store_reads_the_descriptor_cache(tmp_path):
    st = pesdata.open_store(tmp_path / "s", create=True)
    st.curate(emt(5, 10), method="EMT")
    describe(st, DESC)
    cached = StructureDataset.from_store(st, DESC, dtype=torch.float64)
    fresh = StructureDataset(st.read().to_atoms(), DESC, dtype=torch.float64)
    assert torch.allclose(cached.g, fresh.g, rtol=0, atol=1e-12)
    with pytest.raises(ParameterError, match="id 'nope' is not in version"):
        StructureDataset.from_store(st, DESC, ids=["nope"])


def test_bad_hyperparameters_are_clear_errors():
    with pytest.raises(ParameterError, match="dtype"):
        HDNNPotential(DESC, dtype="float16")
    with pytest.raises(ParameterError, match="activation"):
        HDNNPotential(DESC, activation="relu6").new_net()
    with pytest.raises(ParameterError, match="at least 2"):
        Committee(DESC, n_members=1)
    with pytest.raises(ParameterError, match="ema_decay"):
        HDNNPotential(DESC, ema_decay=1.0)
    bad = [({"epochs": 0}, "epochs must be a positive integer, got 0"),
           ({"batch_size": 0}, "batch_size"), ({"hidden": (64, 0)}, "hidden width"),
           ({"valid_fraction": 1.0}, r"valid_fraction must be a finite number in \[0, 1\)"),
           ({"valid_fraction": -0.1}, "valid_fraction"), ({"seed": -1}, "seed must be"),
           ({"lr": -1.0}, "lr must be finite and > 0, got -1.0"),
           ({"max_seconds": 0}, "max_seconds"),
           ({"device": "gpu"}, "unknown device 'gpu'"), ({"device": "meta"}, "not supported")]
    for kwargs, message in bad:  # refused at construction, before any descriptor work
        with pytest.raises(ParameterError, match=message):
            HDNNPotential(DESC, **kwargs)


def test_kept_weights_are_the_moving_average():
    """One optimiser step: kept = d·initial + (1 − d)·stepped, d = min(decay, 2/11) at step 1."""
    data = StructureDataset(emt(6, 5), DESC, jacobian=True, dtype=torch.float64)
    kw = {"hidden": (8,), "epochs": 1, "batch_size": 6, "dtype": "float64", "valid_fraction": 0}
    init = HDNNPotential(DESC, **kw).new_net().state_dict()
    raw = HDNNPotential(DESC, ema_decay=0.0, **kw).fit(data).net_.state_dict()
    avg = HDNNPotential(DESC, ema_decay=0.5, **kw).fit(data).net_.state_dict()
    d = 2 / 11
    for name, w in init.items():
        if name.startswith("nets."):
            assert not torch.equal(raw[name], w)
            assert torch.allclose(avg[name], d * w + (1 - d) * raw[name], rtol=1e-12, atol=1e-14)


def _lonely(labelled: bool = False) -> list:
    """An isolated Cu atom and two Cu atoms 10 Å apart (cutoff 4.5 Å): no neighbours at all."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    iso = Atoms("Cu", positions=[[0, 0, 0]], cell=np.eye(3) * 20, pbc=True)
    far = Atoms("Cu2", positions=[[0, 0, 0], [10, 0, 0]], cell=np.eye(3) * 30, pbc=True)
    if labelled:
        for a, e in ((iso, -0.1), (far, -0.2)):
            a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((len(a), 3)))
    return [iso, far]


def test_structures_without_neighbours_have_zero_forces_and_stress(fitted, tmp_path):
    """No pair inside the cutoff: E = E_ref + s·NN(features without neighbours), F = σ = 0,
    through predict, a saved model, the calculator and a committee; mixed batches keep the
    numbers of their other structures."""
    iso, far = _lonely()
    g0 = DESC.compute([iso])
    types = torch.zeros(1, dtype=torch.int64)
    with torch.no_grad():
        per_atom = float(fitted.net_.atomic(g0, types)[0] + fitted.net_.ref[0])
    energies, forces = fitted.predict([iso, far], forces=True)
    np.testing.assert_allclose(energies, [per_atom, 2 * per_atom], rtol=1e-12)
    assert [f.shape for f in forces] == [(1, 3), (2, 3)]
    assert all(np.all(f == 0) for f in forces)
    normal = emt(2, 7)
    mixed_e, mixed_f = fitted.predict([iso, normal[0], far, normal[1]], forces=True)
    alone_e, alone_f = fitted.predict(normal, forces=True)
    np.testing.assert_allclose(mixed_e[[1, 3]], alone_e, rtol=1e-12)
    for got, want in zip([mixed_f[1], mixed_f[3]], alone_f, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.all(mixed_f[0] == 0) and np.all(mixed_f[2] == 0)
    save_model(fitted, tmp_path / "m")
    loaded = load_model(tmp_path / "m")[0]
    np.testing.assert_array_equal(loaded.predict([far], forces=True)[1][0], np.zeros((2, 3)))
    far.calc = PesdataCalculator(tmp_path / "m")
    assert far.get_potential_energy() == pytest.approx(2 * per_atom, rel=1e-12)
    assert np.all(far.get_forces() == 0) and np.all(far.get_stress() == 0)
    com = Committee(DESC, n_members=2, hidden=(8,), epochs=2).fit(emt(4, 3))
    spread = com.predict_std([iso, far])
    assert all(np.all(f == 0) for f in spread["forces"])
    iso.calc = PesdataCalculator(com)
    assert np.all(iso.get_forces() == 0) and np.all(iso.get_stress() == 0)


def test_training_set_with_structures_without_neighbours_trains():
    """Isolated atoms among normal frames train, also in a batch of their own (batch_size 1)."""
    images = emt(4, 2) + _lonely(labelled=True)
    for batch_size in (1, 8):
        model = HDNNPotential(DESC, hidden=(8,), epochs=3, batch_size=batch_size,
                              force_weight=0.1, valid_fraction=0).fit(images)
        assert all(np.isfinite(r["loss"]) for r in model.history_)
        _, forces = model.predict(_lonely(), forces=True)
        assert all(np.all(f == 0) for f in forces)
