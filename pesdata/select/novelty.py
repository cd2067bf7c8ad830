"""Novelty: how far a candidate's atomic environments are from every reference environment.

Per atom, the Euclidean distance from its descriptor row to the nearest reference row **of the
same element**, in the reference's standardised space; per frame, the largest of these distances
relative to the element's threshold (or the mean of the ``top_k`` largest). The threshold of an
element is, unless given, the ``quantile`` of the reference's own leave-one-out nearest-neighbour
distances, so "novel" means "farther from the reference than all but 1 − q of the reference's
own environments are from each other".

Why this default (measured on mlearn Si, issue 15's known-answer case)
----------------------------------------------------------------------
*Scaling: one scale per element, not one per feature.* Each element's rows are centred per
feature and divided by one number, the element's total RMS spread ``sqrt(sum of feature
variances)``. Distances keep the descriptor's own geometry: a feature that varies little in
the reference (a long-range G2 in a crystal, a G4 that barely moves at 300 K) weighs as little
as it varies. Per-feature z-scores instead blow such features up to unit variance, so thermal
noise in them dominates the distance and hot liquid bulk frames look as novel as surfaces: with
z-scores, 1-NN max over atoms reaches precision 0.67–0.92 on surfaces and 0.67 on vacancies
(r_cut 4–6 Å); with one scale per element, 0.92–1.00 and 0.75 for every r_cut from 4.5 to
6.0 Å. Because the scale is one number per element and the threshold is calibrated in the same
space, the novelty (distance / threshold) does not depend on it at all; it only makes distances
comparable across elements and data sets (unit = the reference's RMS spread). ``scaling=
"feature"`` (z-scores) and ``"none"`` remain available.

*Descriptor: the default ACSF grid at r_cut = 5.5 Å* (:func:`default_descriptor`, element-
resolved, so any number of elements works). The surface and vacancy bars pass for every cutoff
from 4.5 to 6.0 Å (steps of 0.25 Å), so 5.5 is not a lucky value; within that range 5.5–6.0
also rank all six 300 K vacancy frames in the top ten. At 5.5 Å and q = 0.99 the verdicts
are: 12/12 surfaces and 10/12 vacancies novel, 3/16 bulk frames novel (the 2530 and 3374 K
liquid snapshots). Finer radial grids (16–24 shifted Gaussians), more G4 rows, PTSD, a k-NN
mean (k = 8), a top-k mean over atoms and density-normalised distances (d / the neighbour's
own leave-one-out distance; local outlier factor) were no better, and often worse.

*Why vacancies stop at 0.75.* Half of the vacancy candidates are snapshots of a 3374 K vacancy
MD: a liquid, in which a vacancy is 1/64 of free volume and no local environment differs from
the bulk liquid frames of the same temperature among the bulk candidates. Every local score
(QUESTS's dH included, 0.75) finds the six 300 K vacancy frames and then draws among the hot
liquids; precision 0.75 means all cold vacancies plus three hot ones.

*Score: 1-NN distance, max over atoms.* A frame is worth labelling when one environment is
new; a mean would hide a vacancy (4 of 63 atoms). ``aggregate="top_k"`` averages the ``top_k``
largest ratios instead, for data where single-atom outliers are noise.

Thresholds
----------
``thresholds_`` keeps, per element, 1001 quantiles (0, 0.001, ..., 1) of the calibration
distances, so :meth:`NoveltyCriterion.update_thresholds` sets a new quantile, an absolute
threshold, the aggregate or ``top_k`` without the reference; the applied threshold is always
read from that table (linear interpolation between table points; exact at its points, where it
equals ``numpy.quantile`` of the distances). An absolute ``threshold`` is in the standardised
space (unit: the element's RMS spread; with ``scaling="none"``, descriptor units).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from ase.data import atomic_numbers, chemical_symbols

from .._params import check_float, check_int
from ..errors import ParameterError
from ._base import Criterion, Environments

__all__ = ["DEFAULT_R_CUT", "INDEX_MB", "NoveltyCriterion", "default_descriptor"]

#: Megabytes of a streamed reference held in memory and indexed (see ``index_mb``).
INDEX_MB = 256
#: Cutoff (Å) of the default novelty descriptor.
DEFAULT_R_CUT = 5.5
_GRID = np.arange(1001) / 1000  # quantile levels of the calibration table
_AGGREGATES = ("max", "top_k")
_SCALINGS = ("element", "feature", "none")
_TINY = 1e-12  # smallest spread / threshold (a reference of identical environments)
_BATCH = 65_536


def default_descriptor(species: Sequence[str | int], **kwargs):
    """The descriptor ``pesdata select`` uses when none is given.

    ACSF with the default grid of :func:`pesdata.descriptors.default_acsf_params` at
    ``r_cut = DEFAULT_R_CUT`` (5.5 Å), element-resolved over ``species`` (see the module
    docstring for the measurements behind the choice). ``kwargs`` (``dtype``, ``device``,
    ``compile``) go to :class:`~pesdata.descriptors.ACSF`; they do not change the config.
    """
    from ..descriptors import ACSF

    return ACSF(species, r_cut=DEFAULT_R_CUT, **kwargs)


def _quote(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _check_threshold(value) -> float | None:
    if value is None:
        return None
    try:
        ok = not isinstance(value, bool) and np.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(f"threshold must be a positive finite number or None, "
                             f"got {_quote(value)}")
    return float(value)


def _check_quantile(value) -> float:
    try:
        ok = not isinstance(value, bool) and 0 < float(value) <= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(f"quantile must be a number in (0, 1], got {_quote(value)}")
    return float(value)


def _check_aggregate(value) -> str:
    if value not in _AGGREGATES:
        raise ParameterError(f"aggregate must be one of {', '.join(_AGGREGATES)}, "
                             f"got {_quote(value)}")
    return value


def _threshold_from_table(table, quantile: float) -> float:
    return max(float(np.interp(quantile, _GRID, np.asarray(table, dtype=float))), _TINY)


def _per_element(thresholds: Mapping) -> dict[str, float | None]:
    """Threshold per element; None for an element with too few reference environments to
    calibrate (its atoms make a frame novel, see :func:`_frame_summary`)."""
    absolute = thresholds.get("threshold")
    out: dict[str, float | None] = {}
    for sym, table in thresholds["calibration"].items():
        if absolute is not None:
            out[sym] = float(absolute)
        elif table is None:
            out[sym] = None
        else:
            out[sym] = _threshold_from_table(table, thresholds["quantile"])
    return out


def _frame_summary(dist: np.ndarray, numbers: np.ndarray, thresholds: Mapping):
    """(novelty, distance, element, atom, verdict, reason) of one frame."""
    if len(dist) != len(numbers):
        return (np.nan, np.nan, None, None, "failed",
                f"{len(dist)} atom distances for {len(numbers)} atoms")
    if len(dist) == 0:
        return np.nan, np.nan, None, None, "failed", "frame has no atoms"
    bad = np.flatnonzero(np.isnan(dist))
    if len(bad):
        i = int(bad[0])
        return (np.nan, np.nan, chemical_symbols[int(numbers[i])], i, "failed",
                f"NaN/inf descriptor on atom {i}")
    per = thresholds["per_element"]
    syms = [chemical_symbols[int(z)] for z in numbers]
    unknown = [j for j, s in enumerate(syms) if per.get(s) is None]
    if unknown:
        i = unknown[0]
        missing = sorted({syms[j] for j in unknown if syms[j] not in per},
                         key=lambda s: atomic_numbers[s])
        single = sorted({syms[j] for j in unknown if syms[j] in per},
                        key=lambda s: atomic_numbers[s])
        why = [f"element {', '.join(missing)} not in the reference"] if missing else []
        if single:
            why.append(f"element {', '.join(single)} has fewer than 2 reference environments "
                       "(no calibrated threshold; give an absolute one to judge it)")
        return np.inf, np.inf, syms[i], i, "novel", "; ".join(why)
    thr = np.array([per[s] for s in syms])
    ratio = dist / thr
    i = int(np.argmax(ratio))  # first atom of the largest ratio
    where = f"on {syms[i]} atom {i}"
    how = ("absolute" if thresholds.get("threshold") is not None
           else f"q={thresholds['quantile']:g}")
    if thresholds["aggregate"] == "max":
        novelty = float(ratio[i])
        word = "max distance"
        text = f"{word} {dist[i]:.3g} {where}"
        cmp = ">" if novelty > 1 else "≤"
        reason = f"{text} {cmp} threshold {thr[i]:.3g} ({how})"
    else:
        k = min(int(thresholds["top_k"]), len(ratio))
        novelty = float(np.mean(np.sort(ratio)[-k:]))
        cmp = ">" if novelty > 1 else "≤"
        reason = (f"top-{k} mean distance/threshold {novelty:.3g} {cmp} 1 (largest "
                  f"{dist[i]:.3g} {where}, threshold {thr[i]:.3g}, {how})")
    verdict = "novel" if novelty > 1 else "familiar"
    return novelty, float(dist[i]), syms[i], i, verdict, reason


class NoveltyCriterion(Criterion):
    """Novelty of candidate frames against a reference, per element (see the module docstring).

    Parameters
    ----------
    threshold : float, optional
        Absolute distance threshold (standardised units) for every element; default: each
        element's calibrated ``quantile``.
    quantile : float
        Quantile in (0, 1] of the reference's leave-one-out 1-NN distances that sets each
        element's threshold (default 0.99).
    aggregate : {"max", "top_k"}
        Frame novelty: the largest per-atom distance/threshold, or the mean of the ``top_k``
        largest.
    top_k : int
        Atoms averaged by ``aggregate="top_k"`` (default 3).
    exact_max : int
        Reference rows per element up to which the search is exact (faiss ``IndexFlatL2``);
        above, an IVF index (1-NN recall 0.9999 measured on 1.28 M Si environments,
        :mod:`pesdata.select._nn`) — for a streamed element, IVF cells shared by all chunks
        (:mod:`pesdata.select._reference`; recall 0.9998 measured at 2·10⁶ environments per
        element by ``benchmarks/bench_select_recall.py``). Default 100,000.
    scaling : {"element", "feature", "none"}
        "element" (default): centre each feature, divide by the element's total RMS spread;
        "feature": per-feature z-scores; "none": raw descriptor values.
    n_calibration : int or None
        Most reference rows per element (a seeded random subsample) whose leave-one-out
        distances calibrate the thresholds (default 20,000; None: all rows).
    seed : int
        Seed of the calibration subsample and of the approximate index.
    index_mb : float
        For a reference read in chunks (:class:`~pesdata.select._reference.StreamedReference`,
        what ``select`` passes): megabytes of its rows that may be held in memory, indexed as
        above (rows and index, float32); each element in order of atomic number that still
        fits the budget left is held, the others are searched chunk by chunk (memory flat in
        the reference's size; exact up to ``exact_max`` rows, IVF above). Default 256; 0
        streams every element. An in-memory reference ignores it.

    Attributes
    ----------
    thresholds_ : dict
        ``{"per_element": {sym: t}, "quantile", "threshold", "aggregate", "top_k",
        "calibration": {sym: [1001 quantiles] or None}, "scaling": {"kind", "scale": {sym:
        s}}, "n_reference": {sym: n}, "n_calibration": {sym: m}, "n_nonfinite_dropped":
        {sym: n}, "search": {sym: "IndexFlatL2" | "IndexIVFFlat" | "streamed" |
        "streamed IVF"}}``.
    """

    name = "novelty"
    family = "novelty"
    columns = ("novelty", "novelty_distance", "novelty_element", "novelty_atom",
               "atom_distances", "atom_numbers")

    def __init__(self, threshold: float | None = None, quantile: float = 0.99,
                 aggregate: str = "max", top_k: int = 3, exact_max: int | None = None,
                 scaling: str = "element", n_calibration: int | None = 20_000,
                 seed: int = 0, index_mb: float = INDEX_MB) -> None:
        self.threshold = threshold
        self.quantile = quantile
        self.aggregate = aggregate
        self.top_k = top_k
        self.exact_max = exact_max
        self.scaling = scaling
        self.n_calibration = n_calibration
        self.seed = seed
        self.index_mb = index_mb

    # -- fit -----------------------------------------------------------------------------------
    def _validate(self) -> dict:
        from . import _nn

        if self.scaling not in _SCALINGS:
            raise ParameterError(f"scaling must be one of {', '.join(_SCALINGS)}, "
                                 f"got {_quote(self.scaling)}")
        return {
            "threshold": _check_threshold(self.threshold),
            "quantile": _check_quantile(self.quantile),
            "aggregate": _check_aggregate(self.aggregate),
            "top_k": check_int("top_k", self.top_k),
            "exact_max": _nn.EXACT_MAX if self.exact_max is None
            else check_int("exact_max", self.exact_max),
            "n_calibration": None if self.n_calibration is None
            else check_int("n_calibration", self.n_calibration, 2),
            "seed": check_int("seed", self.seed, 0, what="a non-negative integer"),
            "index_mb": check_float("index_mb", self.index_mb, low=0,
                                    what="a finite number ≥ 0 (megabytes)"),
        }

    def _scale(self, mu: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """(centre, scale) of rows with per-feature mean ``mu`` and variance ``var``."""
        if self.scaling == "none":
            return np.zeros_like(mu), 1.0
        if self.scaling == "feature":
            sd = np.sqrt(var)
            return mu, np.where(sd > _TINY, sd, 1.0)
        spread = float(np.sqrt(var.sum()))
        return mu, spread if spread > _TINY else 1.0

    def fit(self, reference: Environments) -> NoveltyCriterion:
        """Validate the parameters, index the reference per element, calibrate thresholds."""
        from . import _nn
        from ._reference import StreamedReference

        p = self._validate()
        if isinstance(reference, StreamedReference):
            from ._reference import fit_streamed

            return fit_streamed(self, reference, p)
        if not isinstance(reference, Environments):
            raise ParameterError("reference must be Environments or a StreamedReference, got "
                                 f"{type(reference).__name__}")
        feats = np.asarray(reference.features, dtype=np.float64)
        numbers = np.asarray(reference.numbers)
        if len(feats) == 0:
            raise ParameterError("the reference has no atomic environments")
        self.n_features_ = feats.shape[1]
        self.centre_, self.scale_, self.indexes_, self.rows_ = {}, {}, {}, {}
        self.reference_ = None  # a refit on Environments drops an earlier streamed reference
        self.quantisers_ = {}
        calibration, n_ref, n_cal, dropped = {}, {}, {}, {}
        rng = np.random.default_rng(p["seed"])
        for z in reference.elements:
            sym = chemical_symbols[z]
            x = feats[numbers == z]
            finite = np.isfinite(x).all(axis=1)
            dropped[sym] = int((~finite).sum())
            x = x[finite]
            n_ref[sym] = len(x)
            if not len(x):
                continue  # every row non-finite: the element counts as absent
            mu, scale = self._scale(x.mean(axis=0), x.var(axis=0))
            xs = ((x - mu) / scale).astype(np.float32)
            self.centre_[sym], self.scale_[sym] = mu, scale
            index = _nn.build_index(xs, p["exact_max"], p["seed"])
            self.indexes_[sym], self.rows_[sym] = index, xs
            calibration[sym], n_cal[sym] = self._calibrate(index, xs, p, rng)
        search = {sym: type(index).__name__ for sym, index in self.indexes_.items()}
        return self._set_thresholds(p, calibration, n_ref, n_cal, dropped, search)

    def _set_thresholds(self, p: dict, calibration, n_ref, n_cal, dropped,
                        search: dict) -> NoveltyCriterion:
        thresholds = {
            "quantile": p["quantile"], "threshold": p["threshold"],
            "aggregate": p["aggregate"], "top_k": p["top_k"], "calibration": calibration,
            "scaling": {"kind": self.scaling,
                        "scale": {s: (v if np.isscalar(v) else None)
                                  for s, v in self.scale_.items()}},
            "n_reference": n_ref, "n_calibration": n_cal, "n_nonfinite_dropped": dropped,
            "exact_max": p["exact_max"], "seed": p["seed"], "search": search,
        }
        thresholds["per_element"] = _per_element(thresholds)
        self.thresholds_ = thresholds
        return self

    @staticmethod
    def _calibrate(index, xs: np.ndarray, p: dict, rng) -> tuple[list | None, int]:
        """1001 quantiles of leave-one-out 1-NN distances of (a subsample of) ``xs``."""
        from . import _nn

        n = len(xs)
        if n < 2:
            return None, 0
        rows = np.arange(n)
        if p["n_calibration"] is not None and n > p["n_calibration"]:
            rows = np.sort(rng.choice(n, p["n_calibration"], replace=False))
        dist, idx = _nn.search(index, xs[rows], k=2, batch=_BATCH, rows=xs)
        # drop self: the first hit that is not the query row itself (a duplicate row at
        # distance 0 stays, as it should: it is another environment)
        first_is_self = idx[:, 0] == rows
        loo = np.where(first_is_self, dist[:, 1], dist[:, 0])
        loo = loo[np.isfinite(loo)]
        if not len(loo):
            return None, 0
        return [float(v) for v in np.quantile(loo, _GRID)], len(rows)

    # -- score ---------------------------------------------------------------------------------
    def score(self, candidates: Environments) -> pd.DataFrame:
        """Per-atom distances and the frame summary, one row per candidate frame."""
        from . import _nn

        if not hasattr(self, "thresholds_"):
            raise ParameterError("NoveltyCriterion is not fitted: call fit(reference) first")
        if not isinstance(candidates, Environments):
            raise ParameterError(
                f"candidates must be Environments, got {type(candidates).__name__}")
        feats = np.asarray(candidates.features)
        if len(feats) and feats.shape[1] != self.n_features_:
            raise ParameterError(f"candidates have {feats.shape[1]} features, the reference "
                                 f"{self.n_features_}: use the same descriptor")
        numbers = np.asarray(candidates.numbers)
        dist = np.full(len(feats), np.inf)
        finite = np.isfinite(feats).all(axis=1) if len(feats) else np.ones(0, bool)
        streamed = getattr(self, "reference_", None)
        queries = {}
        for z in np.unique(numbers):
            sym = chemical_symbols[int(z)]
            if streamed is not None and sym in self.centre_ and sym not in self.indexes_:
                r = np.flatnonzero((numbers == z) & finite)
                queries[int(z)] = (self.centre_[sym], self.scale_[sym],
                                   (feats[r] - self.centre_[sym]) / self.scale_[sym], None,
                                   getattr(self, "quantisers_", {}).get(sym))
                continue
            if sym not in self.indexes_:
                continue
            rows = np.flatnonzero((numbers == z) & finite)
            for start in range(0, len(rows), _BATCH):  # scaled copies stay batch-sized
                r = rows[start:start + _BATCH]
                xs = (feats[r] - self.centre_[sym]) / self.scale_[sym]
                dist[r] = _nn.search(self.indexes_[sym], xs, 1, _BATCH,
                                     rows=self.rows_[sym])[0][:, 0]
        if queries:
            for z, (d, _) in streamed.nearest(queries).items():
                dist[np.flatnonzero((numbers == z) & finite)] = d
        dist[~finite] = np.nan
        # the ledger keeps float32: summarise exactly what it keeps, so judge() reproduces it
        dist = dist.astype(np.float32).astype(np.float64)
        bounds = np.r_[0, np.cumsum(candidates.n_atoms)]
        spans = list(zip(bounds[:-1], bounds[1:], strict=True))
        atom_d = [dist[a:b].tolist() for a, b in spans]
        atom_z = [numbers[a:b].astype(int).tolist() for a, b in spans]
        out = pd.DataFrame({"atom_distances": atom_d, "atom_numbers": atom_z})
        summary = self.judge(out, self.thresholds_)
        for col in ("novelty", "novelty_distance", "novelty_element", "novelty_atom"):
            out[col] = summary[col]
        return out[list(self.columns)]

    # -- judge ---------------------------------------------------------------------------------
    @classmethod
    def judge(cls, scores: pd.DataFrame, thresholds: Mapping) -> pd.DataFrame:
        """Verdicts from ``atom_distances`` / ``atom_numbers`` and ``thresholds``.

        Returns a DataFrame on ``scores.index`` with ``value`` (= ``novelty``), ``verdict``
        (novel / familiar / failed), ``reason`` and the recomputed summary columns
        ``novelty``, ``novelty_distance``, ``novelty_element``, ``novelty_atom``. A NaN
        distance makes the frame failed; an element without a threshold makes it novel.
        """
        for key in ("per_element", "aggregate", "quantile"):
            if key not in thresholds:
                raise ParameterError(f"novelty thresholds lack {key!r}; "
                                     f"got keys {sorted(thresholds)}")
        _check_aggregate(thresholds["aggregate"])
        if thresholds["aggregate"] == "top_k":
            check_int("top_k", thresholds.get("top_k"))
        rows = []
        for d, z in zip(scores["atom_distances"], scores["atom_numbers"], strict=True):
            d = np.asarray(d if d is not None else [], dtype=np.float64)
            z = np.asarray(z if z is not None else [], dtype=np.int64)
            rows.append(_frame_summary(d, z, thresholds))
        cols = ["novelty", "novelty_distance", "novelty_element", "novelty_atom",
                "verdict", "reason"]
        out = pd.DataFrame(rows, columns=cols, index=scores.index)
        out["novelty"] = out["novelty"].astype(float)
        out["novelty_distance"] = out["novelty_distance"].astype(float)
        out["novelty_atom"] = out["novelty_atom"].astype("Int32")
        out["value"] = out["novelty"]
        return out[["value", "verdict", "reason", *cols[:4]]]

    @classmethod
    def update_thresholds(cls, thresholds: Mapping, **changes) -> dict:
        """New thresholds from stored ones: ``quantile``, ``threshold``, ``aggregate``,
        ``top_k`` (per-element thresholds recomputed from the calibration table)."""
        allowed = ("quantile", "threshold", "aggregate", "top_k")
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise ParameterError(f"novelty has no threshold option(s) {unknown}; "
                                 f"it has {list(allowed)}")
        new = {**thresholds}
        if "quantile" in changes:
            new["quantile"] = _check_quantile(changes["quantile"])
            if "threshold" not in changes:
                new["threshold"] = None  # a new quantile means: calibrated again
        if "threshold" in changes:
            new["threshold"] = _check_threshold(changes["threshold"])
        if "aggregate" in changes:
            new["aggregate"] = _check_aggregate(changes["aggregate"])
        if "top_k" in changes:
            new["top_k"] = check_int("top_k", changes["top_k"])
        new["per_element"] = _per_element(new)
        return new
