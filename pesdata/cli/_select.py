"""CLI command ``pesdata select``: pick the candidate frames worth labelling, keep the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import JsonOpt, StoreArg, TraceOpt, app, bar, command, open_store, out, print_json

_DECISION_ORDER = ("selected", "dropped_by_budget", "novel", "candidate", "accurate",
                   "duplicate", "failed")


def _summary_table(sel) -> Table:
    df = sel.ledger
    decisions = [d for d in _DECISION_ORDER if d in set(df["decision"])]
    key = df["config_type"].where(df["config_type"].notna(), df["group"])
    key = key.where(key.notna(), "-").astype(str)
    table = Table(title=f"selection {sel.name!r}: {len(df)} candidates against version "
                        f"{sel.summary['version']}")
    table.add_column("config_type / group")
    for d in decisions:
        table.add_column(d, justify="right")
    for k in sorted(set(key))[:30]:
        sub = df["decision"][key == k]
        table.add_row(k, *(str(int((sub == d).sum())) for d in decisions))
    table.add_row("[bold]all[/bold]", *(f"[bold]{int((df['decision'] == d).sum())}[/bold]"
                                         for d in decisions))
    return table


@app.command()
@command
def select(
    store: StoreArg,
    sources: Annotated[list[str] | None, typer.Argument(
        help="More candidate sources (files or STORE@VERSION), after --candidates.",
        show_default=False)] = None,
    candidates: Annotated[list[str] | None, typer.Option(
        "--candidates", "-c", help="Candidate structure file(s) or STORE@VERSION.")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Reference version or tag (default: latest).")] = None,
    descriptor: Annotated[Path | None, typer.Option(
        help="Descriptor config JSON (default: the novelty default for the elements).")] = None,
    model: Annotated[Path | None, typer.Option(
        help="Model directory: error against the candidates' labels.")] = None,
    committee: Annotated[Path | None, typer.Option(
        help="Committee directory: disagreement of its members.")] = None,
    novelty_threshold: Annotated[float | None, typer.Option(
        help="Absolute novelty threshold (descriptor distance) instead of the calibrated one.")
    ] = None,
    novelty_quantile: Annotated[float | None, typer.Option(
        help="Quantile of the reference's leave-one-out distances (default 0.99).")] = None,
    novelty_top_k: Annotated[int | None, typer.Option(
        help="Frame novelty = mean of the K largest atom ratios (default: the largest).")
    ] = None,
    index_mb: Annotated[float | None, typer.Option(
        help="Megabytes of the reference held in memory for novelty (default 256); the rest "
             "is read in chunks.")] = None,
    no_novelty: Annotated[bool, typer.Option(
        "--no-novelty", help="Select on the error criterion alone.")] = False,
    e_lo: Annotated[float | None, typer.Option(help="Energy trust lower bound, eV/atom.")] = None,
    e_hi: Annotated[float | None, typer.Option(help="Energy trust upper bound, eV/atom.")] = None,
    f_lo: Annotated[float | None, typer.Option(help="Force trust lower bound, eV/Å.")] = None,
    f_hi: Annotated[float | None, typer.Option(help="Force trust upper bound, eV/Å.")] = None,
    trust: Annotated[Path | None, typer.Option(
        help="Trust windows per config_type/composition (YAML or JSON).")] = None,
    budget: Annotated[int | None, typer.Option(
        help="Most frames to select (default: every qualifying frame).")] = None,
    diversity: Annotated[str | None, typer.Option(
        help="fps (default), kmeans or direct.")] = None,
    group_cap: Annotated[int | None, typer.Option(
        help="At most this many picks per group (group info, else source file).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default 0).")] = None,
    near_duplicate: Annotated[float | None, typer.Option(
        help="Fingerprint distance for near-duplicate picks (default 1e-3).")] = None,
    method: Annotated[str | None, typer.Option(
        help="Level of theory the candidates will be labelled with.")] = None,
    name: Annotated[str | None, typer.Option(help="Ledger name (default sel-<time>).")] = None,
    out_: Annotated[Path | None, typer.Option(
        "--out", help="Queue directory for the selected frames.")] = None,
    rescore: Annotated[str | None, typer.Option(
        help="Decide a kept ledger again with new thresholds/budget (no recomputation).")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on Dask: threads, processes, synchronous or tcp://HOST:PORT.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Local Dask workers (default: one per core).")] = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Select the candidate frames worth labelling: novelty, error or committee, diversity.

    Every candidate gets a ledger row (kept in the store: `store.ledger(NAME)`); the selected
    frames go to the --out queue directory for `pesdata label`.
    """
    from ..errors import ParameterError

    st = open_store(store)
    errors = {k: v for k, v in (("e_lo", e_lo), ("e_hi", e_hi), ("f_lo", f_lo), ("f_hi", f_hi))
              if v is not None}
    if rescore is not None:
        from ..select._rescore import rescore as _rescore
        from ..select._select import KEEP

        given = [o for o, v in (("--candidates", candidates or sources), ("--model", model),
                                ("--committee", committee), ("--descriptor", descriptor),
                                ("--reference", reference), ("--method", method),
                                ("--index-mb", index_mb is not None),
                                ("--no-novelty", no_novelty)) if v]
        if given:
            raise ParameterError(f"--rescore decides a kept ledger again from its stored "
                                 f"numbers; {', '.join(given)} cannot change there")
        sel = _rescore(st, rescore, novelty_threshold=novelty_threshold,
                       novelty_quantile=novelty_quantile, novelty_top_k=novelty_top_k,
                       error_thresholds=errors or None,
                       budget=KEEP if budget is None else budget, diversity=diversity,
                       group_cap=KEEP if group_cap is None else group_cap, seed=seed,
                       near_duplicate=near_duplicate, name=name, out=out_, trust=trust)
    else:
        from ..select._select import select as _select

        specs = [*(candidates or []), *(sources or [])]
        if not specs:
            raise ParameterError("give the candidates: --candidates FILE... or STORE@VERSION")
        options = {"novelty_threshold": novelty_threshold, "budget": budget,
                   "group_cap": group_cap, "name": name, "out": out_, "method": method,
                   "reference": reference, "descriptor": descriptor, "model": model,
                   "committee": committee, "scheduler": scheduler, "workers": workers,
                   "trust": None}
        if trust is not None or errors:
            from ..select.trust import TrustWindows

            options["trust"] = TrustWindows.from_sources(
                trust, kind="committee" if committee is not None else "error", **errors)
        for key, value in (("novelty_quantile", novelty_quantile),
                           ("novelty_top_k", novelty_top_k), ("novelty_index_mb", index_mb),
                           ("diversity", diversity),
                           ("seed", seed), ("near_duplicate", near_duplicate)):
            if value is not None:
                options[key] = value
        with bar(json_) as progress:
            tasks: dict[str, int] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total or None)
                progress.update(tasks[stage], completed=done, total=total or None)

            sel = _select(st, specs, novelty=not no_novelty, progress=report, **options)
    if json_:
        print_json(sel.to_dict())
        return
    out.print(_summary_table(sel))
    out.print(f"ledger: {sel.name} (store.ledger({sel.name!r}))"
              + (f"; queue: {sel.queue}" if sel.queue else ""))
