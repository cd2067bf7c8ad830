"""The report's pictures: matplotlib (object API, Agg canvas, no pyplot state), PNG.

Every function draws from plain data (the DataFrames of :mod:`.summary` and :mod:`.maps`)
into ``path`` and returns a :class:`Plot`: the file written and a note for the caption, or no
file and the reason when there was nothing to draw — a plot without data is skipped, never an
empty picture. Non-finite values are left out of a picture and counted in its note.
Energies are in eV/atom (errors in meV/atom), forces in eV/Å; every axis says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "Plot", "plot_composition", "plot_descriptor_map", "plot_distributions",
    "plot_efficiency", "plot_learning_curve", "plot_parity",
]

_DPI = 110
_MAX_VERSIONS = 8  # versions drawn apart; older ones share one colour
_MAX_FORMULAS = 20
_MAX_POINTS = 50_000  # force components drawn in a parity plot (the RMSE uses all)


@dataclass
class Plot:
    """One picture of the report.

    Attributes
    ----------
    file : pathlib.Path or None
        The PNG written, or None when skipped.
    note : str
        Caption detail (what was drawn, what was left out), or why it was skipped.
    """

    file: Path | None
    note: str = ""


def _figure(ncols: int, width: float = 5.2, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _version_groups(added: pd.Series) -> tuple[list[str], list[np.ndarray]]:
    """Labels and row masks, one per version added (the oldest merged past _MAX_VERSIONS)."""
    vs = sorted(int(v) for v in added.unique())
    labels, masks = [], []
    if len(vs) > _MAX_VERSIONS:
        old = vs[: len(vs) - _MAX_VERSIONS + 1]
        labels.append(f"added in v{old[0]}–v{old[-1]}")
        masks.append(added.isin(old).to_numpy())
        vs = vs[len(old):]
    for v in vs:
        labels.append(f"added in v{v}")
        masks.append((added == v).to_numpy())
    return labels, masks


def _colours(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in (np.linspace(0.05, 0.9, n) if n > 1 else [0.35])]


def _int_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _integer_y(ax) -> None:
    ax.yaxis.set_major_locator(_int_locator())


def _legend_outside(ax) -> None:
    """The legend to the right of ``ax``, outside the data (constrained layout makes room)."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _dropped(n: int, what: str) -> str:
    return f" {n} {what} left out (non-finite)." if n else ""


def plot_distributions(df: pd.DataFrame, path: str | Path) -> Plot:
    """Histograms of energy per atom and largest force per structure, by version added.

    Parameters
    ----------
    df : pandas.DataFrame
        ``Snapshot.to_pandas()`` of the version (``energy_per_atom``, ``fmax``,
        ``version_added``).
    path : path-like
        The PNG to write.
    """
    panels = []
    for col, xlabel in (("energy_per_atom", "energy per atom (eV/atom)"),
                        ("fmax", "largest atomic force in a structure (eV/Å)")):
        v = df[col].to_numpy(dtype=float) if len(df) else np.zeros(0)
        if np.isfinite(v).any():
            panels.append((col, xlabel, np.isfinite(v)))
    if not panels:
        return Plot(None, "no structure has an energy or forces")
    fig, axes = _figure(len(panels))
    labels, masks = _version_groups(df["version_added"])
    colours = _colours(len(labels))
    for ax, (col, xlabel, finite) in zip(axes, panels, strict=True):
        v = df[col].to_numpy(dtype=float)
        lo, hi = float(v[finite].min()), float(v[finite].max())
        if hi - lo <= 1e-9 * max(abs(lo), 1.0):  # one value: a narrow bin, not a 1-unit one
            half = max(abs(lo) * 1e-3, 1e-3)
            edges = np.array([lo - half, lo + half])
        else:
            edges = np.histogram_bin_edges(v[finite], bins="auto")
            if len(edges) > 41:
                edges = np.linspace(edges[0], edges[-1], 41)
        data = [v[m & finite] for m in masks]
        ax.hist(data, bins=edges, stacked=True, color=colours, label=labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("number of structures")
        _integer_y(ax)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # long labels must not collide
    _legend_outside(axes[-1])
    n_e = int((~np.isfinite(df["energy_per_atom"].to_numpy(dtype=float))).sum())
    n_f = int((~np.isfinite(df["fmax"].to_numpy(dtype=float))).sum())
    note = (f"{len(df)} structure(s), stacked by the version that added them."
            + _dropped(n_e, "without an energy") + _dropped(n_f, "without forces"))
    return Plot(_save(fig, path), note)


def plot_composition(df: pd.DataFrame, path: str | Path) -> Plot:
    """Structures per formula (the most common ones), stacked by version added."""
    if not len(df):
        return Plot(None, "the version holds no structure")
    counts = df["formula"].value_counts()
    top = list(counts.index[:_MAX_FORMULAS])
    rest = len(counts) - len(top)
    formula = df["formula"].where(df["formula"].isin(top), f"other ({rest} formulas)")
    order = top + ([f"other ({rest} formulas)"] if rest else [])
    labels, masks = _version_groups(df["version_added"])
    colours = _colours(len(labels))
    fig, (ax,) = _figure(1, width=7.5, height=max(2.5, 0.9 + 0.32 * len(order)))
    y = np.arange(len(order))[::-1]
    left = np.zeros(len(order))
    for label, mask, colour in zip(labels, masks, colours, strict=True):
        n = formula[mask].value_counts().reindex(order, fill_value=0).to_numpy()
        ax.barh(y, n, left=left, color=colour, label=label)
        left += n
    for yi, total in zip(y, left, strict=True):
        ax.text(total, yi, f" {int(total)}", va="center", fontsize="small")
    ax.set_yticks(y, order)
    ax.set_xlabel("number of structures")
    ax.set_ylabel("formula")
    ax.set_xlim(0, left.max() * 1.15)
    ax.xaxis.set_major_locator(_int_locator())
    _legend_outside(ax)
    note = f"{len(counts)} distinct formula(s)" + (f"; the {len(top)} most common drawn apart."
                                                  if rest else ".")
    return Plot(_save(fig, path), note)


def plot_descriptor_map(m: pd.DataFrame, path: str | Path) -> Plot:
    """Structures on the first two principal axes: by version added, and by decision.

    Parameters
    ----------
    m : pandas.DataFrame
        :func:`pesdata.analysis.maps.descriptor_map` output.
    path : path-like
        The PNG to write.
    """
    stored = m[m["kind"] == "stored"]
    if len(stored) < 3:
        return Plot(None, f"a map needs at least 3 structures with fingerprints, "
                          f"{len(stored)} here")
    cand = m[m["kind"] == "candidate"]
    ex = m.attrs.get("explained", [0.0, 0.0])
    fig, axes = _figure(2 if len(cand) else 1, width=5.6, height=4.6)
    labels, masks = _version_groups(stored["version_added"].astype(int))
    for label, mask, colour in zip(labels, masks, _colours(len(labels)), strict=True):
        s = stored[mask]
        axes[0].scatter(s["pc1"], s["pc2"], s=14, color=colour, label=label, alpha=0.8)
    axes[0].set_title("stored structures by version added", fontsize="medium")
    axes[0].legend(fontsize="small")
    if len(cand):
        from matplotlib import colormaps

        ax = axes[1]
        ax.scatter(stored["pc1"], stored["pc2"], s=10, color="0.8", label="stored")
        decisions = sorted(cand["decision"].fillna("(none)").unique(),
                           key=lambda d: (d == "selected", d))
        tab = colormaps["tab10"]
        for k, d in enumerate(decisions):
            c = cand[cand["decision"].fillna("(none)") == d]
            style = {"marker": "*", "s": 90, "edgecolor": "black", "linewidth": 0.5} \
                if d == "selected" else {"marker": "o", "s": 18, "alpha": 0.8}
            ax.scatter(c["pc1"], c["pc2"], color=tab(k % 10), label=f"{d} ({len(c)})",
                       zorder=3 if d == "selected" else 2, **style)
        ax.set_title(f"candidates of ledger {m.attrs.get('ledger')} by decision",
                     fontsize="medium")
        ax.legend(fontsize="small")
    for ax in axes:
        ax.set_xlabel(f"PC 1 ({100 * ex[0]:.0f} % of variance; dimensionless)")
        ax.set_ylabel(f"PC 2 ({100 * ex[1]:.0f} % of variance; dimensionless)")
    note = (f"PCA of per-structure fingerprints (descriptor {m.attrs.get('descriptor')}), "
            f"axes fitted on the {len(stored)} stored structures"
            + (f"; {len(cand)} candidates projected onto them." if len(cand) else "."))
    dropped = m.attrs.get("dropped") or {}
    if dropped:
        first = "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:3])
        note += f" Left out: {len(dropped)} ({first})."
    return Plot(_save(fig, path), note)


def _parity_panel(ax, ref: np.ndarray, pred: np.ndarray, label: str, rmse: str) -> None:
    lo = float(min(ref.min(), pred.min()))
    hi = float(max(ref.max(), pred.max()))
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.01
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", linewidth=1, zorder=1)
    ax.scatter(ref, pred, s=8, alpha=0.6, zorder=2)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # square panels: keep labels apart
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"model {label}")
    ax.set_title(f"RMSE {rmse}", fontsize="medium")


def plot_parity(e_ref: np.ndarray, e_pred: np.ndarray, f_ref: np.ndarray | None,
                f_pred: np.ndarray | None, path: str | Path, seed: int = 0) -> Plot:
    """Model vs reference: energy per atom and force components.

    Parameters
    ----------
    e_ref, e_pred : ndarray (n_structures,)
        Energies per atom (eV/atom).
    f_ref, f_pred : ndarray (n_components,), optional
        Force components (eV/Å), flattened; None without reference forces.
    path : path-like
        The PNG to write.
    seed : int
        Which force components are drawn when there are more than 50,000 (the RMSE in the
        title uses all of them).
    """
    e_ref, e_pred = np.asarray(e_ref, float), np.asarray(e_pred, float)
    ok = np.isfinite(e_ref) & np.isfinite(e_pred)
    has_f = f_ref is not None and f_pred is not None and len(f_ref) > 0
    if not ok.any():
        return Plot(None, "no structure with a finite reference and predicted energy")
    fig, axes = _figure(2 if has_f else 1)
    de = (e_pred[ok] - e_ref[ok]) * 1000.0
    _parity_panel(axes[0], e_ref[ok], e_pred[ok], "energy per atom (eV/atom)",
                  f"{np.sqrt(np.mean(de**2)):.2f} meV/atom ({int(ok.sum())} structures)")
    note = _dropped(int((~ok).sum()), "structure(s)")
    if has_f:
        f_ref, f_pred = np.asarray(f_ref, float), np.asarray(f_pred, float)
        fok = np.isfinite(f_ref) & np.isfinite(f_pred)
        fr, fp = f_ref[fok], f_pred[fok]
        rmse = float(np.sqrt(np.mean((fp - fr) ** 2)))
        if len(fr) > _MAX_POINTS:
            pick = np.random.default_rng(seed).choice(len(fr), _MAX_POINTS, replace=False)
            note += f" {_MAX_POINTS} of {len(fr)} force components drawn."
            fr, fp = fr[pick], fp[pick]
        _parity_panel(axes[1], fr, fp, "force component (eV/Å)",
                      f"{rmse:.3f} eV/Å ({int(fok.sum())} components)")
        note += _dropped(int((~fok).sum()), "force component(s)")
    return Plot(_save(fig, path), note.strip())


def _curve_panels(df: pd.DataFrame) -> list[tuple[str, str]]:
    out = []
    for col, label in (("energy_rmse", "test energy RMSE (meV/atom)"),
                       ("force_rmse", "test force RMSE (eV/Å)")):
        if col in df and np.isfinite(df[col].to_numpy(dtype=float)).any():
            out.append((col, label))
    return out


def _integer_x(ax, x: np.ndarray) -> None:
    """Integer ticks and the same x range (all points, 8 % padding) on every panel."""
    ax.xaxis.set_major_locator(_int_locator())
    if len(x):
        lo, hi = float(x.min()), float(x.max())
        pad = 0.08 * (hi - lo) if hi > lo else 1.0
        ax.set_xlim(lo - pad, hi + pad)


def plot_learning_curve(history: pd.DataFrame, path: str | Path) -> Plot:
    """Test RMSE after each loop iteration against the number of structures trained on.

    Parameters
    ----------
    history : pandas.DataFrame
        :func:`pesdata.analysis.loop_history` output.
    path : path-like
        The PNG to write.
    """
    panels = _curve_panels(history) if len(history) else []
    if not panels:
        return Plot(None, "no loop iteration has a test RMSE" if len(history)
                    else "the store has no loop record")
    fig, axes = _figure(len(panels))
    # the model of an iteration was trained before its labels came in: n_train, when recorded
    col_n = "n_train" if "n_train" in history and history["n_train"].notna().any() \
        else "n_structures"
    n = history[col_n].to_numpy(dtype=float)
    left = 0
    for ax, (col, label) in zip(axes, panels, strict=True):
        y = history[col].to_numpy(dtype=float)
        ok = np.isfinite(y) & np.isfinite(n)
        left += int((~ok).sum())
        ax.plot(n[ok], y[ok], marker="o")
        for it, xi, yi in zip(history["iteration"][ok], n[ok], y[ok], strict=True):
            ax.annotate(f"it {it}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                        fontsize="small")
        ax.set_xlabel("structures in the training version (count)")
        ax.set_ylabel(label)
        ax.margins(y=0.15)
        _integer_x(ax, n[np.isfinite(n)])
    note = (f"loop {history.attrs.get('loop')}: {len(history)} iteration(s)."
            + _dropped(left, "point(s) without an RMSE"))
    return Plot(_save(fig, path), note)


def plot_efficiency(curves: pd.DataFrame, path: str | Path) -> Plot:
    """Label-efficiency curves: test RMSE against labels used, one line per strategy.

    Each strategy's line is the mean over its seeds at each number of labels, the shaded band
    the range (min–max) over seeds.

    Parameters
    ----------
    curves : pandas.DataFrame
        :func:`pesdata.analysis.summary.efficiency_curves` output.
    path : path-like
        The PNG to write.
    """
    panels = _curve_panels(curves) if len(curves) else []
    if not panels:
        return Plot(None, "the file holds no finite RMSE")
    from matplotlib import colormaps

    fig, axes = _figure(len(panels))
    strategies = list(dict.fromkeys(curves["strategy"]))
    tab = colormaps["tab10"]
    left = 0
    for ax, (col, label) in zip(axes, panels, strict=True):
        ok = np.isfinite(curves[col].to_numpy(dtype=float))
        left += int((~ok).sum())
        for k, s in enumerate(strategies):
            d = curves[ok & (curves["strategy"] == s).to_numpy()]
            if not len(d):
                continue
            g = d.groupby("n_labels")[col].agg(["mean", "min", "max", "count"])
            seeds = d["seed"].nunique(dropna=False)
            ax.plot(g.index, g["mean"], marker="o", markersize=3, color=tab(k % 10),
                    label=f"{s} ({seeds} seed{'s' if seeds != 1 else ''})")
            if (g["count"] > 1).any():
                ax.fill_between(g.index, g["min"], g["max"], color=tab(k % 10), alpha=0.2)
        y = curves.loc[ok, col].to_numpy(dtype=float)
        if len(y) and y.min() > 0 and y.max() / y.min() > 20:
            ax.set_yscale("log")
        ax.set_xlabel("labelled structures (count)")
        ax.set_ylabel(label)
        _integer_x(ax, curves["n_labels"].to_numpy(dtype=float))
        ax.legend(fontsize="small")
    note = (f"{len(strategies)} strategies; line = mean over seeds, band = min–max."
            + _dropped(left, "point(s)"))
    return Plot(_save(fig, path), note)
