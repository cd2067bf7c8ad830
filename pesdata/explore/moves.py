"""The random parts of an SSW step: the walking direction N⁰ and the Metropolis acceptance.

``N⁰ = normalise(N_g + λ N_l [+ c · N_cell])`` (Shang & Liu 2013; 2014 for the cell):

* ``N_g`` — a global displacement, Gaussian per atom and scaled by 1/√mass (the direction of
  Maxwell–Boltzmann velocities), normalised;
* ``N_l`` — a local one: a random atom A and a random neighbour B of it (closer than 1.5 × A's
  nearest distance, minimum image) pulled towards each other, normalised; ``λ`` is uniform in
  ``mixing``;
* ``N_cell`` — with a variable cell, a random symmetric strain direction of norm ``c``
  (``cell_mixing``) in the cell block of the generalised coordinates.

The result is projected by :meth:`~pesdata.explore.surface.Surface.project` (constraints, rigid
motions of a free cluster) and normalised.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ..errors import ParameterError

__all__ = ["metropolis", "one_blas_thread", "random_direction"]


def random_direction(surface, rng: np.random.Generator, mixing: tuple[float, float],
                     cell_mixing: float | None = None) -> np.ndarray:
    """``N⁰`` for ``surface`` (a :class:`~pesdata.explore.surface.Surface`), a unit vector.

    Parameters
    ----------
    surface : Surface
        The structure and its coordinates (its ``atoms`` are not moved).
    rng : numpy.random.Generator
        The step's random numbers.
    mixing : (float, float)
        Range of ``λ``.
    cell_mixing : float, optional
        Weight of the strain part; None for a fixed cell.

    Raises
    ------
    ParameterError
        Every degree of freedom is constrained.
    """
    atoms = surface.atoms
    n_atoms = len(atoms)
    glob = rng.normal(size=(n_atoms, 3)) / np.sqrt(atoms.get_masses())[:, None]
    glob /= np.linalg.norm(glob)
    local = np.zeros((n_atoms, 3))
    lam = rng.uniform(*mixing)
    if n_atoms > 1:
        a = int(rng.integers(n_atoms))
        d = atoms.get_distances(a, range(n_atoms), mic=True, vector=True)
        r = np.linalg.norm(d, axis=1)
        r[a] = np.inf
        near = np.flatnonzero(r < 1.5 * r.min())
        b = int(near[rng.integers(len(near))])
        u = d[b] / r[b]
        local[a], local[b] = u, -u
        local /= np.linalg.norm(local)
    parts = [glob + lam * local]
    if cell_mixing is not None:
        strain = rng.normal(size=(3, 3))
        strain = 0.5 * (strain + strain.T)
        parts.append(cell_mixing * strain / np.linalg.norm(strain))
    n = surface.project(np.concatenate(parts).ravel())
    norm = float(np.linalg.norm(n))
    if norm < 1e-12:
        raise ParameterError("every degree of freedom is fixed: SSW has no direction to walk")
    return n / norm


def one_blas_thread():
    """One BLAS thread while walking: the filter's and optimiser's 3×3 and 3N-sized linear
    algebra runs 10–20× slower when two BLAS threads fight for busy cores (measured on the
    variable-cell Cu walk), and nothing SSW itself does is large enough to gain from more.
    OpenMP (torch's intra-op threads) is left alone."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def metropolis(delta: float, kt: float, rng: np.random.Generator) -> bool:
    """Accept a move that changes the energy by ``delta`` (eV) at ``kt`` (eV): always when
    ``delta ≤ 0``, else with probability ``exp(−delta / kt)`` (one uniform draw from ``rng``)."""
    if delta <= 0:
        return True
    return bool(rng.random() < math.exp(-delta / kt))
