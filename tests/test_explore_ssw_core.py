"""SSW building blocks: Gaussian bias, biased surface, biased dimer, Metropolis, archive, LJ.

References are independent of the code under test: central finite differences of the values,
``numpy.linalg.eigh`` of known quadratic surfaces, binomial statistics of the acceptance rate,
geometry built and transformed with numpy/ASE, ASE's own ``LennardJones`` and the analytic
dimer minimum.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.cluster import Icosahedron
from ase.optimize import BFGS

from pesdata.errors import ParameterError
from pesdata.explore.archive import MinimaArchive, is_fragmented
from pesdata.explore.dimer import biased_lowest_mode
from pesdata.explore.lj import LennardJonesCluster
from pesdata.explore.ssw import metropolis
from pesdata.explore.surface import GaussianBias, Surface

from .ssw_helpers import one_blas_thread, random_cluster  # noqa: F401 - fixture


def relaxed(atoms: Atoms, calc, fmax: float = 1e-4) -> tuple[Atoms, float]:
    atoms = atoms.copy()
    atoms.calc = calc
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=2000)
    return atoms, float(atoms.get_potential_energy())


def central_fd(f, x: np.ndarray, h: float) -> np.ndarray:
    g = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# -- Gaussian bias and the biased surface ---------------------------------------------------------


@pytest.mark.parametrize("width", [0.05, 0.3, 1.0, 2.5])
def test_gaussian_bias_gradient_equals_finite_differences(width):
    rng = np.random.default_rng(int(width * 100))
    for _ in range(3):
        n = rng.normal(size=12)
        n /= np.linalg.norm(n)
        c = rng.normal(size=12)
        # x within two widths of the centre along n (the value is not vanishingly small),
        # anywhere across it
        perp = rng.normal(size=12)
        perp -= (perp @ n) * n
        x = c + perp + rng.uniform(-2, 2) * width * n
        bias = GaussianBias(c, n, 0.7, width)
        value, grad = bias.energy_gradient(x)
        s = (x - c) @ n
        assert value == pytest.approx(0.7 * math.exp(-s * s / (2 * width**2)), rel=1e-12)
        fd = central_fd(lambda y, b=bias: b.energy_gradient(y)[0], x, 1e-5 * width)
        assert np.allclose(grad, fd, rtol=1e-6, atol=1e-8 * 0.7 / width)


def _projected_biases(surface: Surface, rng, k: int, width: float) -> None:
    """``k`` Gaussians near the current point along directions SSW could walk (projected)."""
    x0 = surface.get_x()
    for _ in range(k):
        n = surface.project(rng.normal(size=x0.size))
        n /= np.linalg.norm(n)
        c = x0 + rng.normal(size=x0.size) * 0.02
        surface.biases.append(GaussianBias(c, n, 0.4, width))


def test_surface_gradient_lj7_with_biases_equals_finite_differences():
    atoms = random_cluster(7, 1)
    atoms.calc = LennardJonesCluster()
    surface = Surface(atoms)
    _projected_biases(surface, np.random.default_rng(2), 3, 0.3)
    x = surface.get_x() + np.random.default_rng(3).normal(size=21) * 0.01

    def value(y):
        surface.set_x(y)
        return surface.get_value()

    fd = central_fd(value, x, 1e-6)
    surface.set_x(x)
    grad = surface.get_gradient()
    assert np.abs(grad - fd).max() < 1e-5 * max(1.0, np.abs(fd).max())
    # the biases really contribute: without them the gradient differs
    bias_grad = surface.bias_energy_gradient(x)[1]
    assert np.abs(bias_grad).max() > 0.05


def test_surface_gradient_variable_cell_cu_with_biases_equals_finite_differences():
    """FrechetCellFilter coordinates (3N + 9): its generalised forces are the exact gradient of
    the energy in those coordinates, so central differences agree to ~1e-5 eV per unit
    (measured: ~1e-9 with h = 1e-5; asserted: 1e-6)."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.05, seed=4)
    atoms.set_cell(atoms.cell @ (np.eye(3) + [[0.02, 0.01, 0], [0.01, -0.03, 0], [0, 0, 0.01]]),
                   scale_atoms=True)
    atoms.calc = EMT()
    surface = Surface(atoms, variable_cell=True)
    assert surface.get_x().size == 3 * 4 + 9
    _projected_biases(surface, np.random.default_rng(5), 2, 0.2)
    x = surface.get_x()
    x = x + surface.project(np.random.default_rng(6).normal(size=x.size)) * 0.01

    def value(y):
        surface.set_x(y)
        return surface.get_value()

    fd = central_fd(value, x, 1e-5)
    surface.set_x(x)
    grad = surface.get_gradient()
    assert np.abs(fd[12:]).max() > 0.05  # the cell block carries a real stress
    assert np.abs(grad - fd).max() < 1e-6  # measured ~1e-9


def test_surface_counts_evaluations_and_caps_them():
    from pesdata.explore.surface import BudgetExhausted

    atoms = random_cluster(7, 1)
    atoms.calc = LennardJonesCluster()
    surface = Surface(atoms, max_evaluations=2)
    x = surface.get_x()
    surface.get_value()
    surface.get_gradient()  # same x: no new evaluation
    assert surface.n_evaluations == 1
    surface.set_x(x + 0.01)
    surface.get_gradient()
    assert surface.n_evaluations == 2
    surface.set_x(x)  # one of the last two points: cached
    surface.get_value()
    assert surface.n_evaluations == 2
    surface.set_x(x - 0.01)
    with pytest.raises(BudgetExhausted):
        surface.get_value()
    assert surface.n_evaluations == 2


# -- biased dimer on a known quadratic -----------------------------------------------------------


def quadratic(dim: int, seed: int, eigenvalues=None):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    lam = np.array(eigenvalues if eigenvalues is not None
                   else [-0.8, 0.3, 1.0, 1.7, 2.6, 4.0][:dim])
    return q @ np.diag(lam) @ q.T, rng


class Counted:
    def __init__(self, h):
        self.h, self.calls = h, 0

    def __call__(self, v):
        self.calls += 1
        return self.h @ v


def test_biased_dimer_without_bias_finds_lowest_mode():
    h, rng = quadratic(6, 0)
    lam, vec = np.linalg.eigh(h)
    n0 = rng.normal(size=6)
    n0 /= np.linalg.norm(n0)
    hv = Counted(h)
    n, curvature, calls = biased_lowest_mode(hv, n0, bias=0.0, rotations=60, angle_tol=1e-6)
    assert abs(n @ vec[:, 0]) > 0.999
    assert curvature == pytest.approx(lam[0], abs=1e-3)
    assert np.linalg.norm(n) == pytest.approx(1.0)
    assert n @ n0 >= 0
    assert calls == hv.calls


@pytest.mark.parametrize("a", [0.5, 2.0, 6.0])
def test_biased_dimer_finds_lowest_mode_of_biased_hessian(a):
    h, rng = quadratic(6, 1)
    n0 = rng.normal(size=6)
    n0 /= np.linalg.norm(n0)
    lam_b, vec_b = np.linalg.eigh(h - a * np.outer(n0, n0))
    ref = vec_b[:, 0] * np.sign(vec_b[:, 0] @ n0)
    n, curvature, _ = biased_lowest_mode(Counted(h), n0, bias=a, rotations=80,
                                         angle_tol=1e-7)
    assert n @ ref > 0.999
    assert curvature == pytest.approx(ref @ h @ ref, abs=2e-3)
    # the bias keeps it nearer n0 than the unbiased lowest mode is
    lowest = np.linalg.eigh(h)[1][:, 0]
    assert abs(n @ n0) >= abs(lowest @ n0) - 1e-9


@pytest.mark.parametrize("rotations", [0, 1, 3])
def test_biased_dimer_calls_are_rotations_plus_one_and_h_start_saves_one(rotations):
    h, rng = quadratic(6, 2)
    n0 = rng.normal(size=6)
    n0 /= np.linalg.norm(n0)
    hv = Counted(h)
    # angle_tol=0: no early stop, every rotation is made (6-D, far from converged)
    n, c, calls = biased_lowest_mode(hv, n0, bias=0.3, rotations=rotations, angle_tol=0.0)
    assert calls == hv.calls == rotations + 1
    hv2 = Counted(h)
    n2, c2, calls2 = biased_lowest_mode(hv2, n0, bias=0.3, rotations=rotations, angle_tol=0.0,
                                        h_start=h @ n0)
    assert calls2 == hv2.calls == rotations
    assert np.allclose(n2, n, atol=1e-12) and c2 == pytest.approx(c, abs=1e-12)
    if rotations == 0:
        assert np.allclose(n, n0) and c == pytest.approx(n0 @ h @ n0)


def test_biased_dimer_projection_keeps_the_allowed_subspace():
    h, rng = quadratic(6, 3)
    allowed = np.array([False, True, True, False, True, True])

    def project(v):
        return np.where(allowed, v, 0.0)

    n0 = project(rng.normal(size=6))
    n0 /= np.linalg.norm(n0)
    n, curvature, _ = biased_lowest_mode(Counted(h), n0, bias=0.0, rotations=60,
                                         angle_tol=1e-7, project=project)
    assert np.abs(n[~allowed]).max() < 1e-12
    sub = h[np.ix_(allowed, allowed)]
    lam, vec = np.linalg.eigh(sub)
    assert abs(n[allowed] @ vec[:, 0]) > 0.999
    assert curvature == pytest.approx(lam[0], abs=1e-3)


# -- Metropolis -----------------------------------------------------------------------------------


def test_metropolis_accepts_downhill_always():
    rng = np.random.default_rng(0)
    assert all(metropolis(d, 0.01, rng) for d in (0.0, -1e-12, -0.5, -100.0))
    assert all(metropolis(0.0, kt, rng) for kt in (1e-9, 1.0))


@pytest.mark.parametrize("ratio, expected", [(math.log(2), 0.5), (3.0, math.exp(-3))])
def test_metropolis_acceptance_rate(ratio, expected):
    kt = 0.0862
    rng = np.random.default_rng(12345)
    n = 20_000
    hits = sum(metropolis(ratio * kt, kt, rng) for _ in range(n))
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(hits / n - expected) < 4 * sigma


# -- fragmentation and the minima archive ---------------------------------------------------------


def test_is_fragmented_connected_and_split():
    ico, _ = relaxed(Icosahedron("Ar", 2), LennardJonesCluster())
    bond = 1.5 * 2 ** (1 / 6)
    assert not is_fragmented(ico, bond)
    split = ico.copy()
    split.positions[:3] += [6.0, 0, 0]  # three atoms far away (each still touching another?)
    assert is_fragmented(split, bond)
    far = ico.copy()
    far.positions[5] += [0, 0, 20.0]
    assert is_fragmented(far, bond)
    assert not is_fragmented(far, 30.0)
    periodic = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    periodic.positions[1] += [0, 0, 5]
    assert not is_fragmented(periodic, 1.0)  # periodic structures are never called fragmented


def _lj13_minima():
    ico, e_ico = relaxed(Icosahedron("Ar", 2), LennardJonesCluster())
    other, e_other = relaxed(random_cluster(13, 7), LennardJonesCluster())
    return ico, e_ico, other, e_other


def test_archive_finds_rotated_translated_permuted_copy_only():
    ico, e_ico, other, e_other = _lj13_minima()
    assert e_ico == pytest.approx(-44.326801, abs=1e-5)
    assert e_other > e_ico + 0.01
    archive = MinimaArchive()
    assert archive.add(ico, e_ico) == (0, True)
    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    perm = rng.permutation(13)
    copy = Atoms("Ar13", positions=(ico.positions @ q.T + [3.0, -2.0, 7.5])[perm])
    copy.calc = LennardJonesCluster()
    e_copy = copy.get_potential_energy()
    assert e_copy == pytest.approx(e_ico, abs=1e-9)
    assert archive.find(copy, e_copy) == 0
    assert archive.add(copy, e_copy) == (0, False)
    assert archive.minima[0].visits == 2
    assert archive.find(other, e_other) is None
    # the fingerprint alone tells them apart (same energy claimed)
    assert archive.find(other, e_ico) is None
    assert archive.add(other, e_other) == (1, True)
    assert archive.lowest().energy == pytest.approx(e_ico)


def _emt_energy(atoms) -> float:
    atoms = atoms.copy()
    atoms.calc = EMT()
    return float(atoms.get_potential_energy())


def test_archive_periodic_same_crystal_other_cell():
    a = 3.6
    cubic = bulk("Cu", "fcc", a=a, cubic=True)
    other = make_supercell(bulk("Cu", "fcc", a=a), [[2, 0, 0], [0, 2, 0], [0, 0, 1]])
    assert len(other) == 4 and other.get_volume() == pytest.approx(cubic.get_volume())
    assert not np.allclose(other.cell.cellpar(), cubic.cell.cellpar())  # really another cell
    archive = MinimaArchive()
    archive.add(cubic, _emt_energy(cubic))
    assert archive.find(other, _emt_energy(other)) == 0


def test_archive_periodic_fcc_and_hcp_are_two_minima():
    a = 3.6
    fcc = bulk("Cu", "fcc", a=a, cubic=True)
    hcp = bulk("Cu", "hcp", a=a / math.sqrt(2), c=a / math.sqrt(2) * math.sqrt(8 / 3)) * (1, 1, 2)
    assert len(hcp) == 4
    assert hcp.get_volume() == pytest.approx(fcc.get_volume(), rel=1e-9)
    archive = MinimaArchive()
    archive.add(fcc, _emt_energy(fcc))
    e_hcp = _emt_energy(hcp)
    assert archive.find(hcp, e_hcp) is None
    assert archive.find(hcp, _emt_energy(fcc)) is None  # the fingerprint tells them apart
    assert archive.add(hcp, e_hcp) == (1, True)
    # and the same fcc cell, shifted and with its atoms permuted, is the first again
    moved = fcc.copy()
    moved.positions = moved.positions[[2, 0, 3, 1]] + [0.3, 0.1, -0.2]
    assert archive.find(moved, _emt_energy(moved)) == 0


# -- the exact Lennard-Jones calculator ----------------------------------------------------------


def test_lj_cluster_matches_ase_lennard_jones_without_cutoff():
    atoms = random_cluster(13, 3, dmin=0.85)
    atoms.calc = LennardJonesCluster()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    ref = atoms.copy()
    ref.calc = LennardJones(epsilon=1.0, sigma=1.0, rc=1e4)
    assert e == pytest.approx(ref.get_potential_energy(), abs=1e-9)
    assert np.abs(f - ref.get_forces()).max() < 1e-9
    # scaled parameters: E(eps, sigma; sigma * r) = eps * E(1, 1; r)
    scaled = atoms.copy()
    scaled.positions *= 3.4
    scaled.calc = LennardJonesCluster(epsilon=0.0104, sigma=3.4)
    assert scaled.get_potential_energy() == pytest.approx(0.0104 * e, rel=1e-12)


def test_lj_cluster_dimer_minimum_and_errors():
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 2 ** (1 / 6)]])
    dimer.calc = LennardJonesCluster()
    assert dimer.get_potential_energy() == pytest.approx(-1.0, abs=1e-12)
    assert np.abs(dimer.get_forces()).max() < 1e-12
    with pytest.raises(ParameterError, match="sigma"):
        LennardJonesCluster(sigma=-1.0)
    crystal = bulk("Ar", "fcc", a=5.3)
    crystal.calc = LennardJonesCluster()
    with pytest.raises(ParameterError, match="non-periodic"):
        crystal.get_potential_energy()


def test_project_takes_only_the_linear_part_of_force_adding_constraints():
    """Hookean adds a spring force in adjust_forces: a direction must not pick it up, and the
    biased gradient must stay the derivative of the biased value (central differences)."""
    from ase.build import bulk as _bulk
    from ase.constraints import Hookean

    atoms = _bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.pbc = False
    atoms.center(vacuum=4.0)
    atoms.set_constraint(Hookean(0, 1, k=5.0, rt=2.0))
    atoms.calc = EMT()
    surface = Surface(atoms)
    assert np.allclose(surface.project(np.zeros(12)), 0.0)
    rng = np.random.default_rng(4)
    n = surface.project(rng.normal(size=12))
    n /= np.linalg.norm(n)
    x0 = surface.get_x()
    surface.biases.append(GaussianBias(x0 - 0.2 * n, n, 0.7, 0.5))
    grad = surface.gradient_at(x0)
    h = 1e-5
    surface.set_x(x0 + h * n)
    up = surface.get_value()
    surface.set_x(x0 - h * n)
    down = surface.get_value()
    assert float(grad @ n) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)


def test_a_start_that_does_not_relax_is_refused_not_archived():
    from pesdata.explore.ssw import SSW
    from pesdata.explore.surface import EvaluationFailed

    walk = SSW(random_cluster(13, 1), LennardJonesCluster(), quench_steps=3)
    with pytest.raises(EvaluationFailed, match="quench_steps=3"):
        walk.run(0)
    assert len(walk.archive_) == 0 and walk.n_evaluations_ > 0 and walk.stopped_


def test_directions_of_an_unconstrained_crystal_carry_no_rigid_translation():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = EMT()
    for cell in (False, True):
        v = Surface(atoms, variable_cell=cell).project(
            np.random.default_rng(1).normal(size=3 * (len(atoms) + 3 * cell)))
        assert np.allclose(v.reshape(-1, 3)[: len(atoms)].mean(axis=0), 0.0, atol=1e-12)


def test_a_flattened_or_blown_up_cell_is_degenerate():
    from pesdata.explore.archive import is_degenerate_cell

    fcc = bulk("Cu", "fcc", a=3.6)  # primitive: heights 2.08 Å, nearest neighbour 2.55 Å
    assert not is_degenerate_cell(fcc, 2.55, fcc.get_volume())
    flat = Atoms("Cu", cell=[[4, 0, 0], [0, 4, 0], [1.0, 1.0, 0.5]], pbc=True)
    assert is_degenerate_cell(flat, 2.55, fcc.get_volume())
    assert is_degenerate_cell(fcc * (3, 3, 3), 2.55, fcc.get_volume())  # 27× the volume
