"""The committee criterion: disagreement of a model ensemble where candidates carry no labels.

Per frame, from :meth:`pesdata.train.Committee.predict_std`: ``energy_std`` = the standard
deviation over members of the energy per atom (eV/atom) and ``force_std`` = the largest
per-atom force spread √(Σ_xyz var_k F) (eV/Å) — DP-GEN's ``max_devi_f``. They are judged
against a trust window (default :data:`pesdata.select.trust.DEFAULTS` ``["committee"]``, from
DP-GEN practice) exactly as the error criterion judges its errors: NaN means the committee was
not applied (an element outside its species, ``model_hash`` null: not judged), inf a NaN/inf
prediction or geometry (failed).
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
import pandas as pd

from .error import ErrorCriterion, finite_geometry, predictable

__all__ = ["CommitteeCriterion"]


class CommitteeCriterion(ErrorCriterion):
    """Committee disagreement: energy-per-atom std and the largest per-atom force spread.

    Parameters
    ----------
    committee : path-like or Committee
        A committee model directory (``pesdata train --model committee``) or a fitted
        :class:`pesdata.train.Committee`.
    trust : TrustWindows, dict, path-like or None
        The trust windows (None: :data:`pesdata.select.trust.DEFAULTS` ``["committee"]``).
    """

    name = "committee"
    family = "error"
    columns = ("energy_std", "force_std", "model_hash")
    trust_kind = "committee"
    names = {"energy": "energy spread", "force": "force spread"}
    model_kind = "committee"

    def __init__(self, committee, trust=None) -> None:
        self.committee = committee
        self.trust = trust

    @property
    def model(self):
        """The committee (the parameter :class:`ErrorCriterion` calls ``model``)."""
        return self.committee

    def score(self, candidates: Sequence[ase.Atoms]) -> pd.DataFrame:
        """``energy_std`` (eV/atom), ``force_std`` (eV/Å) and ``model_hash`` per frame."""
        self._check_fitted()
        images = list(candidates)
        n = len(images)
        e_std, f_std = np.full(n, np.nan), np.full(n, np.nan)
        hashes = np.full(n, None, dtype=object)
        usable = predictable(self.model_, images)
        finite = np.array([finite_geometry(a) for a in images], bool)
        hashes[usable] = self.model_hash_
        e_std[usable & ~finite] = np.inf
        f_std[usable & ~finite] = np.inf
        run = np.flatnonzero(usable & finite)
        if run.size:
            out = self.model_.predict_std([images[k] for k in run])
            e = np.asarray(out["energy_std"], dtype=float)
            e_std[run] = np.where(np.isfinite(e) & np.isfinite(out["energy"]), e, np.inf)
            for k, spread, mean in zip(run, out["forces_std"], out["forces"], strict=True):
                spread = np.asarray(spread, dtype=float)
                ok = np.isfinite(spread).all() and np.isfinite(mean).all()
                f_std[k] = float(spread.max()) if ok else np.inf
        return pd.DataFrame({"energy_std": e_std, "force_std": f_std,
                             "model_hash": pd.Series(hashes, dtype=object)})
