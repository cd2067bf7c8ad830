"""Trust windows of the error and committee criteria, and the verdicts they give.

A trust window is ``[lo, hi)`` per quantity, as DP-GEN users know it (``model_devi_f_trust_lo``
/ ``model_devi_f_trust_hi``): a frame whose number lies below ``lo`` is **accurate**, in
``[lo, hi)`` a **candidate** for labelling, at or above ``hi`` **failed** (the model, or the
structure, is so far off that the frame is unphysical and never labelled). Two quantities:

* energy — eV/atom: ``e_lo``, ``e_hi``;
* force — eV/Å: ``f_lo``, ``f_hi`` (the largest per-atom value of the frame).

``hi`` may be ``None`` (no upper bound). One default window applies unless an override for the
frame's ``config_type`` or its reduced formula (composition, e.g. ``O2Ti`` for any TiO2 cell)
says otherwise, because one window rarely fits a metal slab and a molecule. An override may
give some keys only; the others come from the default window.

**Precedence**: the frame's ``config_type`` override, then its formula override, then the
default window (the ledger's ``trust`` column says which applied: ``config_type=slab``,
``formula=O2Ti`` or ``default``).

Default windows (used for any key neither the options nor the file give)
-----------------------------------------------------------------------
The numbers differ with what is compared, because a committee's spread underestimates the
error against labels (members trained on the same data share much of their error):

=====================  =====================  ==============================================
criterion              energy (eV/atom)       force (eV/Å, largest per-atom value)
=====================  =====================  ==============================================
``error`` (model vs    lo 0.010, hi 1.0       lo 0.30, hi 5.0
labels)
``committee`` (spread) lo 0.005, hi None      lo 0.10, hi 0.35
=====================  =====================  ==============================================

Why these. Committee spread: DP-GEN's documented example sets ``model_devi_f_trust_lo`` 0.05
and ``model_devi_f_trust_hi`` 0.15 eV/Å on the max per-atom force deviation (the quantity
:meth:`pesdata.train.Committee.predict_std` gives), and its users commonly run 0.05–0.15 lo
and 0.25–0.35 hi (up to 0.5 for hard systems); its energy window is off by default
(``model_devi_e_trust_lo/hi`` = 1e10). We take f_lo 0.10 and f_hi 0.35 from the middle and
top of those ranges, and an energy lo of 5 meV/atom (no hi: energy spread alone never calls a
frame unphysical). Labels vs model: SSW-NN-type potentials reach 5–10 meV/atom and 0.1–0.2
eV/Å RMSE (see ``../shared/data/README``); the lo values sit at about twice that (the
per-atom force maximum of a frame exceeds the RMSE), and the hi values (1 eV/atom, 5 eV/Å)
are errors no trained potential makes on a physical structure with a sound label.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .._formula import reduced_formula
from ..errors import ArtefactError, InputError, ParameterError

__all__ = ["DEFAULTS", "KEYS", "QUANTITIES", "TrustWindows", "as_trust", "judge_windows"]

KEYS = ("e_lo", "e_hi", "f_lo", "f_hi")

#: quantity → (lo key, hi key, unit)
QUANTITIES = {"energy": ("e_lo", "e_hi", "eV/atom"), "force": ("f_lo", "f_hi", "eV/Å")}

#: Built-in default windows per criterion kind (see the module docstring for the reasons).
DEFAULTS = {
    "error": {"e_lo": 0.010, "e_hi": 1.0, "f_lo": 0.30, "f_hi": 5.0},
    "committee": {"e_lo": 0.005, "e_hi": None, "f_lo": 0.10, "f_hi": 0.35},
}


def _check_value(key: str, value, where: str) -> float | None:
    """A window value: lo finite ≥ 0; hi > 0 or None (inf means None)."""
    hi = key.endswith("_hi")
    if hi and (value is None or (isinstance(value, numbers.Real) and value == math.inf)):
        return None
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and (value > 0 if hi else value >= 0))
    if not ok:
        what = "a number > 0, or null for no upper bound" if hi else "a finite number ≥ 0"
        raise ParameterError(f"{where}{key} must be {what}, got {value!r}")
    return float(value)


def _check_window(window: Mapping, where: str = "", partial: bool = False) -> dict:
    """A validated window dict (``partial``: some keys may be missing)."""
    if not isinstance(window, Mapping):
        raise ParameterError(f"{where}a trust window must be a mapping of {KEYS}, got {window!r}")
    unknown = sorted(set(window) - set(KEYS))
    if unknown:
        raise ParameterError(f"{where}unknown trust key(s) {unknown}; known: {list(KEYS)}")
    if not partial:
        missing = [k for k in KEYS if k not in window]
        if missing:
            raise ParameterError(f"{where}trust window lacks {missing}")
    return {k: _check_value(k, window[k], where) for k in KEYS if k in window}


def _check_order(window: Mapping, where: str = "") -> None:
    for lo, hi in (("e_lo", "e_hi"), ("f_lo", "f_hi")):
        if window[hi] is not None and not window[lo] < window[hi]:
            raise ParameterError(f"{where}{lo} ({window[lo]:g}) must be below {hi} "
                                 f"({window[hi]:g})")


def _reduce(formula: str, where: str) -> str:
    """The reduced Hill formula of an override key; ParameterError if it is none."""
    from ase.data import chemical_symbols
    from ase.formula import Formula

    try:
        counts = Formula(formula).count()
    except Exception as exc:  # ase.formula raises ValueError, KeyError, ...
        raise ParameterError(f"{where}not a chemical formula ({exc})") from exc
    unknown = sorted(set(counts) - set(chemical_symbols[1:]))
    if not counts or unknown:
        raise ParameterError(f"{where}not a chemical formula (unknown element(s) {unknown})")
    return reduced_formula(formula)


def _check_kind(kind: str) -> str:
    if kind not in DEFAULTS:
        raise ParameterError(f"kind must be one of {sorted(DEFAULTS)}, got {kind!r}")
    return kind


class TrustWindows:
    """A default trust window plus overrides by ``config_type`` and by reduced formula.

    Parameters
    ----------
    default : mapping, optional
        Some or all of ``e_lo``, ``e_hi``, ``f_lo``, ``f_hi``; missing keys come from
        ``DEFAULTS[kind]``. A ``*_hi`` of None (or inf) means no upper bound.
    config_type, formula : mapping of str to mapping, optional
        Override windows (each with one or more keys; the rest from the default window).
        Formula keys are reduced (``Ti8O16`` → ``O2Ti``) so any cell of a composition matches.
    kind : {"error", "committee"}
        Whose built-in defaults fill the gaps (labels vs model, or committee spread).

    Raises
    ------
    ParameterError
        An unknown key, a value that is negative or not finite, ``lo ≥ hi``, an unparsable
        formula; the message names the window and key.
    """

    def __init__(
        self,
        default: Mapping | None = None,
        config_type: Mapping[str, Mapping] | None = None,
        formula: Mapping[str, Mapping] | None = None,
        kind: str = "error",
    ) -> None:
        self.kind = _check_kind(kind)
        given = _check_window(default or {}, "default: ", partial=True)
        self.default = {**DEFAULTS[kind], **given}
        _check_order(self.default, "default: ")
        self.config_type = self._overrides(config_type, "config_type")
        self.formula = self._overrides(formula, "formula")

    def _overrides(self, table: Mapping | None, what: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        if table is None:
            return out
        if not isinstance(table, Mapping):
            raise ParameterError(f"{what} overrides must be a mapping, got {table!r}")
        for name, window in table.items():
            where = f"{what} {name!r}: "
            key = str(name)
            if what == "formula":
                key = _reduce(key, where)
            part = _check_window(window, where, partial=True)
            if not part:
                raise ParameterError(f"{where}an override needs at least one of {list(KEYS)}")
            _check_order({**self.default, **part}, where)
            out[key] = part
        return out

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_options(
        cls,
        e_lo: float | None = None,
        e_hi: float | None = None,
        f_lo: float | None = None,
        f_hi: float | None = None,
        *,
        kind: str = "error",
    ) -> TrustWindows:
        """One default window from command-line style options.

        An option left None keeps the built-in default of ``kind``; pass ``math.inf`` as a
        ``*_hi`` for no upper bound.
        """
        given = {k: v for k, v in zip(KEYS, (e_lo, e_hi, f_lo, f_hi), strict=True)
                 if v is not None}
        return cls(given, kind=kind)

    @classmethod
    def from_sources(cls, path: str | os.PathLike | None = None, *, kind: str = "error",
                     **bounds: float | None) -> TrustWindows | None:
        """A trust file and/or default-window bounds (``e_lo=...``), as the command line gives.

        The bounds given replace the file's default window; overrides stay. None when neither
        a file nor a bound is given (the criterion's built-in defaults apply).
        """
        given = {k: v for k, v in bounds.items() if v is not None}
        unknown = sorted(set(given) - set(KEYS))
        if unknown:
            raise ParameterError(f"unknown trust bound(s) {unknown}; known: {list(KEYS)}")
        if path is None:
            return cls.from_options(**given, kind=kind) if given else None
        windows = cls.from_file(path, kind=kind)
        if not given:
            return windows
        doc = windows.to_dict()
        doc["default"] = {**doc["default"], **given}
        return cls.from_dict(doc, kind=kind)

    @classmethod
    def from_dict(cls, doc: Mapping, *, kind: str = "error") -> TrustWindows:
        """From a dict as :meth:`to_dict` writes (or a trust file holds)."""
        if not isinstance(doc, Mapping):
            raise ParameterError(f"trust windows must be a mapping, got {doc!r}")
        unknown = sorted(set(doc) - {"default", "config_type", "formula", "description"})
        if unknown:
            raise ParameterError(f"unknown trust section(s) {unknown}; known: default, "
                                 "config_type, formula")
        return cls(doc.get("default"), doc.get("config_type"), doc.get("formula"), kind=kind)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, kind: str = "error") -> TrustWindows:
        """Read a trust table from a JSON or YAML file (schema ``schemas/trust.json``).

        Example (YAML)::

            default: {f_lo: 0.1, f_hi: 0.35}
            config_type:
              slab: {f_lo: 0.2, f_hi: 0.6}
            formula:
              H2O: {e_lo: 0.002, f_lo: 0.05}

        Raises
        ------
        InputError
            The file cannot be read or parsed, fails the schema, or holds a window that is
            not usable (``lo ≥ hi``, a bad formula); the message names the file and field.
        """
        import yaml

        from ..store import validate_artefact

        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the trust file ({type(exc).__name__}: {exc})",
                             path=str(path)) from exc
        try:
            doc = (json.loads(text) if path.suffix.lower() == ".json"
                   else yaml.safe_load(text))
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())
            raise InputError(f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}"
                             f" ({reason})", path=str(path)) from exc
        if not isinstance(doc, dict):
            raise InputError(f"a trust file holds a mapping (default, config_type, formula), "
                             f"got {type(doc).__name__}", path=str(path))
        try:
            validate_artefact("trust", doc, where=path)
        except ArtefactError as exc:
            cause = exc.__cause__
            field = "/".join(str(p) for p in getattr(cause, "absolute_path", ())) or None
            reason = getattr(cause, "message", str(exc))
            raise InputError(f"does not fit schemas/trust.json: {reason}", path=str(path),
                             field=field) from exc
        try:
            return cls.from_dict(doc, kind=kind)
        except ParameterError as exc:
            section, _, rest = str(exc).partition(": ")
            field = section.replace(" '", "/").replace("'", "") if rest else None
            raise InputError(rest or str(exc), path=str(path), field=field) from exc

    def to_dict(self) -> dict:
        """JSON-serialisable form: the full default window and the overrides as given."""
        return {"default": dict(self.default),
                "config_type": {k: dict(v) for k, v in self.config_type.items()},
                "formula": {k: dict(v) for k, v in self.formula.items()}}

    # -- lookup -------------------------------------------------------------------------------
    def window(self, config_type: str | None = None,
               formula: str | None = None) -> tuple[str, dict]:
        """The window of a frame: ``(key, {"e_lo", "e_hi", "f_lo", "f_hi"})``.

        ``key`` is ``"config_type=<name>"``, ``"formula=<reduced formula>"`` or
        ``"default"`` (precedence in that order). ``formula`` may be any formula of the frame
        (``Cu32`` matches an override for ``Cu``).
        """
        if config_type is not None and config_type in self.config_type:
            return f"config_type={config_type}", {**self.default,
                                                  **self.config_type[config_type]}
        if formula and self.formula:
            try:
                reduced = reduced_formula(str(formula))
            except Exception:  # a formula the ledger cannot parse matches no override
                reduced = None
            if reduced in self.formula:
                return f"formula={reduced}", {**self.default, **self.formula[reduced]}
        return "default", dict(self.default)

    def __eq__(self, other) -> bool:
        return isinstance(other, TrustWindows) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"TrustWindows(default={self.default!r}, config_type={self.config_type!r}, "
                f"formula={self.formula!r})")


def as_trust(trust, kind: str) -> TrustWindows:
    """``trust`` (None, a TrustWindows, a dict or a file path) as :class:`TrustWindows`."""
    if trust is None:
        return TrustWindows(kind=kind)
    if isinstance(trust, TrustWindows):
        return trust
    if isinstance(trust, Mapping):
        return TrustWindows.from_dict(trust, kind=kind)
    if isinstance(trust, (str, os.PathLike)):
        return TrustWindows.from_file(trust, kind=kind)
    raise ParameterError(f"trust must be None, a TrustWindows, a dict or a file path, "
                         f"got {trust!r}")


def judge_windows(scores: pd.DataFrame, thresholds: Mapping, names: Mapping[str, str]
                  ) -> pd.DataFrame:
    """Verdicts of trust windows on stored numbers (the shared ``judge`` of error/committee).

    Parameters
    ----------
    scores : DataFrame
        The quantity columns named in ``thresholds["columns"]``; ``config_type`` and
        ``formula`` when any override exists; ``model_hash`` (null where the model was not
        applied to the frame).
    thresholds : mapping
        :meth:`TrustWindows.to_dict` plus ``columns``: ``{"energy": column, "force": column}``
        (a quantity may be absent or None).
    names : mapping
        How a reason names each quantity (``{"energy": "energy error", ...}``).

    Returns
    -------
    DataFrame
        ``value`` (the largest quantity / its lo: ≥ 1 is beyond accurate), ``verdict``
        (accurate / candidate / failed; None when no quantity is available), ``reason``,
        ``trust`` and the applied ``e_lo``, ``e_hi``, ``f_lo``, ``f_hi`` (no upper bound: inf).
        A quantity of NaN is *not available* (no label, or the model was not applied); inf is a
        non-finite label or prediction and fails the frame.
    """
    thresholds = dict(thresholds)
    columns = {q: c for q, c in dict(thresholds.pop("columns", None) or {}).items() if c}
    if not columns or set(columns) - set(QUANTITIES):
        raise ParameterError(f"thresholds need 'columns' naming the energy and/or force "
                             f"column, got {columns!r}")
    trust = TrustWindows.from_dict(thresholds)
    n = len(scores)
    overrides = bool(trust.config_type or trust.formula)
    cols = {}
    for name in ("config_type", "formula"):
        if name in scores:
            cols[name] = scores[name].to_numpy(dtype=object)
        elif overrides:
            raise ParameterError(f"the trust windows have overrides, so the scores need a "
                                 f"{name!r} column")
        else:
            cols[name] = np.full(n, None, dtype=object)
    values = {}
    for q, c in columns.items():
        if c not in scores:
            raise ParameterError(f"scores lack the {q} column {c!r}")
        values[q] = scores[c].to_numpy(dtype=float)
    applied = (scores["model_hash"].notna().to_numpy() if "model_hash" in scores
               else np.ones(n, bool))
    cache: dict = {}
    out = {k: [] for k in ("value", "verdict", "reason", "trust", *KEYS)}
    for r in range(n):
        key = (_clean(cols["config_type"][r]), _clean(cols["formula"][r]))
        if key not in cache:
            cache[key] = trust.window(*key)
        label, window = cache[key]
        verdict, reason, value = _judge_one({q: v[r] for q, v in values.items()}, window,
                                            names, bool(applied[r]))
        out["value"].append(value)
        out["verdict"].append(verdict)
        out["reason"].append(reason)
        out["trust"].append(label)
        for k in KEYS:
            out[k].append(math.inf if window[k] is None else window[k])
    return pd.DataFrame({k: pd.Series(v, index=scores.index,
                                      dtype=object if k in ("verdict", "reason", "trust")
                                      else float)
                         for k, v in out.items()})


def _clean(value) -> str | None:
    """A ledger cell as a lookup key: None for null/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _judge_one(values: Mapping[str, float], window: Mapping, names: Mapping[str, str],
               applied: bool) -> tuple[str | None, str, float]:
    failed, candidate, accurate, ratios = [], [], [], []
    for q, v in values.items():
        lo_key, hi_key, unit = QUANTITIES[q]
        lo, hi, what = window[lo_key], window[hi_key], names[q]
        if math.isnan(v):
            continue
        if math.isinf(v):
            failed.append(f"{what} is not finite (the label or the prediction is NaN/inf)")
            ratios.append(math.inf)
            continue
        ratios.append(v / lo if lo > 0 else (math.inf if v > 0 else 0.0))
        if hi is not None and v >= hi:
            failed.append(f"{what} {v:.3g} {unit} ≥ hi {hi:g}: unphysical")
        elif v >= lo:
            bound = "∞" if hi is None else f"{hi:g}"
            candidate.append(f"{what} {v:.3g} {unit} in [lo {lo:g}, hi {bound})")
        else:
            accurate.append(f"{what} {v:.3g} {unit} < lo {lo:g}")
    value = max(ratios) if ratios else math.nan
    if failed:
        return "failed", "; ".join(failed), value
    if candidate:
        return "candidate", "; ".join(candidate), value
    if accurate:
        return "accurate", "; ".join(accurate), value
    if not applied:
        return None, ("not judged: the model was not applied (an element outside its "
                      "species)"), value
    return None, "not judged: no label", value
