"""Error metrics in the units the field reports: meV/atom for energies, eV/Å for forces."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["error_metrics"]


def error_metrics(
    energy_pred: Sequence[float],
    energy_ref: Sequence[float],
    n_atoms: Sequence[int],
    forces_pred: np.ndarray | None = None,
    forces_ref: np.ndarray | None = None,
) -> dict:
    """Energy MAE/RMSE per atom (meV/atom) and force-component MAE/RMSE (eV/Å).

    Parameters
    ----------
    energy_pred, energy_ref : sequence of float
        Predicted and reference total energies (eV), one per structure.
    n_atoms : sequence of int
        Atoms per structure (energies are compared per atom).
    forces_pred, forces_ref : array (N, 3), optional
        Predicted and reference forces (eV/Å) of the structures that have reference forces,
        concatenated in the same order.

    Returns
    -------
    dict
        ``n_structures``, ``energy_mae``, ``energy_rmse`` and, with forces, ``force_mae``,
        ``force_rmse`` (else None).
    """
    n = np.asarray(n_atoms, dtype=float)
    de = (np.asarray(energy_pred, float) - np.asarray(energy_ref, float)) / n * 1000.0
    out = {
        "n_structures": int(len(n)),
        "energy_mae": float(np.mean(np.abs(de))),
        "energy_rmse": float(np.sqrt(np.mean(de**2))),
        "force_mae": None,
        "force_rmse": None,
    }
    if forces_pred is not None and forces_ref is not None:
        df = np.asarray(forces_pred, float) - np.asarray(forces_ref, float)
        out["force_mae"] = float(np.mean(np.abs(df)))
        out["force_rmse"] = float(np.sqrt(np.mean(df**2)))
    return out
