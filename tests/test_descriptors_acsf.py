"""ACSF against dscribe (an independent reference); the descriptor contract (invariances,
batching, finite-difference gradients, pickling, threads, precision) through the shipped kit."""

import pickle
import warnings

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from dscribe.descriptors import ACSF as DscribeACSF

from pesdata.descriptors import ACSF
from pesdata.errors import ParameterError, SchemaError
from pesdata.testing import DescriptorTests

from .conftest import DATA, contract_structures

PARAMS = [
    dict(g2_params=[[0.5, 0.0], [1.0, 2.0], [0.1, 3.0]], g4_params=[[0.01, 1, 1], [0.05, 2, -1]],
         g5_params=None),
    dict(g2_params=[[0.05, 0.0]], g4_params=[[0.005, 4, 1], [0.02, 16, -1]],
         g5_params=[[0.02, 1, -1], [0.01, 2, 1]]),
    dict(g2_params=None, g4_params=None, g5_params=None),  # the documented default grid
]


class TestACSFContract(DescriptorTests):
    descriptor_factory = staticmethod(
        lambda dtype=torch.float64: ACSF(["O", "Si", "Ti"], 5.0, **PARAMS[1], dtype=dtype))
    structures_factory = staticmethod(contract_structures)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
class TestACSFContractCUDA(DescriptorTests):
    descriptor_factory = staticmethod(lambda dtype=torch.float64: ACSF(
        ["O", "Si", "Ti"], 5.0, **PARAMS[1], dtype=dtype, device="cuda"))
    structures_factory = staticmethod(contract_structures)


class TestACSFDefaultGridContract(DescriptorTests):
    """The documented default grid (G2 and G4 only), on one element."""

    descriptor_factory = staticmethod(lambda dtype=torch.float64: ACSF(["Si"], 4.5, dtype=dtype))
    structures_factory = staticmethod(lambda: contract_structures()[::2])


def systems():
    tio2 = ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", ":40")[::13]
    si = ase.io.read(DATA / "mlearn/Si_test.extxyz", ":3")
    cu = ase.io.read(DATA / "mlearn/Cu_test.extxyz", "0")
    return [*tio2, *si, cu, bulk("Cu", "fcc", a=3.6)]  # the last: 1 atom, many images


@pytest.mark.parametrize("params", PARAMS)
def test_equals_dscribe(params):
    for atoms in systems():
        species = sorted(set(atoms.get_chemical_symbols()))
        ours = ACSF(species, 5.5, **params)
        d = DscribeACSF(
            species=species, r_cut=5.5, periodic=True,
            g2_params=ours.g2_params, g4_params=ours.g4_params,
            g5_params=ours.g5_params if len(ours.g5_params) else None,
        )
        ref = d.create(atoms)
        got = ours.compute(atoms).numpy()
        assert got.shape == ref.shape == (len(atoms), ours.n_features)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * max(1, np.abs(ref).max()))


def test_non_periodic_molecule_equals_dscribe():
    mol = molecule("CH3CH2OH")
    ours = ACSF(["H", "C", "O"], 4.0, **PARAMS[1])
    d = DscribeACSF(species=["H", "C", "O"], r_cut=4.0, periodic=False, **PARAMS[1])
    np.testing.assert_allclose(ours.compute(mol).numpy(), d.create(mol), atol=1e-10)






@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_agrees_with_cpu():
    atoms = systems()[0]
    cpu = ACSF(["O", "Ti"], 5.0).compute(atoms)
    gpu = ACSF(["O", "Ti"], 5.0, device="cuda").compute(atoms)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)


def test_config_names_and_errors():
    a = ACSF(["Ti", "O"], 5.0)
    b = ACSF([8, 22], 5.0)
    assert a.species == [8, 22] and a.config_hash == b.config_hash
    assert ACSF(["Ti", "O"], 5.5).config_hash != a.config_hash
    names = a.feature_names
    assert len(names) == a.n_features == 2 * 9 + 3 * 8
    assert names[0] == "G1[O]" and names[9] == "G1[Ti]" and names[18].startswith("G4[O-O]")
    with pytest.raises(SchemaError, match=r"^structure 0 \(H2O\): atomic number\(s\) \[1\] not "
                                          r"in the descriptor's species \[8, 22\]$"):
        a.compute(Atoms("H2O", positions=[[0, 0, 0], [0, 0, 1], [0, 1, 0]]))
    with pytest.raises(ParameterError, match="unknown chemical symbol 'Xx'"):
        ACSF(["Xx"], 5.0)
    with pytest.raises(ParameterError, match="r_cut must be positive and finite, got 0"):
        ACSF(["O"], 0)
    with pytest.raises(ParameterError, match="r_cut must be positive and finite, got nan"):
        ACSF(["O"], float("nan"))
    with pytest.raises(ParameterError, match="g4_params must be finite numbers"):
        ACSF(["O"], 5.0, g4_params=[[0.1, 1, float("inf")]])
    with pytest.raises(ParameterError, match="g2_params must be rows of 2 numbers"):
        ACSF(["O"], 5.0, g2_params=[[0.1, 1, 2]])
    with pytest.raises(ParameterError, match="unknown device 'gpu:x'"):
        ACSF(["O"], 5.0, device="gpu:x")
    with pytest.raises(ParameterError, match="batch_size must be a positive integer, got 0"):
        a.compute(bulk("Cu", "fcc", a=3.6), batch_size=0)



def test_an_unknown_element_names_its_structure_in_a_batched_list():
    """The structure's index in the whole list and its source, not only the element."""
    images = ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", ":5")
    water = molecule("H2O")
    water.info["source"] = "water.xyz#3"
    images.insert(3, water)
    for batch_size, n_workers in ((2, 1), (2, 2), (32, 1)):
        with pytest.raises(SchemaError, match=r"^structure 3 \(water.xyz#3\): atomic "
                                              r"number\(s\) \[1\] not in"):
            ACSF(["O", "Ti"], 4.0).compute(images, batch_size=batch_size, n_workers=n_workers)


def test_compiled_kernel_equals_dscribe_and_keeps_gradients():
    images = ase.io.read(DATA / "mlearn/Si_test.extxyz", ":4")
    kw = dict(g2_params=[[0.5, 0.0]], g4_params=[[0.005, 1, 1], [0.02, 4, -1]])
    fused = ACSF(["Si"], 5.0, **kw, compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = fused.compute(images, batch_size=2)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert fused.compile  # the fused kernel ran (a failed compilation switches it off)
    clone = pickle.loads(pickle.dumps(fused))  # e.g. to a spawned worker
    torch.testing.assert_close(clone.compute(images[:1]), values[: len(images[0])])
    ref = DscribeACSF(species=["Si"], r_cut=5.0, periodic=True, **kw).create(images)
    np.testing.assert_allclose(values.numpy(), np.concatenate(ref), atol=1e-8)
    # with gradients the eager kernel runs: autograd gives the same forces either way
    eager = ACSF(["Si"], 5.0, **kw, compile=False)
    grads = []
    for d in (fused, eager):
        pos = torch.tensor(images[0].positions, requires_grad=True)
        g = d.forward(pos, torch.tensor(images[0].numbers),
                      torch.tensor(images[0].cell.array)[None], torch.ones(1, 3, dtype=torch.bool),
                      torch.zeros(len(pos), dtype=torch.long))
        grads.append(torch.autograd.grad(g.sum(), pos)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


def test_failed_compilation_falls_back_to_eager(monkeypatch):
    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    images = ase.io.read(DATA / "mlearn/Si_test.extxyz", ":2")
    acsf = ACSF(["Si"], 5.0, compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        values = acsf.compute(images, batch_size=1, n_workers=1)
    assert not acsf.compile
    torch.testing.assert_close(values, ACSF(["Si"], 5.0).compute(images), rtol=0, atol=0)


class _BrokenAngular(ACSF):
    """An angular kernel that fails on its input (compiled or not): a real runtime error."""

    def _triplet_values(self, *args):
        raise ValueError("a real error in the kernel")


def test_a_real_kernel_error_is_raised_without_blaming_the_compiler(monkeypatch):
    def broken(fn, **kwargs):
        def run(*args):
            return fn(*args)  # the "compiled" kernel fails exactly as the eager one
        return run

    monkeypatch.setattr(torch, "compile", broken)
    acsf = _BrokenAngular(["Si"], 5.0, compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="a real error in the kernel"):
            acsf.compute(ase.io.read(DATA / "mlearn/Si_test.extxyz", "0"))
    assert not [w for w in caught if "torch.compile" in str(w.message)]
    assert acsf.compile  # the compiler was not at fault: still on
