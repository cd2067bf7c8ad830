"""pandas views of a store for a notebook user: versions, a version's make-up, ledgers, loops.

Every function returns a plain :class:`pandas.DataFrame` with the columns its docstring lists
(declared once in this module's ``*_COLUMNS`` constants), so it can be filtered, grouped and
plotted directly. Energies are in eV/atom and forces in eV/Å, as in
:meth:`pesdata.store.Snapshot.to_pandas`; a missing label is NaN, never zero, and never counted
in a statistic (the ``n_labelled`` column says over how many structures a statistic runs).

>>> from pesdata.analysis import version_summary, versions   # doctest: +SKIP
>>> versions(store)                                           # doctest: +SKIP
>>> version_summary(store).query("by == 'formula'")          # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "EFFICIENCY_COLUMNS", "MODEL_COLUMNS", "SELECTION_COLUMNS",
    "SUMMARY_COLUMNS", "VERSION_COLUMNS", "efficiency_curves", "ledgers", "loop_history",
    "loop_columns", "loop_names", "models", "selections", "version_summary", "versions",
]

#: Columns of :func:`version_summary`.
SUMMARY_COLUMNS = (
    "by", "value", "n_structures", "n_atoms", "n_labelled",
    "energy_per_atom_mean", "energy_per_atom_std", "energy_per_atom_min", "energy_per_atom_max",
    "fmax_mean", "fmax_median", "fmax_max",
)

#: Columns of :func:`versions`.
VERSION_COLUMNS = ("version", "timestamp", "message", "n_structures", "added", "removed", "tags")

#: Columns of :func:`selections` before the one-per-decision count columns.
SELECTION_COLUMNS = ("ledger", "reference_version", "created", "n_candidates", "budget",
                     "diversity", "seed", "model")

#: Columns of :func:`models`.
MODEL_COLUMNS = ("name", "kind", "version", "split", "fold", "n_train", "metrics_on",
                 "n_structures", "energy_mae", "energy_rmse", "force_mae", "force_rmse",
                 "created")

#: What grouping keys :func:`version_summary` reports, in order (``all`` is one row).
_BY = ("all", "method", "config_type", "formula")

_NONE = "(none)"  # how a missing method / config_type shows in a summary


def loop_columns() -> tuple[str, ...]:
    """The columns of :func:`loop_history`: the per-iteration keys of ``schemas/loop.json``,
    in the schema's order (the schema declares them; they are not repeated here)."""
    from ..store._artefacts import load_schema

    props = load_schema("loop")["properties"]["iterations"]["items"]["properties"]
    return tuple(props)


def _stats(df: pd.DataFrame) -> dict:
    """The statistics of one group of ``Snapshot.to_pandas()`` rows (labelled rows only)."""
    e = df["energy_per_atom"].to_numpy(dtype=float)
    f = df["fmax"].to_numpy(dtype=float)
    e, f = e[np.isfinite(e)], f[np.isfinite(f)]

    def agg(x: np.ndarray, fn) -> float:
        return float(fn(x)) if len(x) else float("nan")

    return {
        "n_structures": int(len(df)),
        "n_atoms": int(df["n_atoms"].sum()),
        "n_labelled": int(len(e)),
        "energy_per_atom_mean": agg(e, np.mean),
        "energy_per_atom_std": agg(e, lambda x: np.std(x, ddof=0)),
        "energy_per_atom_min": agg(e, np.min),
        "energy_per_atom_max": agg(e, np.max),
        "fmax_mean": agg(f, np.mean),
        "fmax_median": agg(f, np.median),
        "fmax_max": agg(f, np.max),
    }


def version_summary(store, version: int | str | None = None) -> pd.DataFrame:
    """What a version holds: counts and label statistics, overall and by group.

    Parameters
    ----------
    store : pesdata.Store
        The store.
    version : int or str, optional
        Version number or tag (default: the latest).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`. ``by`` is ``all`` (one row, ``value`` ``all``),
        ``method``, ``config_type`` or ``formula``; ``value`` the group (``(none)`` for a
        missing method or config_type). ``n_structures``, ``n_atoms``; ``n_labelled`` the
        structures with an energy; ``energy_per_atom_*`` (eV/atom, std with ddof 0) over those;
        ``fmax_*`` (eV/Å, the largest force norm of a structure) over the structures with
        forces. Statistics of a group without labels are NaN. Groups are sorted by descending
        ``n_structures``, then value. ``attrs["version"]`` is the version read.
    """
    snap = store.read(version)
    df = snap.to_pandas()
    rows = []
    for by in _BY:
        if by == "all":
            rows.append({"by": "all", "value": "all", **_stats(df)})
            continue
        keys = df[by].fillna(_NONE).astype(str) if len(df) else df[by]
        groups = [(str(k), g) for k, g in df.groupby(keys, sort=False)] if len(df) else []
        groups.sort(key=lambda kg: (-len(kg[1]), kg[0]))
        rows += [{"by": by, "value": k, **_stats(g)} for k, g in groups]
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out.attrs["version"] = snap.version
    return out


def versions(store) -> pd.DataFrame:
    """One row per version of the store, oldest first.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`VERSION_COLUMNS`: ``version``, ``timestamp`` (UTC), ``message``,
        ``n_structures``, ``added`` and ``removed`` (structure ids new in / gone since the
        version before; the first version counts everything it holds as added) and ``tags``
        (comma-separated).
    """
    log = store.log()
    added, removed = [], []
    prev: set[str] = set()
    for v in log["version"].tolist():
        ids = set(store.read(int(v)).ids)
        added.append(len(ids - prev))
        removed.append(len(prev - ids))
        prev = ids
    out = log.assign(added=added, removed=removed)
    return out[list(VERSION_COLUMNS)].reset_index(drop=True)


def ledgers(store, arrays: bool = False) -> pd.DataFrame:
    """Every selection ledger of the store, stacked, with its name in column ``ledger``.

    Parameters
    ----------
    store : pesdata.Store
        The store.
    arrays : bool
        Keep the list-valued columns (``atom_distances``, ``atom_numbers``, ``fingerprint``);
        dropped by default, which keeps the frame light for filtering and plotting.

    Returns
    -------
    pandas.DataFrame
        ``ledger`` then the columns of :func:`pesdata.select.ledger.column_names` (minus the
        list columns unless ``arrays``); empty (with those columns) when the store has no
        ledger.
    """
    import pyarrow as pa

    from ..select.ledger import COLUMNS, load_ledger

    lists = {c.name for c in COLUMNS if pa.types.is_list(c.type)}
    columns = ["ledger"] + [c.name for c in COLUMNS if arrays or c.name not in lists]
    parts = []
    for name in store.artefacts.list("selection"):
        df = load_ledger(store, name)[0]
        parts.append(df.assign(ledger=name).reindex(columns=columns))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)


def selections(store) -> pd.DataFrame:
    """One row per selection ledger: what it was run on and how many frames got each decision.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SELECTION_COLUMNS` then one count column per decision of
        :data:`pesdata.select.ledger.DECISIONS` (counted from the ledger rows, 0 when none).
    """
    from ..select.ledger import DECISIONS, load_ledger

    rows = []
    for name in store.artefacts.list("selection"):
        df, summary = load_ledger(store, name)
        counts = df["decision"].value_counts()
        policy = summary.get("policy", {})
        rows.append({
            "ledger": name, "reference_version": summary.get("version"),
            "created": summary.get("created"), "n_candidates": len(df),
            "budget": policy.get("budget"), "diversity": policy.get("diversity"),
            "seed": policy.get("seed"), "model": summary.get("model"),
            **{d: int(counts.get(d, 0)) for d in DECISIONS},
        })
    return pd.DataFrame(rows, columns=[*SELECTION_COLUMNS, *DECISIONS])


def loop_names(store) -> list[str]:
    """Names of the loop records in the store, most recently updated last."""
    names = store.artefacts.list("loop")
    docs = {n: store.artefacts.load("loop", n) for n in names}
    return sorted(names, key=lambda n: (str(docs[n].get("updated") or docs[n]["created"]), n))


def loop_history(store, name: str | None = None) -> pd.DataFrame:
    """The per-iteration history of an active-learning loop record.

    Parameters
    ----------
    store : pesdata.Store
        The store.
    name : str, optional
        The loop record (artefact kind ``loop``); default the most recently updated one.

    Returns
    -------
    pandas.DataFrame
        One row per finished iteration, sorted by ``iteration``; columns: every per-iteration
        key of ``schemas/loop.json`` in its order (``iteration``, ``version``, ``tag``,
        ``n_structures``, ``explored``, ``accurate`` ... ``energy_rmse`` in meV/atom,
        ``force_rmse`` in eV/Å, ...); a key an iteration lacks is NaN/None. Empty with those
        columns when the store has no loop record. ``attrs["loop"]`` is the record's name
        (None without one) and ``attrs["status"]`` its status.

    Raises
    ------
    ArtefactNotFound
        ``name`` is given and no loop record has that name.
    """
    columns = list(loop_columns())
    if name is None:
        names = loop_names(store)
        if not names:
            out = pd.DataFrame(columns=columns)
            out.attrs.update(loop=None, status=None)
            return out
        name = names[-1]
    doc = store.artefacts.load("loop", name)
    out = pd.DataFrame(doc["iterations"], columns=columns)
    if len(out):
        out = out.sort_values("iteration", kind="stable").reset_index(drop=True)
    for col in ("energy_rmse", "force_rmse", "accurate", "candidate", "failed", "novel"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out.attrs.update(loop=name, status=doc.get("status"))
    return out


def models(store) -> pd.DataFrame:
    """The model cards kept in the store (one per ``pesdata train`` run), oldest first.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MODEL_COLUMNS`; metrics in meV/atom (energy) and eV/Å (forces) as
        measured at training time on ``metrics_on`` (``test``: the split's test part).
    """
    rows = []
    for name in store.artefacts.list("model_card"):
        card = store.artefacts.load("model_card", name)
        m = card.get("metrics") or {}
        rows.append({
            "name": name, "kind": card.get("kind"), "version": card.get("version"),
            "split": card.get("split"), "fold": card.get("fold"), "n_train": card.get("n_train"),
            "metrics_on": card.get("metrics_on"), "n_structures": m.get("n_structures"),
            **{k: m.get(k) for k in ("energy_mae", "energy_rmse", "force_mae", "force_rmse")},
            "created": card.get("created"),
        })
    out = pd.DataFrame(rows, columns=list(MODEL_COLUMNS))
    return out.sort_values(["created", "name"], kind="stable").reset_index(drop=True)


#: Columns of :func:`efficiency_curves`.
EFFICIENCY_COLUMNS = ("strategy", "seed", "n_labels", "energy_rmse", "force_rmse")


def efficiency_curves(path) -> pd.DataFrame:
    """The label-efficiency curves of ``bench_label_efficiency.json`` in long form.

    The file holds ``{"curves": [{"strategy", "seed", "n_labels": [...], "energy_rmse":
    [...], "force_rmse": [...]}, ...]}`` (test RMSE after training on ``n_labels`` labelled
    structures; energy in meV/atom, forces in eV/Å, as ``pesdata.train`` reports them).

    Parameters
    ----------
    path : path-like
        The JSON file.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`EFFICIENCY_COLUMNS`, one row per point; a null RMSE is NaN (a plot
        leaves such points out and says how many).

    Raises
    ------
    InputError
        The file is missing, not JSON, or a curve lacks a key or has lists of unequal length
        (the message names the file and the curve).
    """
    import json
    from pathlib import Path

    from ..errors import InputError

    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{p}: no such file", path=str(p)) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: not a readable JSON file ({exc})", path=str(p)) from exc
    curves = doc.get("curves") if isinstance(doc, dict) else None
    if not isinstance(curves, list):
        raise InputError(f"{p}: expected an object with a list 'curves'", path=str(p),
                         field="curves")
    rows = []
    for k, c in enumerate(curves):
        where = f"{p}: curves[{k}]"
        if not isinstance(c, dict) or not {"strategy", "n_labels"} <= set(c):
            raise InputError(f"{where}: needs 'strategy' and 'n_labels'", path=str(p),
                             field=f"curves[{k}]")
        n = c["n_labels"]
        if not isinstance(n, list):
            raise InputError(f"{where}: 'n_labels' must be a list, got {n!r:.80}", path=str(p),
                             field=f"curves[{k}].n_labels")
        cols = {}
        for key in ("energy_rmse", "force_rmse"):
            v = c.get(key)
            if v is None:
                v = [None] * len(n)
            if not isinstance(v, list) or len(v) != len(n):
                raise InputError(f"{where}: {key!r} must be a list as long as n_labels "
                                 f"({len(n)})", path=str(p), field=f"curves[{k}].{key}")
            cols[key] = v
        try:
            for j, m in enumerate(n):
                rows.append({
                    "strategy": str(c["strategy"]), "seed": c.get("seed"), "n_labels": int(m),
                    **{key: float("nan") if cols[key][j] is None else float(cols[key][j])
                       for key in cols},
                })
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: non-numeric value ({exc})", path=str(p),
                             field=f"curves[{k}]") from exc
    return pd.DataFrame(rows, columns=list(EFFICIENCY_COLUMNS))
