"""Biased dimer rotation: the soft mode near a random direction, one evaluation per rotation.

SSW refines its random walking direction ``N⁰`` towards a low-curvature mode of the surface
without letting it wander off to an unrelated soft mode (Shang & Liu, JCTC 9, 1838 (2013)). The
rotation therefore minimises the *biased* curvature

    C_b(N) = Nᵀ H N − a (N · N⁰)²,

the curvature of the surface plus a negative quadratic well of depth ``a`` along ``N⁰``: with
``a = 0`` it is the dimer method's lowest mode, with large ``a`` it stays at ``N⁰``.

Curvatures come from forward differences of the gradient, ``H v ≈ (g(x + δ v) − g(x)) / δ``.
Each rotation evaluates ``H Θ`` once along the steepest-descent direction ``Θ`` of ``C_b`` on
the unit sphere (perpendicular to ``N``) and then minimises ``C_b`` exactly in the plane of
``N`` and ``Θ`` (a 2 × 2 eigenproblem); ``H N`` of the rotated ``N`` follows by linearity, so
the first ``H N`` costs one evaluation and every rotation one more.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["biased_lowest_mode"]


def biased_lowest_mode(
    hessian_vector: Callable[[np.ndarray], np.ndarray],
    n0: np.ndarray,
    start: np.ndarray | None = None,
    bias: float = 0.0,
    rotations: int = 3,
    angle_tol: float = math.radians(2.0),
    project: Callable[[np.ndarray], np.ndarray] | None = None,
    h_start: np.ndarray | None = None,
) -> tuple[np.ndarray, float, int]:
    """Rotate a unit vector towards the minimum of the biased curvature.

    Parameters
    ----------
    hessian_vector : callable
        ``v -> H v`` for a unit vector ``v`` (one energy/force evaluation each).
    n0 : numpy.ndarray
        The random direction ``N⁰`` (unit) that the bias keeps the result near.
    start : numpy.ndarray, optional
        Starting unit vector (default ``n0``).
    bias : float
        ``a`` ≥ 0, in eV/Å² (the units of a curvature).
    rotations : int
        Largest number of rotations (≥ 0; 0 returns ``start`` with its curvature).
    angle_tol : float
        Stop when a rotation turns ``N`` by less than this angle (radians).
    project : callable, optional
        Removes forbidden components (constraints) from trial vectors.
    h_start : numpy.ndarray, optional
        ``H · start`` when the caller has it already (saves one evaluation).

    Returns
    -------
    n : numpy.ndarray
        The rotated unit vector, oriented so that ``n · n0 ≥ 0``.
    curvature : float
        Its unbiased curvature ``Nᵀ H N``.
    n_calls : int
        ``hessian_vector`` calls made (rotations done, + 1 without ``h_start``).
    """
    proj = project or (lambda v: v)
    n = np.array(n0 if start is None else start, dtype=float)
    n /= np.linalg.norm(n)
    if h_start is None:
        hn, calls = hessian_vector(n), 1
    else:
        hn, calls = np.asarray(h_start, dtype=float), 0
    for _ in range(rotations):
        gb_n = hn - bias * np.dot(n, n0) * n0
        c_n = float(np.dot(n, gb_n))
        r = proj(gb_n - c_n * n)
        r -= np.dot(r, n) * n
        r_norm = float(np.linalg.norm(r))
        if r_norm < 1e-12:
            break
        theta = -r / r_norm
        ht = hessian_vector(theta)
        calls += 1
        gb_t = ht - bias * np.dot(theta, n0) * n0
        off = 0.5 * (float(np.dot(theta, gb_n)) + float(np.dot(n, gb_t)))
        m = np.array([[c_n, off], [off, float(np.dot(theta, gb_t))]])
        _, vecs = np.linalg.eigh(m)
        c, s = vecs[:, 0]
        if c < 0:
            c, s = -c, -s
        n_new = c * n + s * theta
        norm = float(np.linalg.norm(n_new))
        n, hn = n_new / norm, (c * hn + s * ht) / norm
        if math.atan2(abs(s), c) < angle_tol:
            break
    if np.dot(n, n0) < 0:
        n, hn = -n, -hn
    return n, float(np.dot(n, hn)), calls
