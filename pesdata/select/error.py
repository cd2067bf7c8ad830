"""The error criterion: how far a trained model is from the labels a candidate carries.

Per frame: ``energy_error`` = |E_model − E_label| / n_atoms (eV/atom) and ``force_error`` =
the largest per-atom norm |F_model − F_label| (eV/Å), judged against a trust window
(:mod:`pesdata.select.trust`): below lo **accurate**, in [lo, hi) **candidate**, at or above hi
**failed**.

What the stored numbers mean (so ``--rescore`` can judge from the ledger alone):

* NaN — not available: the frame has no such label (``atoms.calc.results`` holds no
  ``energy`` / ``forces``), or the model was not applied to it (an element outside the
  model's species; its ``model_hash`` is then null). Such a quantity is not judged; a frame
  with neither is not judged by this criterion (verdict None, reason says why) — never failed
  for lack of a label.
* inf — the label or the prediction is NaN/inf (or the geometry is): the frame **fails**.

Labels are read from ``atoms.calc.results`` only (as :mod:`pesdata.train.data` does), so a
live calculator attached to a candidate is never run.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence

import ase
import numpy as np
import pandas as pd

from ..errors import ParameterError
from ._base import Criterion
from .trust import TrustWindows, as_trust, judge_windows

__all__ = ["ErrorCriterion"]


def load_potential(model, kind: str | None = None):
    """``(potential, weights SHA-256)`` from a model directory or a fitted Potential.

    Parameters
    ----------
    model : path-like or Potential
        A directory written by :func:`pesdata.train.save_model` (its card's
        ``weights_sha256`` is the hash) or a fitted model (hashed as ``save_model`` would).
    kind : str, optional
        Required model kind (``"committee"``).

    Raises
    ------
    ArtefactError
        The directory is not a valid model.
    ParameterError
        ``model`` is neither, is not fitted, or is not of ``kind``.
    """
    from ..train import Potential, load_model

    card: dict = {}
    if isinstance(model, (str, os.PathLike)):
        model, card = load_model(model)
    if not isinstance(model, Potential):
        raise ParameterError(f"model must be a model directory or a fitted pesdata.train "
                             f"Potential, got {model!r}")
    if kind is not None and model.kind != kind:
        raise ParameterError(f"expected a {kind} model, got a {model.kind!r} model")
    digest = card.get("weights_sha256") or weights_sha256(model)
    return model, digest


def weights_sha256(model) -> str:
    """SHA-256 of ``torch.save(model.state_dict())``, as the model card records it."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)  # an unfitted model raises ParameterError here
    return hashlib.sha256(buf.getvalue()).hexdigest()


def predictable(model, images: Sequence[ase.Atoms]) -> np.ndarray:
    """Which frames the model can be applied to: atoms present, elements in its species."""
    species = np.asarray(model.descriptor.species)
    return np.array([len(a) > 0 and bool(np.isin(a.numbers, species).all()) for a in images],
                    dtype=bool)


def finite_geometry(atoms: ase.Atoms) -> bool:
    """Positions and cell are finite (a model is never fed NaN coordinates)."""
    return bool(np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all())


def _labels(atoms: ase.Atoms) -> tuple[float | None, np.ndarray | None]:
    """``(energy, forces)`` labels of a frame; None where absent."""
    results = atoms.calc.results if atoms.calc is not None else {}
    energy, forces = results.get("energy"), results.get("forces")
    e = f = None
    if energy is not None:  # a label that is not one number is NaN: the frame fails
        try:
            e = float(np.asarray(energy, dtype=float).item())
        except (TypeError, ValueError):
            e = float("nan")
    if forces is not None:
        try:
            f = np.asarray(forces, dtype=float)
        except (TypeError, ValueError):
            f = None
        if f is None or f.shape != (len(atoms), 3):
            f = np.full((len(atoms), 3), np.nan)  # not an (n, 3) array: no usable label
    return e, f


class ErrorCriterion(Criterion):
    """|ΔE|/atom and max |ΔF| between a trained model and the candidates' labels.

    Parameters
    ----------
    model : path-like or Potential
        A model directory (``pesdata train --out``) or a fitted :mod:`pesdata.train` model.
    trust : TrustWindows, dict, path-like or None
        The trust windows (None: :data:`pesdata.select.trust.DEFAULTS` ``["error"]``).

    Attributes
    ----------
    model_ : Potential
        The loaded model (after :meth:`fit`).
    model_hash_ : str
        SHA-256 of its weights (the card's ``weights_sha256``).
    thresholds_ : dict
        ``trust.to_dict()`` plus ``columns``.
    """

    name = "error"
    family = "error"
    columns = ("energy_error", "force_error", "model_hash")
    trust_kind = "error"
    names = {"energy": "energy error", "force": "force error"}
    model_kind: str | None = None

    def __init__(self, model, trust: TrustWindows | dict | str | os.PathLike | None = None):
        self.model = model
        self.trust = trust

    def fit(self, reference=None) -> ErrorCriterion:
        """Load and check the model and the trust windows (``reference`` is not used)."""
        self.model_, self.model_hash_ = load_potential(self.model, self.model_kind)
        self.trust_ = as_trust(self.trust, self.trust_kind)
        self.thresholds_ = {**self.trust_.to_dict(),
                            "columns": {"energy": self.columns[0], "force": self.columns[1]}}
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ParameterError(f"{type(self).__name__} is not fitted: call fit() first")

    def score(self, candidates: Sequence[ase.Atoms]) -> pd.DataFrame:
        """``energy_error`` (eV/atom), ``force_error`` (eV/Å), ``model_hash`` per frame."""
        self._check_fitted()
        images = list(candidates)
        n = len(images)
        e_err, f_err = np.full(n, np.nan), np.full(n, np.nan)
        hashes = np.full(n, None, dtype=object)
        labels = [_labels(a) for a in images]
        usable = predictable(self.model_, images)
        finite = np.array([finite_geometry(a) for a in images], bool)
        run = np.flatnonzero(usable & finite)
        for k in np.flatnonzero(usable & ~finite):  # NaN geometry: a non-finite prediction
            e, f = labels[k]
            e_err[k] = np.inf if e is not None else np.nan
            f_err[k] = np.inf if f is not None else np.nan
            hashes[k] = self.model_hash_
        if run.size:
            energies, forces = self.model_.predict([images[k] for k in run], forces=True)
            for k, e_pred, f_pred in zip(run, energies, forces, strict=True):
                e, f = labels[k]
                n_atoms = len(images[k])
                hashes[k] = self.model_hash_
                if e is not None:
                    d = abs(float(e_pred) - e) / n_atoms
                    e_err[k] = d if np.isfinite(d) else np.inf
                elif not np.isfinite(float(e_pred)):  # no label, but a broken prediction
                    e_err[k] = np.inf
                if f is None and not np.isfinite(np.asarray(f_pred, dtype=float)).all():
                    f_err[k] = np.inf
                if f is not None:
                    diff = np.asarray(f_pred, dtype=float) - f
                    d = float(np.sqrt((diff * diff).sum(axis=1)).max())
                    f_err[k] = d if np.isfinite(d) else np.inf
        return pd.DataFrame({"energy_error": e_err, "force_error": f_err,
                             "model_hash": pd.Series(hashes, dtype=object)})

    @classmethod
    def judge(cls, scores: pd.DataFrame, thresholds) -> pd.DataFrame:
        """Verdicts from the stored errors (see :func:`pesdata.select.trust.judge_windows`)."""
        return judge_windows(scores, thresholds, cls.names)

    @classmethod
    def update_thresholds(cls, thresholds, **changes) -> dict:
        """New thresholds with the default window's ``e_lo``/``e_hi``/``f_lo``/``f_hi`` changed.

        ``None`` for a ``*_hi`` removes its upper bound. The overrides are kept (and checked
        against the new default window).
        """
        thresholds = dict(thresholds)
        columns = thresholds.pop("columns", None)
        unknown = sorted(set(changes) - {"e_lo", "e_hi", "f_lo", "f_hi"})
        if unknown:
            raise ParameterError(f"{cls.name} has no threshold(s) {unknown}; it has "
                                 "['e_hi', 'e_lo', 'f_hi', 'f_lo']")
        doc = {**thresholds, "default": {**thresholds.get("default", {}), **changes}}
        trust = TrustWindows.from_dict(doc, kind=cls.trust_kind)
        return {**trust.to_dict(), "columns": columns}
