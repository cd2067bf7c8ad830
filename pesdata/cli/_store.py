"""CLI commands of the store side: curate, describe, log, info, diff, tag, export, optimize."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import (
    JsonOpt,
    StoreArg,
    TraceOpt,
    VersionOpt,
    app,
    bar,
    command,
    counting,
    err,
    one_line,
    open_store,
    out,
    print_json,
)


@app.command()
@command
def curate(
    store: StoreArg,
    files: Annotated[list[Path], typer.Argument(help="Structure files (any format ASE reads).")],
    method: Annotated[str | None, typer.Option(help="Level of theory, e.g. 'PBE'.")] = None,
    config_type: Annotated[str | None, typer.Option(help="Kind of structure.")] = None,
    group: Annotated[str | None, typer.Option(help="Trajectory/group for splits.")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    format: Annotated[str | None, typer.Option(help="File format (ASE name).")] = None,
    energy_key: Annotated[str | None, typer.Option(help="info key of the energy.")] = None,
    forces_key: Annotated[str | None, typer.Option(help="arrays key of the forces.")] = None,
    stress_key: Annotated[str | None, typer.Option(help="info key of the stress.")] = None,
    virial_key: Annotated[str | None, typer.Option(help="info key of the virial (eV).")] = None,
    quarantine: Annotated[
        bool, typer.Option(help="Commit valid frames; list rejected ones in the report.")
    ] = False,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on Dask: threads, processes, synchronous or tcp://HOST:PORT.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Local Dask workers (default: one per core).")] = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Ingest, validate and deduplicate structure files into a new version."""
    from ..curate import curate_new
    from ..errors import ValidationError
    from ..io import detect_format
    from ..parallel import check_scheduler, check_workers

    scheduler, workers = check_scheduler(scheduler), check_workers(workers)
    for f in files:  # fail fast, before a store is created or locked
        detect_format(f, format)
    with bar(json_) as progress_bar:
        task = progress_bar.add_task("curating", total=None)

        def progress(n: int, path: str) -> None:
            progress_bar.update(task, completed=n, description=f"reading {Path(path).name}")

        try:
            report = curate_new(  # a store created here is removed again if this fails
                store, [str(f) for f in files], method=method, config_type=config_type, group=group,
                message=message, format=format, energy_key=energy_key, forces_key=forces_key,
                stress_key=stress_key, virial_key=virial_key, quarantine=quarantine,
                progress=progress, scheduler=scheduler, workers=workers,
            )
        except ValidationError as exc:
            if exc.report is not None and not json_:
                _report_table(exc.report)
                _warnings(exc.report)
            elif exc.report is not None:
                print_json(exc.report.summary())
            raise
    if json_:
        print_json(report.summary())
    else:
        _report_table(report)
        _warnings(report)


def _warnings(report) -> None:
    """The report's warnings (e.g. label-like keys that were not mapped), one line each."""
    for text in getattr(report, "warnings", None) or []:
        err.print(f"[yellow]warning:[/yellow] {one_line(text)}", highlight=False, soft_wrap=True)


def _report_table(report) -> None:
    title = (
        f"curate → version {report.version}" if report.committed
        else f"curate: nothing written (version {report.version})"
    )
    table = Table(title=title, show_header=True)
    table.add_column("", style="bold")
    table.add_column("frames", justify="right")
    for key in ("read", "added", "duplicates", "relabelled", "unlabelled"):
        label = key if report.committed or key in ("read", "unlabelled") else f"{key} (not written)"
        table.add_row(label, str(getattr(report, key)))
    table.add_row("conflicts", str(len(report.conflicts)))
    table.add_row("rejected", str(len(report.rejected)))
    for reason, count in report.rejected_by_reason.items():
        table.add_row(f"  rejected: {one_line(reason)}", str(count))
    out.print(table)
    for c in report.conflicts[:5]:
        kept, incoming = c["sources"]
        out.print(f"conflict {c['id'][:12]}: {one_line(kept)} vs {one_line(incoming)}",
                  soft_wrap=True)
    for r in report.rejected[:5]:
        reasons = "; ".join(f"{x['field']}: {x['message']}" for x in r["reasons"])
        out.print(f"rejected {one_line(r['source'])}: {one_line(reasons)}", soft_wrap=True,
                  highlight=False)


@app.command()
@command
def describe(
    store: StoreArg,
    descriptor: Annotated[
        Path, typer.Option("--descriptor", "-d", help="Descriptor config JSON file.")
    ],
    version: VersionOpt = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Structures per batch.")] = 64,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on Dask: threads, processes, synchronous or tcp://HOST:PORT.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Local Dask workers (default: one per core).")] = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Compute per-atom descriptors of a version into the store's Zarr cache."""
    from ..descriptors import describe as run_describe
    from ..descriptors import from_config

    st = open_store(store)
    desc = from_config(descriptor, device=device)
    with counting(json_, f"describing ({desc.name})") as progress:
        summary = run_describe(st, desc, version=version, batch_size=batch_size,
                               progress=progress, scheduler=scheduler, workers=workers)
    if json_:
        print_json(summary)
    else:
        out.print(
            f"version {summary['version']}: {summary['computed']} structures described "
            f"({summary['n_atoms']} atoms), {summary['cached']} already cached; "
            f"config {summary['config_hash']} → {summary['path']}"
        )


@app.command()
@command
def log(store: StoreArg, json_: JsonOpt = False, traceback: TraceOpt = False) -> None:
    """List the versions of a store, oldest first."""
    df = open_store(store).log()
    if json_:
        print_json(
            [
                {
                    "version": int(r.version), "message": r.message,
                    "timestamp": r.timestamp.isoformat(), "n_structures": int(r.n_structures),
                    "tags": [t for t in r.tags.split(",") if t],
                }
                for r in df.itertuples()
            ]
        )
        return
    table = Table(title=f"log of {store}")
    for col in ("version", "timestamp", "structures", "tags", "message"):
        table.add_column(col, justify="right" if col in ("version", "structures") else "left")
    for r in df.itertuples():
        table.add_row(
            str(r.version), r.timestamp.strftime("%Y-%m-%d %H:%M:%S"), str(r.n_structures),
            r.tags, r.message,
        )
    out.print(table)


@app.command()
@command
def info(
    store: StoreArg, version: VersionOpt = None, json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Summarise a version: structures, atoms, elements, methods."""
    summary = open_store(store).info(version)
    if json_:
        print_json(summary)
        return
    table = Table(title=f"{store} @ version {summary['version']}", show_header=False)
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    out.print(table)


@app.command()
@command
def diff(
    store: StoreArg,
    a: Annotated[str, typer.Argument(help="Old version (number or tag).")],
    b: Annotated[str, typer.Argument(help="New version (number or tag).")],
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Structures added, removed and relabelled between two versions."""
    d = open_store(store).diff(a, b)
    if json_:
        print_json(d)
        return
    table = Table(title=f"diff {a} → {b}")
    table.add_column("change")
    table.add_column("structures", justify="right")
    table.add_column("first ids")
    for key, ids in d.items():
        table.add_row(key, str(len(ids)), ", ".join(i[:12] for i in ids[:3]))
    out.print(table)


@app.command()
@command
def tag(
    store: StoreArg,
    name: Annotated[str, typer.Argument(help="Tag name.")],
    version: VersionOpt = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Name a version (default: the latest)."""
    number = open_store(store).tag(name, version)
    if json_:
        print_json({"tag": name, "version": number})
    else:
        out.print(f"tagged version {number} as {name!r}")


@app.command()
@command
def export(
    store: StoreArg,
    out_file: Annotated[Path, typer.Argument(
        metavar="OUT", help="Output file (.xyz, .db...); with --to, a new directory.")],
    version: VersionOpt = None,
    format: Annotated[str | None, typer.Option(help="ASE format name (not with --to).")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Trainer target: mace, nequip, deepmd, aselmdb, pacemaker, gap or extxyz.",
    )] = None,
    split: Annotated[str | None, typer.Option(
        "--split", help="With --to: write this split's train/test parts.")] = None,
    fold: Annotated[int | None, typer.Option(
        "--fold", help="With --split: which fold (default 0).")] = None,
    e0: Annotated[str | None, typer.Option(
        "--e0", help="With --to: isolated-atom energies: isolated, average or none (default).",
    )] = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Write a version to extxyz, an ASE database or any format ASE writes, or (--to) for a
    trainer: a version or a split's fold, with pesdata-export.json."""
    from ..errors import ParameterError

    if to is None and (split is not None or fold is not None or e0 is not None):
        raise ParameterError("--split, --fold and --e0 need --to TARGET")
    if fold is not None and split is None:
        raise ParameterError("--fold needs --split")
    st = open_store(store)
    if to is not None:
        with bar(json_) as progress_bar:
            progress_bar.add_task(f"exporting for {to} to {out_file.name}", total=None)
            manifest = st.export(out_file, version=version, format=format, to=to, split=split,
                                 fold=fold or 0, e0=e0 or "none")
        if json_:
            print_json(manifest)
        else:
            _export_summary(manifest, out_file)
        return
    with counting(json_, f"exporting to {out_file.name}") as progress:
        n = st.export(out_file, version=version, format=format, progress=progress)
    number = st.resolve(version)
    if json_:
        print_json({"version": number, "n_structures": n, "path": str(out_file)})
    else:
        out.print(f"wrote {n} structures of version {number} to {out_file}")


def _export_summary(manifest: dict, where: Path) -> None:
    """The Rich summary of ``export --to``: parts, E0s, missing labels, refused ids, notes."""
    from rich.markup import escape

    source = f"version {manifest['version']}"
    if manifest["split"] is not None:
        source += (f", split {manifest['split']!r} fold {manifest['fold']} "
                   f"of {manifest['n_folds']}")
    out.print(f"export --to {manifest['target']}: {source} → {where}", markup=False,
              highlight=False)
    table = Table()
    table.add_column("part")
    table.add_column("written", justify="right")
    table.add_column("structures", justify="right")
    table.add_column("files")
    for part, info in manifest["parts"].items():
        files = ", ".join(info["files"][:4]) + (" ..." if len(info["files"]) > 4 else "")
        table.add_row(part, str(info["count"]), str(info["structures"]), escape(files))
    out.print(table)
    e0 = ", ".join(f"{k} {v:.6f}" for k, v in manifest["e0"].items()) or "none"
    out.print(f"E0 ({manifest['e0_mode']}, eV): {e0}", markup=False, highlight=False)
    keys = ", ".join(f"{k} → {v}" for k, v in manifest["key_mapping"].items())
    out.print(f"keys: {keys}", markup=False, highlight=False)
    out.print(f"missing labels: {manifest['missing_labels']}", markup=False, highlight=False)
    refused = manifest.get("refused", [])
    if refused:
        out.print(f"refused {len(refused)} structure(s):", style="yellow")
        for r in refused[:10]:
            out.print(f"  {r['id']}: {r['reason']}", markup=False, highlight=False,
                      soft_wrap=True)
        if len(refused) > 10:
            out.print(f"  ... and {len(refused) - 10} more (see pesdata-export.json)")
    for note in manifest.get("notes", []):
        out.print(note, markup=False, highlight=False, soft_wrap=True)  # copy-paste whole
    out.print(f"manifest: {where / 'pesdata-export.json'}", markup=False, highlight=False)


@app.command()
@command
def optimize(store: StoreArg, json_: JsonOpt = False, traceback: TraceOpt = False) -> None:
    """Compact the table's files and rebuild its id/geometry_hash indices."""
    version = open_store(store).optimize()
    if json_:
        print_json({"version": version})
    else:
        out.print(f"optimized; latest version {version}")
