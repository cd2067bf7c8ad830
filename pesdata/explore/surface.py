"""The surface SSW walks on: one flat coordinate vector, counted evaluations, Gaussian biases.

:class:`Surface` wraps an :class:`ase.Atoms` with a calculator as an ASE
:class:`~ase.utils.abc.Optimizable`, so that any ASE optimiser relaxes it, in one flat vector
``x`` of "generalised" coordinates:

* fixed cell — the Cartesian positions (``3 N`` numbers);
* variable cell — the coordinates of :class:`ase.filters.FrechetCellFilter`: positions in the
  undeformed cell plus the log of the deformation gradient scaled by ``exp_cell_factor``
  (``3 N + 9`` numbers); its forces are the atomic forces plus the stress acting on the cell.

Its value is the true energy plus the sum of the :class:`GaussianBias` terms added so far, its
gradient the true gradient plus theirs (analytic). ASE constraints apply: ``FixAtoms`` atoms get
zero force and do not move, and :meth:`Surface.project` removes the components of a direction
that the constraints forbid or that cost no energy (a rigid translation of an unconstrained
structure, a rigid rotation of a free cluster).

Every new evaluation of the calculator (energy and forces at a new ``x``) adds one to
:attr:`Surface.n_evaluations`; at ``max_evaluations`` the next one raises
:class:`BudgetExhausted` instead of calling the calculator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase.utils.abc import Optimizable

from ..errors import PesdataError

__all__ = ["BudgetExhausted", "EvaluationFailed", "GaussianBias", "Surface"]


class BudgetExhausted(PesdataError):
    """The cap on energy/force evaluations is reached (raised before calling the calculator)."""


class EvaluationFailed(PesdataError):
    """The calculator raised, or returned a NaN/inf energy or force, at some coordinates."""


@dataclass(frozen=True)
class GaussianBias:
    """One bias term ``w · exp(−((x − c)·n)² / (2 ds²))`` along the unit vector ``n``.

    Parameters
    ----------
    center : numpy.ndarray
        ``c``, flat coordinates where the Gaussian is centred.
    direction : numpy.ndarray
        ``n``, unit vector of the same length.
    height : float
        ``w`` in eV.
    width : float
        ``ds`` in Å (generalised coordinates).
    """

    center: np.ndarray
    direction: np.ndarray
    height: float
    width: float

    def energy_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient of the bias at ``x``."""
        s = float(np.dot(x - self.center, self.direction))
        v = self.height * math.exp(-0.5 * (s / self.width) ** 2)
        return v, (-v * s / self.width**2) * self.direction


class Surface(Optimizable):
    """An :class:`ase.Atoms` as a flat-coordinate, bias-aware, evaluation-counting surface.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure, with its calculator attached. It is moved in place.
    variable_cell : bool
        Walk the cell too (through :class:`ase.filters.FrechetCellFilter`); needs a calculator
        with stress and a fully periodic cell.
    max_evaluations : int or None
        Cap on calculator evaluations (``None``: no cap).
    known : dict, optional
        The calculator's results (``energy``, ``forces`` and, with a variable cell, ``stress``)
        at the current geometry, already paid for: the first evaluation there is free.
    """

    def __init__(self, atoms, variable_cell: bool = False,
                 max_evaluations: int | None = None, known: dict | None = None) -> None:
        self.atoms = atoms
        self.variable_cell = variable_cell
        if variable_cell:
            from ase.filters import FrechetCellFilter

            self.obj = FrechetCellFilter(atoms)
        else:
            self.obj = atoms
        self.biases: list[GaussianBias] = []
        self.n_evaluations = 0
        self.max_evaluations = max_evaluations
        # the last two evaluations: a dimer's trial point and the centre it returns to
        self._cache: list[tuple[np.ndarray, tuple[float, np.ndarray], dict]] = []
        # without constraints a rigid translation costs no energy (any cell) and so does a
        # rotation (a cluster): directions must not be spent on them
        self._free = not atoms.constraints
        self._free_cluster = self._free and not any(atoms.pbc)
        # the coordinates as last set: FrechetCellFilter.get_positions takes a matrix log
        # (milliseconds), far more than a small calculator
        self._x = np.asarray(self.obj.get_positions(), dtype=float).ravel().copy()
        if known is not None:
            self._prime(known)

    # -- coordinates ---------------------------------------------------------------------------

    def ndofs(self) -> int:
        return 3 * len(self.obj)

    def get_x(self) -> np.ndarray:
        return self._x.copy()

    def set_x(self, x: np.ndarray) -> None:
        x = np.array(x, dtype=float).ravel()
        self.obj.set_positions(x.reshape(-1, 3))
        if self.atoms.constraints:  # fixed atoms stay where they were: read them back
            x = np.asarray(self.obj.get_positions(), dtype=float).ravel().copy()
        self._x = x

    def iterimages(self):
        return iter([self.atoms])

    def project(self, v: np.ndarray) -> np.ndarray:
        """``v`` without the components the constraints forbid, without a rigid translation
        when nothing is constrained, and for a free cluster without its rigid rotations; the
        cell block of a variable-cell
        vector is made symmetric (no rigid rotation of the cell)."""
        v = np.array(v, dtype=float).reshape(-1, 3)
        n = len(self.atoms)
        atom_part = v[:n]
        if self.atoms.constraints:
            # the linear part of the constraints' force adjustment: FixAtoms, FixCartesian,
            # FixBondLength... are projections, but Hookean and ExternalForce *add* a force,
            # which must not leak into a direction
            offset = np.zeros_like(atom_part)
            for constraint in self.atoms.constraints:
                constraint.adjust_forces(self.atoms, atom_part)
                constraint.adjust_forces(self.atoms, offset)
            atom_part -= offset
        if self._free and n > 1:
            atom_part -= atom_part.mean(axis=0)
        if self._free_cluster and n > 1:
            basis = self._rotations()
            atom_part -= ((basis @ atom_part.ravel()) @ basis).reshape(n, 3)
        if self.variable_cell:
            v[n:] = 0.5 * (v[n:] + v[n:].T)
        return v.ravel()

    def _rotations(self) -> np.ndarray:
        """Orthonormal basis (rows, flat 3N) of the rigid rotations about the centroid."""
        r = self.atoms.positions - self.atoms.positions.mean(axis=0)
        gens = np.stack([np.cross(np.eye(3)[k], r).ravel() for k in range(3)])
        u, s, vt = np.linalg.svd(gens, full_matrices=False)
        return vt[s > 1e-8 * max(s.max(), 1e-300)]

    def align_to(self, reference: np.ndarray) -> None:
        """Rigidly rotate and translate a free cluster onto ``reference`` positions (Kabsch,
        least squares): the energy is unchanged and the cached forces rotate with it, so no
        evaluation is spent. Does nothing for periodic or constrained structures."""
        if not self._free_cluster or len(self.atoms) < 3:
            return
        pos = self.atoms.positions
        c, c_ref = pos.mean(axis=0), reference.mean(axis=0)
        h = (pos - c).T @ (reference - c_ref)
        u, _, vt = np.linalg.svd(h)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T  # reference ≈ rot @ (pos - c) + c_ref
        old = self._x
        x_new = ((pos - c) @ rot.T + c_ref).ravel()
        hit = next(((e, f, res) for cx, (e, f), res in self._cache
                    if np.array_equal(cx, old)), None)
        self.set_x(x_new)
        if hit is not None:
            energy, forces, results = hit
            results = dict(results)
            if "forces" in results:
                results["forces"] = np.asarray(results["forces"]) @ rot.T
            if self.atoms.calc is not None:
                self.atoms.calc.results = results
            self._cache = [*self._cache[-1:],
                           (self.get_x(), (energy, (forces.reshape(-1, 3) @ rot.T).ravel()),
                            results)]

    # -- values ---------------------------------------------------------------------------------

    def true_energy_forces(self) -> tuple[float, np.ndarray]:
        """True energy and generalised forces (flat) at the current coordinates, evaluating
        the calculator when the coordinates changed since the last call."""
        x = self.get_x()
        for cached_x, values, results in self._cache:
            if np.array_equal(x, cached_x):
                if self.atoms.calc is not None and self.atoms.calc.results is not results:
                    self.atoms.calc.results = results  # the labels of this very geometry
                return values
        if self.max_evaluations is not None and self.n_evaluations >= self.max_evaluations:
            raise BudgetExhausted(f"the budget of {self.max_evaluations} energy/force "
                                  "evaluations is spent")
        self.n_evaluations += 1
        try:
            forces = np.asarray(self.obj.get_forces(), dtype=float).ravel().copy()
            energy = float(self.obj.get_potential_energy())
        except PesdataError:
            raise
        except Exception as exc:  # noqa: BLE001 - any calculator's failure, reported with its cause
            raise EvaluationFailed(f"the calculator raised {type(exc).__name__}: {exc}") from exc
        if not (math.isfinite(energy) and np.all(np.isfinite(forces))):
            raise EvaluationFailed("the calculator returned a NaN/inf energy or force")
        values = (energy, forces)
        results = dict(self.atoms.calc.results) if self.atoms.calc is not None else {}
        if self.atoms.calc is not None:
            self.atoms.calc.results = results
        self._cache = [*self._cache[-1:], (x, values, results)]
        return values

    def _prime(self, known: dict) -> None:
        """Cache ``known`` results as the evaluation at the current coordinates (the
        generalised forces come from them through a single-point calculator)."""
        from ase.calculators.singlepoint import SinglePointCalculator

        calc = self.atoms.calc
        results = {k: np.array(v, dtype=float) if k != "energy" else float(v)
                   for k, v in known.items()}
        spc = dict(results)
        spc.setdefault("free_energy", spc["energy"])  # FrechetCellFilter asks for it
        self.atoms.calc = SinglePointCalculator(self.atoms, **spc)
        try:
            forces = np.asarray(self.obj.get_forces(), dtype=float).ravel().copy()
            energy = float(self.obj.get_potential_energy())
        finally:
            self.atoms.calc = calc
        self._cache = [(self.get_x(), (energy, forces), results)]

    def bias_energy_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Sum of the bias terms and of their gradients at ``x``."""
        total, grad = 0.0, np.zeros_like(x)
        for bias in self.biases:
            v, g = bias.energy_gradient(x)
            total += v
            grad += g
        return total, grad

    def get_value(self) -> float:
        energy, _ = self.true_energy_forces()
        return energy + self.bias_energy_gradient(self.get_x())[0]

    def get_gradient(self) -> np.ndarray:
        _, forces = self.true_energy_forces()
        grad = -forces
        if self.biases:
            x = self.get_x()
            grad = grad + self.project(self.bias_energy_gradient(x)[1])
        return grad

    def gradient_at(self, x: np.ndarray) -> np.ndarray:
        """Gradient of the biased surface at ``x`` (moves the structure there)."""
        self.set_x(x)
        return self.get_gradient()
