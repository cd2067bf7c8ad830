"""PTSD against a deliberately slow reference written from the equations (plain loops, ASE
neighbour lists, scipy's complex spherical harmonics); the descriptor contract (invariances,
batching, finite-difference gradients, pickling, threads, precision) through the shipped kit."""

import itertools
import math

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from scipy.special import sph_harm_y

from pesdata.descriptors import PTSD
from pesdata.errors import ParameterError, SchemaError
from pesdata.testing import DescriptorTests

from .conftest import DATA, contract_structures

PARAMS = dict(
    s1=[[0], [1], [3]],
    s2=[[0, 0], [1, 2], [2, 3]],
    s3=[[0, 1, 0, 1, 1], [1, 0, 2, 2, -1]],
    s4=[[0, 0, 1, -1], [2, 1, 4, 1]],
    s5=[[0, 1, 1, 1], [1, 0, 0, 2]],
    s6=[[0, 0, 0, 1, 1], [1, 0, 1, 2, -1]],
)


def reference(atoms, rc, params):
    """PTSD by explicit loops, straight from the equations in pesdata/descriptors/ptsd.py."""
    species = sorted(set(atoms.numbers.tolist()))
    t = len(species)
    pairs = [(a, b) for a in range(t) for b in range(a + 1)]
    triples = list(itertools.combinations_with_replacement(range(t - 1, -1, -1), 3))
    ii, dd = neighbor_list("iD", atoms, rc)
    jj = neighbor_list("j", atoms, rc)

    def fc(r):
        return 0.5 * math.tanh(1 - r / rc) ** 3 if r < rc else 0.0

    def rad(n, r):
        return r**n * fc(r)

    def ylm(ell, m, v):
        r = np.linalg.norm(v)
        theta = math.acos(max(-1.0, min(1.0, v[2] / r)))
        phi = math.atan2(v[1], v[0])
        return complex(sph_harm_y(ell, m, theta, phi))

    rows = []
    for i in range(len(atoms)):
        nb = [(dd[k], species.index(atoms.numbers[jj[k]])) for k in range(len(ii)) if ii[k] == i]
        feats = []
        for e in range(t):
            mine = [v for v, te in nb if te == e]
            for (n,) in params["s1"]:
                feats.append(sum(rad(n, np.linalg.norm(v)) for v in mine))
            for n, ell in params["s2"]:
                total = 0.0
                for m in range(-int(ell), int(ell) + 1):
                    s = sum(rad(n, np.linalg.norm(v)) * ylm(int(ell), m, v) for v in mine)
                    total += abs(s) ** 2
                feats.append(math.sqrt(total))
        for a, b in pairs:
            combos = [(x, y) for x in range(len(nb)) for y in range(len(nb)) if x != y
                      and sorted((nb[x][1], nb[y][1])) == sorted((a, b))]

            def geo(x, y, nb=nb):
                vj, vk = nb[x][0], nb[y][0]
                rij, rik = np.linalg.norm(vj), np.linalg.norm(vk)
                return vj, vk, rij, rik, np.linalg.norm(vk - vj), vj @ vk / (rij * rik)

            for n, m, p, z, lam in params["s3"]:
                s = 0.0
                for x, y in combos:
                    _, _, rij, rik, rjk, c = geo(x, y)
                    s += max(1 + lam * c, 0) ** z * rad(n, rij) * rad(m, rik) * rad(p, rjk)
                feats.append(2 ** (1 - z) * s)
            for n, m, z, lam in params["s4"]:
                s = 0.0
                for x, y in combos:
                    _, _, rij, rik, _, c = geo(x, y)
                    s += max(1 + lam * c, 0) ** z * rad(n, rij) * rad(m, rik)
                feats.append(2 ** (1 - z) * s)
            for n, m, p, ell in params["s5"]:
                total = 0.0
                for mm in range(-int(ell), int(ell) + 1):
                    s = 0
                    for x, y in combos:
                        vj, vk, rij, rik, rjk, _ = geo(x, y)
                        w = rad(n, rij) * rad(m, rik) * rad(p, rjk)
                        s += w * (ylm(int(ell), mm, vj) + ylm(int(ell), mm, vk))
                    total += abs(s) ** 2
                feats.append(math.sqrt(total))
        for tri in triples:
            for n, m, p, z, lam in params["s6"]:
                s = 0.0
                for x, y, w in itertools.permutations(range(len(nb)), 3):
                    if sorted((nb[x][1], nb[y][1], nb[w][1])) != sorted(tri):
                        continue
                    vj, vk, vl = nb[x][0], nb[y][0], nb[w][0]
                    n1, n2 = np.cross(vj, vk), np.cross(vk, vl)
                    norm = np.linalg.norm(n1) * np.linalg.norm(n2)
                    if norm <= 1e-12:
                        continue
                    c = n1 @ n2 / norm
                    s += (max(1 + lam * c, 0) ** z * rad(n, np.linalg.norm(vj))
                          * rad(m, np.linalg.norm(vk)) * rad(p, np.linalg.norm(vl)))
                feats.append(2 ** (1 - z) * s)
        rows.append(feats)
    return np.array(rows)


class TestPTSDContract(DescriptorTests):
    """Every term S1-S6 (S6 four-body included), three elements, a short cutoff."""

    descriptor_factory = staticmethod(
        lambda dtype=torch.float64: PTSD(["O", "Si", "Ti"], 3.2, **PARAMS, dtype=dtype))
    structures_factory = staticmethod(contract_structures)


class TestPTSDDefaultContract(DescriptorTests):
    """The documented defaults (S1-S5, L up to 4) on one element."""

    descriptor_factory = staticmethod(lambda dtype=torch.float64: PTSD(["Si"], 4.5, dtype=dtype))
    structures_factory = staticmethod(lambda: contract_structures()[::2])


def small_systems():
    si = bulk("Si", "diamond", a=5.43)
    si.rattle(0.1, seed=3)
    tio2 = ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", "0")
    water = molecule("H2O")
    return [(si, 4.0), (tio2, 2.6), (water, 3.0)]


@pytest.mark.parametrize("case", range(3))
def test_equals_slow_reference(case):
    atoms, rc = small_systems()[case]
    species = sorted(set(atoms.get_chemical_symbols()))
    ours = PTSD(species, rc, **PARAMS)
    got = ours.compute(atoms).numpy()
    ref = reference(atoms, rc, ours.params | {})
    assert got.shape == ref.shape == (len(atoms), ours.n_features)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10)


def test_names_and_hash():
    atoms, rc = small_systems()[1]
    p64 = PTSD(["O", "Ti"], rc, **PARAMS)
    assert len(p64.feature_names) == p64.n_features
    assert p64.feature_names[0] == "S1[O](0)"
    assert PTSD(["O", "Ti"], rc).config_hash != p64.config_hash


def test_compiled_triplet_terms_equal_eager():
    images = ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", ":30")[::10]  # two elements
    fused = PTSD(["O", "Ti"], 4.5, compile=True)
    values = fused.compute(images, batch_size=2)
    assert fused.compile  # compiled, not fallen back
    eager = PTSD(["O", "Ti"], 4.5, compile=False).compute(images, batch_size=2)
    torch.testing.assert_close(values, eager, rtol=1e-12, atol=1e-12)


def test_bad_parameters_raise_parameter_errors():
    with pytest.raises(ParameterError, match="s3 parameters must be rows of 5 numbers"):
        PTSD(["Si"], 4.0, s3=[[0, 1, 0, 1]])
    with pytest.raises(ParameterError, match="s1 parameters must be finite, got '\\[\\[nan\\]\\]'"):
        PTSD(["Si"], 4.0, s1=[[float("nan")]])
    with pytest.raises(ParameterError, match="s2: L must be a non-negative integer"):
        PTSD(["Si"], 4.0, s2=[[0, 1.5]])
    with pytest.raises(SchemaError, match="not in the descriptor's species"):  # data, not args
        PTSD(["Si"], 4.0).compute(molecule("H2O"))
