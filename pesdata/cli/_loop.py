"""CLI commands ``pesdata loop`` (the active-learning loop) and ``pesdata demo`` (the main job)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import JsonOpt, TraceOpt, app, command, err, out, print_json

_COLUMNS = (("iteration", "it", "{:.0f}"), ("version", "ver", "{:.0f}"),
            ("n_structures", "structs", "{:.0f}"), ("explored", "explored", "{:.0f}"),
            ("accurate", "acc", "{:.0%}"), ("candidate", "cand", "{:.0%}"),
            ("failed", "fail", "{:.0%}"), ("selected", "picked", "{:.0f}"),
            ("energy_rmse", "E", "{:.2f}"), ("force_rmse", "F", "{:.3f}"))


def history_table(df, title: str) -> Table:
    """The per-iteration table as Rich prints it."""
    from rich import box

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  caption="acc/cand/fail: shares of the explored frames; E, F: test RMSE of "
                          "the iteration's committee (meV/atom, eV/Å)")
    for _, head, _ in _COLUMNS:
        table.add_column(head, justify="right", no_wrap=True)
    for row in df.to_dict("records"):
        cells = []
        for key, _, fmt in _COLUMNS:
            value = row.get(key)
            ok = value is not None and value == value
            cells.append(fmt.format(value) if ok else "–")
        table.add_row(*cells)
    return table


def _row_line(row: dict) -> None:
    err.print(f"  → version {row['version']}: {row['n_structures']} structures, "
              f"{row['explored']} explored, {row['selected']} selected, {row.get('added', 0)} "
              f"added ({row['seconds']:.0f} s)", highlight=False)


@app.command()
@command
def loop(
    config: Annotated[Path, typer.Argument(help="Loop config (YAML or JSON).")],
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Run or resume the active-learning loop: explore → select → label → commit → retrain."""
    from ..loop import LoopStopped, run_loop

    def echo(text: str) -> None:
        if not json_:
            err.print(text, highlight=False, soft_wrap=True)

    try:
        df = run_loop(config, echo=echo, on_iteration=None if json_ else _row_line)
    except LoopStopped as exc:
        if json_:
            print_json({"status": "waiting_for_labels", "message": str(exc)})
        else:
            out.print(f"[yellow]waiting for labels:[/yellow] {exc}", highlight=False,
                      soft_wrap=True)
        return
    if json_:
        print_json(df.astype(object).where(df.notna(), None).to_dict("records"))
        return
    out.print(history_table(df, f"loop {Path(config).name}"))


@app.command()
@command
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes everything.")] = Path(
        "demo-out"),
    iterations: Annotated[int, typer.Option(help="Loop iterations.")] = 4,
    traceback: TraceOpt = False,
) -> None:
    """The main job on embedded data: curate EMT copper, run the loop, write the report."""
    from ..demo import run_demo

    run_demo(workdir, iterations=iterations,
             echo=lambda text: out.print(text, highlight=False, soft_wrap=True),
             table=lambda df, title: out.print(history_table(df, title)))
