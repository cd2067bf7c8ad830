"""One self-contained HTML page about a store: tables from :mod:`.summary`, pictures from
:mod:`.plots`.

``write_report(store, "report")`` writes ``report/index.html`` (inline CSS, images by
relative path, no script, nothing fetched from elsewhere) and the PNGs it shows, atomically:
the directory is built in a staging directory and swapped in whole
(:func:`pesdata.atomic.atomic_dir`), so a killed run leaves the previous report as it was.
A picture without data is not drawn; the page says why in its place.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_dir, check_output_path
from ..errors import OutputError
from ..select.ledger import DECISIONS
from . import summary as S
from .plots import (
    Plot,
    plot_composition,
    plot_descriptor_map,
    plot_distributions,
    plot_efficiency,
    plot_learning_curve,
    plot_parity,
)

__all__ = ["GENERATOR", "write_report"]

#: The ``<meta name="generator">`` of a report page: a directory holding a page with it may be
#: replaced by a new report; any other non-empty directory is refused.
GENERATOR = "pesdata report"

_MAX_PARITY = 2000  # structures predicted for the parity plot (a seeded sample above this)
_MAX_ROWS = 40  # rows of a group shown in a summary table

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1150px;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}
.meta{color:#555}nav a{margin-right:1em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.9em}
.skipped{color:#8a5a00;background:#fff6e0;padding:.5em .8em;border-left:3px solid #e0a000}
.scroll{overflow-x:auto}
"""


_HEADERS = {  # display names of summary columns (units in the header, underscores gone)
    "energy_per_atom_mean": "E/atom mean (eV/atom)", "energy_per_atom_std": "E/atom std (eV/atom)",
    "energy_per_atom_min": "E/atom min (eV/atom)", "energy_per_atom_max": "E/atom max (eV/atom)",
    "fmax_mean": "fmax mean (eV/Å)", "fmax_median": "fmax median (eV/Å)",
    "fmax_max": "fmax max (eV/Å)", "energy_mae": "energy MAE (meV/atom)",
    "energy_rmse": "energy RMSE (meV/atom)", "force_mae": "force MAE (eV/Å)",
    "force_rmse": "force RMSE (eV/Å)", "seconds": "seconds (s)",
}


def _table(df: pd.DataFrame, empty: str, drop_empty: bool = False) -> str:
    """An HTML table (``—`` for a missing value); ``drop_empty`` leaves out all-null columns."""
    if not len(df):
        return f'<p class="skipped">{html.escape(empty)}</p>'
    if drop_empty:
        df = df.loc[:, df.notna().any(axis=0)]
    obj = [c for c in df.columns
           if df[c].dtype == object or isinstance(df[c].dtype, pd.StringDtype)]
    df = df.astype({c: object for c in obj})
    df[obj] = df[obj].where(df[obj].notna(), "—")
    df = df.rename(columns=lambda c: _HEADERS.get(c, str(c).replace("_", " ")))

    def fmt(x: float) -> str:
        return "—" if not np.isfinite(x) else f"{x:.4g}"

    body = df.to_html(index=False, escape=True, na_rep="—", float_format=fmt, border=0)
    return f'<div class="scroll">{body}</div>'


def _figure(plot: Plot, title: str, root: Path) -> str:
    head = f"<h3>{html.escape(title)}</h3>"
    if plot.file is None:
        return f'{head}<p class="skipped">Not drawn: {html.escape(plot.note)}</p>'
    rel = Path(plot.file).relative_to(root).as_posix()
    return (f'{head}<figure><img src="{html.escape(rel)}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(plot.note)}</figcaption></figure>")


def _check_out(out: Path) -> None:
    """``out`` may be written: new, an empty directory, or an earlier report."""
    p = check_output_path(out, directory=True)
    if not p.exists() or not any(p.iterdir()):
        return
    index = p / "index.html"
    try:
        is_report = f'content="{GENERATOR}"' in index.read_text(errors="replace")[:2000]
    except OSError:
        is_report = False
    if not is_report:
        raise OutputError(f"{p}: a non-empty directory that is not a pesdata report; give a "
                          "new or empty directory (a report directory is replaced whole)")


def _parity(store, version: int, model_dir, root: Path) -> tuple[Plot, str]:
    """The parity plot of ``model_dir`` and a one-line description of what it was run on."""
    from ..train import load_model
    from ..train._fit import predict_metrics

    model, card = load_model(model_dir)
    snap = store.read(version)
    ids = snap.ids
    what = f"all structures of version {version}, the model's training data included"
    rows = np.arange(len(ids))
    split, fold = card.get("split"), card.get("fold")
    if split and split in store.artefacts.list("split"):
        folds = store.artefacts.load("split", split)["folds"]
        k = int(fold or 0)
        if 0 <= k < len(folds):
            test = set(folds[k]["test"])
            pick = np.array([i for i, s in enumerate(ids) if s in test], dtype=int)
            if len(pick):
                rows = pick
                what = f"the test part of split {split}, fold {k} (in version {version})"
    if len(rows) > _MAX_PARITY:
        rows = np.sort(np.random.default_rng(0).choice(rows, _MAX_PARITY, replace=False))
        what += f"; a seeded sample of {_MAX_PARITY}"
    metrics, pred = predict_metrics(model, snap.take(rows))
    n = np.array([len(a) for a in pred["images"]], dtype=float)
    e_ref = np.asarray(pred["ref_e"], float) / n
    e_pred = np.asarray(pred["energy"], float) / n
    has = ["forces" in a.calc.results for a in pred["images"]]
    f_ref = [np.asarray(a.calc.results["forces"]).ravel()
             for a, h in zip(pred["images"], has, strict=True) if h]
    f_pred = [np.asarray(f).ravel() for f, h in zip(pred["forces"], has, strict=True) if h]
    plot = plot_parity(e_ref, e_pred, np.concatenate(f_ref) if f_ref else None,
                       np.concatenate(f_pred) if f_pred else None, root / "parity.png")
    plot.note = f"{Path(model_dir).name} ({card.get('kind')}) on {what}. {plot.note}".strip()
    summary = (f"energy MAE {metrics['energy_mae']:.3g} / RMSE {metrics['energy_rmse']:.3g} "
               "meV/atom")
    if metrics.get("force_rmse") is not None:
        summary += (f", force MAE {metrics['force_mae']:.3g} / RMSE "
                    f"{metrics['force_rmse']:.3g} eV/Å")
    return plot, f"{summary} on {metrics['n_structures']} structures ({what})."


def _efficiency_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: labels at the last point and the mean (over seeds) RMSE there."""
    rows = []
    for s, d in curves.groupby("strategy", sort=False):
        last = d[d["n_labels"] == d["n_labels"].max()]
        rows.append({"strategy": s, "seeds": d["seed"].nunique(dropna=False),
                     "final n_labels": int(last["n_labels"].iloc[0]),
                     "energy RMSE (meV/atom)": last["energy_rmse"].mean(),
                     "force RMSE (eV/Å)": last["force_rmse"].mean()})
    return pd.DataFrame(rows)


def write_report(
    store,
    out: str | os.PathLike,
    version: int | str | None = None,
    model: str | os.PathLike | None = None,
    efficiency: str | os.PathLike | None = None,
) -> Path:
    """Write the HTML report of a store version and its pictures to ``out``.

    Parameters
    ----------
    store : pesdata.Store
        A local store. Missing descriptors of the version are computed for the
        descriptor-space map and kept in the store's descriptor cache.
    out : path-like
        Output directory: new, empty, or an earlier report (replaced whole).
    version : int or str, optional
        The version described (default: the latest).
    model : path-like, optional
        A model directory (``pesdata train``) for the parity plots: predicted on the test part
        of the split it was trained on when the card names one, else on the version (at most
        2000 structures, a seeded sample).
    efficiency : path-like, optional
        A ``bench_label_efficiency.json`` file (see
        :func:`pesdata.analysis.summary.efficiency_curves`).

    Returns
    -------
    pathlib.Path
        ``out/index.html``. Beside it: the PNGs and ``report.json`` (``store``, ``version``,
        ``index``, ``images``: picture name → file, ``skipped``: picture name → why not drawn).

    Raises
    ------
    OutputError
        ``out`` is a file, a symlink, or a non-empty directory that is not a report.
    VersionNotFound, ArtefactError, InputError
        No such version; an unusable model directory; an unreadable efficiency file.
    ValidationError
        The model predicts a non-finite value (the message names the structure).
    """
    out = Path(out)
    _check_out(out)
    v = store.resolve(version)
    curves = S.efficiency_curves(efficiency) if efficiency is not None else None
    df = store.read(v).to_pandas()
    vers = S.versions(store)
    summ = S.version_summary(store, v)
    sels = S.selections(store)
    hist = S.loop_history(store)
    cards = S.models(store)
    ledger = (sels.sort_values(["created", "ledger"])["ledger"].iloc[-1]
              if len(sels) else None)

    with atomic_dir(out) as root:
        from ..store._store import _is_local
        from .maps import descriptor_map

        plots = {
            "distributions": plot_distributions(df, root / "distributions.png"),
            "composition": plot_composition(df, root / "composition.png"),
            "map": (plot_descriptor_map(descriptor_map(store, v, ledger), root / "map.png")
                    if _is_local(str(store.uri)) else
                    Plot(None, "the descriptor cache needs a local store")),
            "learning": plot_learning_curve(hist, root / "learning_curve.png"),
        }
        parity_line = ""
        if model is not None:
            plots["parity"], parity_line = _parity(store, v, model, root)
        else:
            plots["parity"] = Plot(None, "no model given (pesdata report --model DIR)")
        if curves is not None:
            plots["efficiency"] = plot_efficiency(curves, root / "label_efficiency.png")
        else:
            plots["efficiency"] = Plot(
                None, "no label-efficiency file given (pesdata report --efficiency FILE)")
        page = _page(store, v, vers, summ, sels, hist, cards, curves, plots, parity_line,
                     efficiency, root)
        (root / "index.html").write_text(page, encoding="utf-8")
        manifest = {
            "store": str(store.uri), "version": v, "index": "index.html",
            "images": {k: Path(p.file).name for k, p in plots.items() if p.file is not None},
            "skipped": {k: p.note for k, p in plots.items() if p.file is None},
        }
        (root / "report.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out / "index.html"


def _summary_tables(summ: pd.DataFrame) -> str:
    parts = []
    names = {"all": "All structures", "method": "By method", "config_type": "By config_type",
             "formula": "By composition (formula)"}
    for by, title in names.items():
        d = summ[summ["by"] == by].drop(columns="by").rename(columns={"value": by})
        if by == "all":
            d = d.drop(columns=by)
        more = len(d) - _MAX_ROWS
        parts.append(f"<h3>{title}</h3>" + _table(d.head(_MAX_ROWS), "none")
                     + (f"<p>… and {more} more (<code>version_summary(store)</code> has them "
                        "all).</p>" if more > 0 else ""))
    return "".join(parts)


def _page(store, v, vers, summ, sels, hist, cards, curves, plots, parity_line, efficiency,
          root: Path) -> str:
    from .. import __version__

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    e = html.escape
    loop_title = f"Active-learning loop {hist.attrs['loop']}" if hist.attrs.get("loop") \
        else "Active-learning loop"
    status = f" (status: {e(str(hist.attrs['status']))})" if hist.attrs.get("status") else ""
    sections = [
        ("versions", "Versions", _table(vers, "the store has no version")),
        ("summary", f"Version {v}", _summary_tables(summ)
         + _figure(plots["distributions"], "Energy and force distributions", root)
         + _figure(plots["composition"], "Composition", root)),
        ("map", "Descriptor space", _figure(plots["map"], "PCA map of structure fingerprints",
                                            root)),
        ("selection", "Selections", _table(
            sels.drop(columns=[c for c in DECISIONS if c in sels and not sels[c].any()]),
            "no selection ledger in the store", drop_empty=True)
         + "<p>Decision columns count the ledger's frames; a decision no frame got is left "
           "out. <code>pesdata.analysis.ledgers(store)</code> has every row.</p>" * len(sels)),
        ("loop", loop_title, f"<p>{status}</p>" * bool(status)
         + _table(hist.drop(columns=[c for c in ("model", "ledger") if c in hist]),
                  "no loop record in the store")
         + _figure(plots["learning"], "Learning curve", root)),
        ("models", "Models", "<h3>Model cards kept in the store</h3>"
         + _table(cards.drop(columns="created"), "no model card in the store", drop_empty=True)
         + (f"<p>Parity: {e(parity_line)}</p>" if parity_line else "")
         + _figure(plots["parity"], "Parity: model vs reference", root)),
        ("efficiency", "Label efficiency",
         (f"<p>From <code>{e(str(efficiency))}</code>.</p>" if efficiency else "")
         + (_table(_efficiency_table(curves), "no curve") if curves is not None else "")
         + _figure(plots["efficiency"], "Test RMSE against labels used", root)),
    ]
    nav = "".join(f'<a href="#{k}">{e(t)}</a>' for k, t, _ in sections)
    body = "".join(f'<section id="{k}"><h2>{e(t)}</h2>{c}</section>' for k, t, c in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta name="generator" content="{GENERATOR}">'
        f"<title>pesdata report: {e(Path(str(store.uri)).name)} v{v}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>pesdata report: {e(Path(str(store.uri)).name)}</h1>"
        f'<p class="meta">Store <code>{e(str(store.uri))}</code> · version {v} · '
        f"{len(vers)} version(s) · generated {e(now)} by pesdata {e(__version__)}</p>"
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )
