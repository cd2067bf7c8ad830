"""CLI command ``pesdata explore``: stochastic surface walking from one structure, to a file or
a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import InputError, OutputError
from ._common import JsonOpt, TraceOpt, app, command, err, out, print_json

_FILE_SUFFIXES = (".xyz", ".extxyz")


def _read_structure(path: Path):
    """The first frame of ``path``; one-line InputError naming the file otherwise."""
    if not path.exists():
        raise InputError(f"{path}: no such structure file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a structure file")
    import ase.io

    try:
        atoms = ase.io.read(path, index=0)
    except Exception as exc:  # noqa: BLE001 - whatever ASE raises for a file it cannot read
        text = " ".join(str(exc).split())[:200]
        raise InputError(f"{path}: cannot read a structure ({type(exc).__name__}: {text})"
                         ) from exc
    if len(atoms) == 0:
        raise InputError(f"{path}: the first frame holds no atoms")
    import numpy as np

    for name, values in (("positions", atoms.positions), ("cell", atoms.cell.array)):
        if not np.all(np.isfinite(values)):
            raise InputError(f"{path}: frame 0, field {name!r}: holds NaN or inf")
    return atoms


def _is_file_output(target: str) -> bool:
    return target.lower().endswith(_FILE_SUFFIXES)


def _default_workdir(target: str) -> Path:
    if "://" in target:  # an object-store URL: work locally, named after it
        return Path(target.rstrip("/").rsplit("/", 1)[-1] + ".ssw-work")
    p = Path(target)
    return p.parent / (p.name + ".ssw-work")


def _check_output(target: str) -> None:
    """Fail before any work on an output that cannot be written, or that looks like a file
    of another format (``walk.traj``, ``out.cif``, ``x.extxyz.gz``) but would become a store,
    or a directory of other files a store would be written into."""
    if _is_file_output(target):
        from ..atomic import check_output_path

        check_output_path(target)
        return
    if "://" in target:
        return
    p = Path(target)
    if p.suffix:
        raise OutputError(f"{target}: --out is a .xyz/.extxyz file or a store directory (a name "
                          f"without a suffix); {p.suffix!r} is neither")
    if p.exists() and not p.is_dir():
        raise OutputError(f"{target}: exists and is not a store directory; give a directory "
                          "(a store) or a .xyz/.extxyz file")
    if p.is_dir() and any(p.iterdir()) and not (p / "_pesdata").is_dir():
        raise OutputError(f"{target}: a directory of other files, not a store; give a new "
                          "directory or an existing store")


@app.command()
@command
def explore(
    structure: Annotated[Path, typer.Argument(
        help="Starting structure: any file ASE reads (its first frame is used).")],
    calculator: Annotated[str, typer.Option(
        "--calculator", "-c", help="emt, lj (ε=σ=1, untruncated), a pesdata model directory "
        "or MODULE:FACTORY.")],
    steps: Annotated[int, typer.Option(help="SSW steps per walker.")],
    out_target: Annotated[str, typer.Option(
        "--out", "-o", help="Output: a .xyz/.extxyz file, or a store (directory or URL) the "
        "frames are curated into as one new version.")],
    temperature: Annotated[float | None, typer.Option(
        help="Metropolis temperature, K (default: by kind).")] = None,
    kind: Annotated[str, typer.Option(
        help="auto, cluster, bulk or slab: picks the default parameters.")] = "auto",
    cell: Annotated[bool | None, typer.Option(
        "--cell/--no-cell", help="Walk the cell too (default: only for bulk).")] = None,
    walkers: Annotated[int, typer.Option(
        help="Independent seeded walkers, in worker processes when more than one.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the walk.")] = 0,
    max_evaluations: Annotated[int | None, typer.Option(
        help="Cap on energy/force evaluations per walker.")] = None,
    record_climb: Annotated[int | None, typer.Option(
        help="Record every K-th climbing structure (0: none; default 1).")] = None,
    record_quench: Annotated[int | None, typer.Option(
        help="Record every K-th quench step (0: none, the default).")] = None,
    workdir: Annotated[Path | None, typer.Option(
        help="Checkpoints and frames of the walkers (default: OUT.ssw-work); a re-run with "
        "the same arguments resumes from it.")] = None,
    keep_work: Annotated[bool, typer.Option(
        "--keep-work", help="Keep the work directory after success.")] = False,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Explore the potential energy surface by stochastic surface walking (SSW).

    Writes the distinct minima and sampled climb/quench frames (energy, forces, tags) to OUT.
    """
    from ..explore.walkers import clean_workdir, resolve_calculator, run_walkers

    atoms = _read_structure(structure)
    spec = resolve_calculator(calculator)
    _check_output(out_target)
    work = workdir if workdir is not None else _default_workdir(out_target)
    params = {k: v for k, v in dict(temperature=temperature, kind=kind, cell=cell,
                                    max_evaluations=max_evaluations, record_climb=record_climb,
                                    record_quench=record_quench).items() if v is not None}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                  console=err, transient=True,
                  disable=json_ or not err.is_terminal) as bar:
        task = bar.add_task(f"SSW ({spec.method})", total=walkers * max(steps, 0))
        lowest = [float("inf")]

        def progress(done: int, total: int, event: dict) -> None:
            if event.get("best_energy") is not None:
                lowest[0] = min(lowest[0], event["best_energy"])
            text = f"SSW ({spec.method})" + (f", lowest {lowest[0]:.6f} eV"
                                             if lowest[0] < float("inf") else "")
            bar.update(task, completed=done, total=total, description=text)

        summary = run_walkers(atoms, spec, steps, walkers=walkers, seed=seed, workdir=work,
                              progress=progress, **params)
    frames = summary.pop("atoms")
    summary.pop("archive")
    summary["workdir"] = str(work)
    summary["out"] = out_target
    if _is_file_output(out_target):
        from ..io import write_atoms

        for frame in frames:
            frame.info["method"] = summary["method"]
        write_atoms(out_target, frames, format="extxyz")
        summary["curate"] = None
    else:
        summary["curate"] = _curate(out_target, frames, summary, structure, steps)
    if summary["stopped"] and not keep_work:
        err.print(f"[yellow]kept[/yellow] {work}: a walker stopped early; re-run with more "
                  "--steps or --max-evaluations to continue it", highlight=False, soft_wrap=True)
    elif not keep_work:
        clean_workdir(work)
        summary["workdir"] = None
    if json_:
        print_json(summary)
    else:
        _print_summary(summary)


def _curate(target: str, frames: list, summary: dict, structure: Path, steps: int) -> dict:
    from ..curate import curate_new

    if not frames:
        return {"added": 0, "duplicates": 0, "quarantined": 0, "first_quarantined": None,
                "version": None, "committed": False}
    sources = [f"{structure.name}#ssw-w{f.info.get('walker')}-step{f.info.get('ssw_step')}-"
               f"{f.info.get('phase')}" for f in frames]
    message = (f"explore {structure.name}: SSW with {summary['method']}, "
               f"{summary['n_walkers']} walker(s) x {steps} steps, seed {summary['seed']}")
    # a walk's frames are all real labels of the walking calculator, but a climbing or early
    # quench frame can be a force outlier among its config_type or a close contact: curate's
    # validators quarantine those (reported), the rest is committed
    report = curate_new(target, frames, method=summary["method"], message=message,
                        sources=sources, quarantine=True)
    return {"added": report.added, "duplicates": report.duplicates,
            "quarantined": len(report.rejected),
            "first_quarantined": (report.rejected[0] if report.rejected else None),
            "version": report.version, "committed": report.committed}


def _energy(value) -> str:
    return "-" if value is None else f"{value:.6f} eV"


def _print_summary(s: dict) -> None:
    table = Table(title=f"SSW exploration ({s['method']}, {s['n_walkers']} walker(s), "
                        f"seed {s['seed']})", show_header=False)
    table.add_row("steps", str(s["steps"]))
    table.add_row("accepted", str(s["accepted"]))
    table.add_row("evaluations", str(s["evaluations"]))
    table.add_row("lowest energy", _energy(s["lowest_energy"]))
    table.add_row("distinct minima", str(s["distinct_minima"]))
    table.add_row("fragmented / unconverged / failed",
                  f"{s['fragmented']} / {s['unconverged']} / {s['failed']}")
    table.add_row("frames", str(s["frames"]))
    table.add_row("written to", s["out"])
    if s["workdir"]:
        table.add_row("work directory", s["workdir"])
    out.print(table)
    if len(s["walkers"]) > 1:
        rows = Table(title="walkers")
        for col in ("walker", "steps", "accepted", "evaluations", "lowest energy", "minima",
                    "frames"):
            rows.add_column(col, justify="right")
        for r in s["walkers"]:
            rows.add_row(str(r["walker"]), str(r["steps"]), str(r["accepted"]),
                         str(r["evaluations"]), _energy(r["lowest_energy"]),
                         str(r["distinct_minima"]), str(r["frames"]))
        out.print(rows)
    if s["curate"] is not None:
        c = s["curate"]
        where = f"version {c['version']}" if c["committed"] else "nothing new committed"
        out.print(f"curated into {s['out']}: {c['added']} added, {c['duplicates']} duplicates, "
                  f"{c['quarantined']} quarantined ({where})", highlight=False, soft_wrap=True)
        if c["first_quarantined"]:
            first = c["first_quarantined"]
            why = "; ".join(r.get("message", "") for r in first.get("reasons", []))
            err.print(f"[yellow]quarantined[/yellow] {first.get('source')}: {why} (and "
                      f"{c['quarantined'] - 1} more; the whole curate report is in "
                      f"{s['out']}/artefacts/curate_report/)",
                      highlight=False, soft_wrap=True)
    for reason in s["stopped"]:
        err.print(f"[yellow]stopped early:[/yellow] {reason}", highlight=False, soft_wrap=True)
