"""CLI commands of store housekeeping: verify and gc."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOpt, StoreArg, TraceOpt, app, command, open_store, out, print_json


@app.command()
@command
def verify(
    store: StoreArg,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Recompute ids and geometry hashes for the latest version only.")] = False,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Check every version, row hash, descriptor cache, artefact and tag; exit 1 on a problem."""
    from ..store.verify import format_problems

    report = open_store(store).verify(full=not quick)
    if json_:
        print_json(report)
    else:
        for line in format_problems(report):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        state = "ok" if report["ok"] else "PROBLEMS"
        out.print(f"{state}: {report['versions_checked']} versions, {report['rows_checked']} "
                  f"rows checked, {len(report['problems'])} problem(s)", highlight=False)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
@command
def gc(
    store: StoreArg,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be removed; remove nothing.")] = False,
    keep: Annotated[int, typer.Option(
        "--keep", help="Always keep the newest N versions.")] = 1,
    older_than: Annotated[float, typer.Option(
        "--older-than", help="Remove only versions older than this many days (0: any).")] = 7.0,
    no_versions: Annotated[bool, typer.Option(
        "--no-versions", help="Remove orphan files only, no versions.")] = False,
    min_age: Annotated[float, typer.Option(
        "--min-age", help="Seconds an orphan segment / temporary file must be untouched.")
    ] = 3600.0,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Remove orphans and old untagged versions nothing names; compact when needed."""
    report = open_store(store).gc(dry_run=dry_run, keep_versions=keep, older_than=older_than,
                                  versions=not no_versions, min_age=min_age)
    if json_:
        print_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    for key in ("spool", "segments", "tmp_files", "ledger_rows"):
        for path in report[key]:
            out.print(f"{verb} {key}: {path}", markup=False, highlight=False, soft_wrap=True)
    if report["versions"]:
        out.print(f"{verb} versions: {', '.join(map(str, report['versions']))}",
                  highlight=False)
    if report["compacted"]:
        out.print(f"{'would compact' if dry_run else 'compacted'} "
                  f"{report['fragments_before']} fragments", highlight=False)
    out.print(f"{verb} {report['bytes']} bytes of orphan files", highlight=False)
