"""CLI commands ``pesdata label export|run|import``: a selection's queue out and back in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import (
    JsonOpt,
    StoreArg,
    TraceOpt,
    app,
    bar,
    command,
    counting,
    err,
    out,
    print_json,
)

label_app = typer.Typer(
    name="label",
    help="Label a selection's queue: export it, label it with an ASE calculator, import it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(label_app, name="label")

QueueArg = Annotated[Path, typer.Argument(help="Queue directory (pesdata select --out).")]


@label_app.command("export")
@command
def export(
    queue: QueueArg,
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="Output file (extxyz) or "
                                             "new directory (vasp).")],
    format: Annotated[str, typer.Option("--format", "-f", help="extxyz or vasp.")] = "extxyz",
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Write the queued frames for a labelling code: one extxyz file or VASP folders."""
    from ..label import export_queue

    with counting(json_, f"exporting ({format})") as progress:
        summary = export_queue(queue, out_path, format=format, progress=progress)
    if json_:
        print_json(summary)
        return
    where = "folders in" if format == "vasp" else "frames to"
    out.print(f"{summary['n_structures']} {where} {out_path} (selection "
              f"{summary['selection']!r})", highlight=False, soft_wrap=True)


@label_app.command("run")
@command
def run(
    queue: QueueArg,
    calculator: Annotated[str, typer.Option(
        "--calculator", "-c", help="emt, lj (ε=σ=1, untruncated) or MODULE:FACTORY.")],
    workers: Annotated[int, typer.Option(help="Processes to label in.")] = 1,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Label the queue in-process with an ASE calculator (resumable; failures recorded)."""
    from ..label import label_queue

    with counting(json_, f"labelling ({calculator})") as progress:
        report = label_queue(queue, calculator, workers=workers, progress=progress)
    if json_:
        print_json(report.summary())
    else:
        out.print(
            f"{report.labelled} labelled, {report.skipped} already labelled, "
            f"{len(report.failed)} failed of {report.n_structures}; queue {report.status}",
            highlight=False,
        )
        for f in report.failed[:10]:
            err.print(f"[red]failed[/red] {f['id']}: {f['reason']}", highlight=False,
                      soft_wrap=True)
        if len(report.failed) > 10:
            err.print(f"... and {len(report.failed) - 10} more (results/failed/)")
    if report.failed:
        raise typer.Exit(1)


@label_app.command("import")
@command
def import_(
    store: StoreArg,
    queue: Annotated[Path, typer.Option("--queue", "-q", help="Queue directory.")],
    results: Annotated[list[Path] | None, typer.Argument(
        help="Result files (extxyz, OUTCAR...; default: what label run stored).")] = None,
    method: Annotated[str | None, typer.Option(help="Level of theory of the labels.")] = None,
    format: Annotated[str | None, typer.Option(help="Result file format (ASE name).")] = None,
    quarantine: Annotated[
        bool, typer.Option(help="Commit the valid results; list the rejected ones.")
    ] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    other_store: Annotated[bool, typer.Option(
        "--other-store", help="Import into a store other than the queue's own.")] = False,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Import labelled results of a queue into the store as one new version."""
    from ..errors import ValidationError
    from ..label import import_results

    with bar(json_) as progress_bar:
        task = progress_bar.add_task("importing", total=None)
        try:
            report = import_results(
                store, queue, [str(r) for r in results] if results else None, method,
                format=format, quarantine=quarantine, message=message, other_store=other_store,
                progress=lambda n, path: progress_bar.update(
                    task, completed=n, description=f"reading {Path(path).name}"),
            )
        except ValidationError as exc:
            if json_ and exc.report is not None:
                print_json(exc.report.summary())
            raise
    if json_:
        print_json(report.summary())
        return
    title = (f"label import → version {report.version}" if report.committed
             else f"label import: nothing new (version {report.version})")
    table = Table(title=title, show_header=False)
    table.add_row("selection", report.selection)
    table.add_row("results read", str(report.read))
    table.add_row("matched", ", ".join(f"{k} {v}" for k, v in report.matched.items() if v))
    table.add_row("added", str(report.added))
    table.add_row("already stored", str(report.duplicates))
    table.add_row("rejected (quarantine)", str(len(report.rejected)))
    table.add_row("queue entries without a stored result", str(len(report.missing)))
    table.add_row("method", report.method)
    out.print(table)
    for entry in report.rejected:
        reasons = "; ".join(r.get("message", str(r)) if isinstance(r, dict) else str(r)
                            for r in entry.get("reasons") or [])
        err.print(f"[yellow]rejected:[/yellow] {entry['source']} (queue id {entry['id']}): "
                  f"{reasons}", highlight=False, soft_wrap=True)
    for text in report.curate.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {text}", highlight=False, soft_wrap=True)
