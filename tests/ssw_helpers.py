"""What the SSW test modules share: random LJ clusters and one BLAS thread per module."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """One BLAS thread: FrechetCellFilter's 3×3 matrix functions run 10–20× slower with
    OpenBLAS threads competing for a busy 2-core machine (SSW.run limits itself; the tests
    that drive a Surface or a filter directly need it too)."""
    import scipy.linalg  # noqa: F401 - load BLAS so that the limit applies to it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


def random_cluster(n: int, seed: int, dmin: float = 0.95) -> Atoms:
    """``n`` atoms uniformly in a cube sized for LJ density, no pair closer than ``dmin``."""
    rng = np.random.default_rng(seed)
    side = 1.3 * n ** (1 / 3)
    while True:
        p = rng.uniform(0, side, size=(n, 3))
        d = np.linalg.norm(p[:, None] - p[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        if d.min() > dmin:
            return Atoms(f"Ar{n}", positions=p)
