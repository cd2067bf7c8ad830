"""The pieces every selection criterion and diversity strategy shares.

A :class:`Criterion` follows scikit-learn's estimator template: the constructor only stores its
parameters, :meth:`Criterion.fit` validates them and learns from the reference (calibrating
thresholds), :meth:`Criterion.score` computes the raw per-frame numbers (the expensive part),
and :meth:`Criterion.judge` turns stored numbers plus thresholds into a verdict per frame (the
cheap part, which ``select --rescore`` re-runs without recomputing anything).

A :class:`Diversity` strategy picks at most ``budget`` frames from those that qualified, from
their per-structure fingerprints and priority scores, deterministically from its seed.

Per-atom environments travel as :class:`Environments`: the per-atom descriptor rows of a set of
frames, in frame order, as :func:`pesdata.descriptors.load_descriptors` returns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..errors import ParameterError

__all__ = ["Criterion", "Diversity", "Environments", "VERDICTS"]

# What Criterion.judge may say of a frame, per criterion family.
VERDICTS = {
    "novelty": ("novel", "familiar", "failed"),
    "error": ("accurate", "candidate", "failed"),
}


@dataclass(frozen=True)
class Environments:
    """Per-atom descriptor rows of ``n_frames`` frames.

    Parameters
    ----------
    features : ndarray, shape (n_atoms_total, n_features)
        One row per atom, frames one after the other in order.
    numbers : ndarray of int, shape (n_atoms_total,)
        Atomic number of each row's atom.
    structure : ndarray of int, shape (n_atoms_total,)
        Frame index (0 .. n_frames-1) of each row, non-decreasing.
    n_frames : int
        Number of frames (a frame may have no rows only if it has no atoms).
    feature_names : tuple of str, optional
        Names of the feature columns.
    """

    features: np.ndarray
    numbers: np.ndarray
    structure: np.ndarray
    n_frames: int
    feature_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        f = np.asarray(self.features)
        if f.ndim != 2:
            raise ParameterError(f"features must be 2-D (atoms × features), got shape {f.shape}")
        n = len(f)
        for name in ("numbers", "structure"):
            a = np.asarray(getattr(self, name))
            if a.shape != (n,):
                raise ParameterError(
                    f"{name} must have one entry per feature row ({n}), got shape {a.shape}")
        s = np.asarray(self.structure)
        if n and (s.min() < 0 or s.max() >= self.n_frames or np.any(np.diff(s) < 0)):
            raise ParameterError(
                f"structure must be non-decreasing frame indices in 0..{self.n_frames - 1}")

    @classmethod
    def from_cache(cls, loaded: Mapping[str, Any]) -> Environments:
        """From the dict :func:`pesdata.descriptors.load_descriptors` returns."""
        return cls(np.asarray(loaded["features"]), np.asarray(loaded["numbers"]),
                   np.asarray(loaded["structure"]), len(loaded["ids"]),
                   tuple(loaded.get("feature_names") or ()))

    @property
    def n_atoms(self) -> np.ndarray:
        """Number of rows of each frame, shape (n_frames,)."""
        return np.bincount(np.asarray(self.structure), minlength=self.n_frames)

    @property
    def elements(self) -> list[int]:
        """The atomic numbers present, sorted."""
        return sorted(np.unique(np.asarray(self.numbers)).tolist())


class Criterion:
    """Base class of selection criteria (novelty, error, committee).

    Subclasses set the class attributes and implement the four methods. The constructor stores
    its keyword arguments as attributes and nothing else; every check happens in :meth:`fit`.

    Attributes
    ----------
    name : str
        Registry name (``"novelty"``, ``"error"``, ``"committee"``).
    family : str
        ``"novelty"`` or ``"error"``: which verdicts :meth:`judge` gives (see ``VERDICTS``).
    columns : tuple of str
        The ledger columns :meth:`score` fills (declared in :mod:`pesdata.select.ledger`).
    thresholds_ : dict
        Set by :meth:`fit`: the thresholds as applied, JSON-serialisable, kept in the ledger
        summary so :meth:`judge` can run again from the ledger alone.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()

    def fit(self, reference) -> Criterion:  # pragma: no cover - every criterion overrides it
        """Validate parameters and learn from ``reference``; returns ``self``."""
        raise NotImplementedError

    def score(self, candidates) -> pd.DataFrame:  # pragma: no cover - overridden
        """Raw per-frame numbers: one row per candidate frame, the columns of ``columns``."""
        raise NotImplementedError

    @classmethod
    def judge(cls, scores: pd.DataFrame, thresholds: Mapping) -> pd.DataFrame:
        """Verdicts from stored scores: columns ``verdict``, ``reason`` and ``value``.

        ``value`` is the frame's summary number (the one a person reads in the ledger, e.g. the
        novelty relative to its threshold); ``verdict`` one of ``VERDICTS[family]``; ``reason``
        a short human sentence. Must be a pure function of its arguments: ``--rescore`` calls it
        on a ledger with new thresholds.
        """
        raise NotImplementedError  # pragma: no cover - overridden

    @classmethod
    def update_thresholds(cls, thresholds: Mapping, **changes) -> dict:
        """New thresholds from old ones and the options a user changed (for ``--rescore``).

        The default replaces keys; a criterion whose thresholds derive from stored statistics
        (a quantile of calibration distances) recomputes them here.
        """
        unknown = sorted(set(changes) - set(thresholds))
        if unknown:
            raise ParameterError(f"{cls.name} has no threshold(s) {unknown}; "
                                 f"it has {sorted(thresholds)}")
        return {**thresholds, **changes}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"


class Diversity:
    """Base class of diversity strategies (FPS, k-means medoids, DIRECT).

    Parameters
    ----------
    seed : int
        Seed of every random choice; same seed and inputs → same picks.
    """

    name: ClassVar[str] = ""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def pick(
        self,
        fingerprints: np.ndarray,
        budget: int,
        priority: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        group_cap: int | None = None,
    ) -> np.ndarray:  # pragma: no cover - overridden
        """Indices of at most ``budget`` rows of ``fingerprints``, in pick order.

        Parameters
        ----------
        fingerprints : ndarray, shape (n, d)
            Per-structure fingerprints of the frames that qualified.
        budget : int
            Most frames to pick (all of them when ``budget >= n``, still in pick order).
        priority : ndarray, shape (n,), optional
            How clear a case each frame is (higher = clearer); strategies use it so a tight
            budget keeps the clearest cases (see each strategy's docstring).
        groups : ndarray, shape (n,), optional
            Group label of each frame (trajectory, source).
        group_cap : int, optional
            At most this many picks per group.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed!r})"
