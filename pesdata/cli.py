"""The ``pesdata`` command line: parses arguments, calls the library, prints the result.

Every command takes ``--json`` for machine-readable output and ``--traceback`` to show the full
traceback of an error; otherwise an error is one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import PesdataError

app = typer.Typer(
    name="pesdata",
    help="Versioned, curated datasets for machine-learning interatomic potentials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TraceOpt = Annotated[bool, typer.Option("--traceback", help="Show the full traceback on error.")]
StoreArg = Annotated[str, typer.Argument(help="Store directory or URL.")]
VersionOpt = Annotated[
    str | None, typer.Option("--version", "-v", help="Version number or tag (default: latest).")
]


def _command(fn):
    """Run a command body, mapping errors to a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        trace = kwargs.get("traceback", False)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except PesdataError as exc:
            if trace:
                raise
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:  # noqa: BLE001 - anything else is still one line
            if trace:
                raise
            err.print(
                f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None

    return wrapper


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _bar(quiet: bool) -> Progress:
    """A transient progress bar on stderr (off for --json and when stderr is no terminal)."""
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.completed} structures"), TimeElapsedColumn(),
        console=err, transient=True, disable=quiet or not err.is_terminal,
    )


def _open(store: str, create: bool = False):
    from . import open_store

    return open_store(store, create=create)


@app.command()
@_command
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
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Ingest, validate and deduplicate structure files into a new version."""
    from .errors import ValidationError
    from .io import detect_format

    for f in files:  # bad input must not leave a new, empty store behind
        detect_format(f, format)
    st = _open(store, create=True)
    with _bar(json_) as bar:
        task = bar.add_task("curating", total=None)

        def progress(n: int, path: str) -> None:
            bar.update(task, completed=n, description=f"reading {Path(path).name}")

        try:
            report = st.curate(
                [str(f) for f in files], method=method, config_type=config_type, group=group,
                message=message, format=format, energy_key=energy_key, forces_key=forces_key,
                stress_key=stress_key, virial_key=virial_key, quarantine=quarantine,
                progress=progress,
            )
        except ValidationError as exc:
            if exc.report is not None and not json_:
                _report_table(exc.report)
            elif exc.report is not None:
                _print_json(exc.report.summary())
            raise
    if json_:
        _print_json(report.summary())
    else:
        _report_table(report)


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
        table.add_row(f"  rejected: {reason}", str(count))
    out.print(table)
    for c in report.conflicts[:5]:
        kept, incoming = c["sources"]
        out.print(f"conflict {c['id'][:12]}: {kept} vs {incoming}", soft_wrap=True)
    for r in report.rejected[:5]:
        reasons = "; ".join(f"{x['field']}: {x['message']}" for x in r["reasons"])
        out.print(f"rejected {r['source']}: {reasons}", soft_wrap=True, highlight=False)


@app.command()
@_command
def describe(
    store: StoreArg,
    descriptor: Annotated[
        Path, typer.Option("--descriptor", "-d", help="Descriptor config JSON file.")
    ],
    version: VersionOpt = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Structures per batch.")] = 64,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Compute per-atom descriptors of a version into the store's Zarr cache."""
    from .descriptors import describe as run_describe
    from .descriptors import from_config

    st = _open(store)
    desc = from_config(descriptor, device=device)
    with _bar(json_) as bar:
        task = bar.add_task(f"describing ({desc.name})", total=None)
        summary = run_describe(
            st, desc, version=version, batch_size=batch_size,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if json_:
        _print_json(summary)
    else:
        out.print(
            f"version {summary['version']}: {summary['computed']} structures described "
            f"({summary['n_atoms']} atoms), {summary['cached']} already cached; "
            f"config {summary['config_hash']} → {summary['path']}"
        )


@app.command()
@_command
def split(
    store: StoreArg,
    name: Annotated[str, typer.Option("--name", help="Manifest name.")],
    strategy: Annotated[
        str, typer.Option(help="holdout, kfold, loo, logo, rlt (repeated learning), bootstrap.")
    ] = "holdout",
    k: Annotated[int, typer.Option("--k", help="Folds for kfold.")] = 5,
    repeats: Annotated[int, typer.Option(help="Repeats for rlt and bootstrap.")] = 10,
    test_size: Annotated[float, typer.Option(help="Test fraction (holdout, rlt).")] = 0.2,
    group_by: Annotated[
        str | None, typer.Option(help="Keep groups whole: group, source, config_type, ...")
    ] = None,
    stratify_by: Annotated[
        str | None, typer.Option(help="Stratify by composition, config_type, ...")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    version: VersionOpt = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Make a leak-free split of a version and save it as a manifest artefact."""
    from .split import make_split

    manifest = make_split(
        _open(store), name, strategy, k=k, repeats=repeats, test_size=test_size,
        group_by=group_by, stratify_by=stratify_by, seed=seed, version=version,
    )
    if json_:
        keys = ("name", "version", "strategy", "folds")
        _print_json({k_: manifest[k_] for k_ in keys})
        return
    table = Table(title=f"split {name!r} of version {manifest['version']} ({strategy})")
    table.add_column("fold", justify="right")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for i, fold in enumerate(manifest["folds"][:20]):
        table.add_row(str(i), str(len(fold["train"])), str(len(fold["test"])))
    out.print(table)
    if len(manifest["folds"]) > 20:
        out.print(f"... {len(manifest['folds'])} folds in all")


ModelOpt = Annotated[str, typer.Option(help="Model: hdnn, linear or committee.")]
DescriptorOpt = Annotated[
    Path | None, typer.Option(help="Descriptor config JSON (default: ACSF default grid).")
]
EpochsOpt = Annotated[int | None, typer.Option(help="Maximum epochs (HDNN; default 1000).")]
ForceWeightOpt = Annotated[
    float | None,
    typer.Option(help="Force-loss weight w_F (HDNN default 0.01; linear default 0: energies)."),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda[:k].")]
MembersOpt = Annotated[int | None, typer.Option(help="Committee size (default 4).")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of weights and batch order.")]
DtypeOpt = Annotated[str | None, typer.Option(help="float32 (default) or float64 (HDNN).")]


def _model_params(model, epochs, force_weight, members, seed, dtype) -> dict:
    params = {"epochs": epochs, "force_weight": force_weight, "seed": seed, "dtype": dtype}
    if model == "committee":
        params["n_members"] = members
    elif members is not None:
        raise typer.BadParameter("--members is for --model committee")
    return {k: v for k, v in params.items() if v is not None}


class _TrainProgress:
    """A Rich bar over epochs plus a per-epoch log line on stderr (quiet with --json)."""

    def __init__(self, bar: Progress, quiet: bool, epochs: int) -> None:
        self.bar, self.quiet, self.epochs = bar, quiet, epochs
        self.describe = bar.add_task("descriptors", total=None)
        self.task = None

    def structures(self, n: int) -> None:
        self.bar.update(self.describe, completed=n)

    def epoch(self, r: dict) -> None:
        if self.task is None:
            self.bar.update(self.describe, visible=False)
            self.task = self.bar.add_task("training", total=self.epochs)
        where = "".join(f"{k} {r[k]} " for k in ("fold", "member") if k in r)
        self.bar.update(self.task, completed=r["epoch"],
                        description=f"{where}epoch {r['epoch']}")
        if self.quiet:
            return
        force = (f" F {r['valid_force_rmse']:.3f} eV/Å" if "valid_force_rmse" in r else "")
        if "valid_energy_rmse" in r and (r["epoch"] % 10 == 0 or r["epoch"] == 1):
            err.print(f"{where}epoch {r['epoch']:4d}  lr {r['lr']:.1e}  valid RMSE E "
                      f"{r['valid_energy_rmse']:.2f} meV/atom{force}  ({r['seconds']:.0f} s)",
                      highlight=False)


@app.command()
@_command
def train(
    store: StoreArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    split: Annotated[str | None, typer.Option(help="Train on this split's train part.")] = None,
    fold: Annotated[int, typer.Option(help="Which fold of the split.")] = 0,
    version: VersionOpt = None,
    model: ModelOpt = "hdnn",
    descriptor: DescriptorOpt = None,
    epochs: EpochsOpt = None,
    force_weight: ForceWeightOpt = None,
    device: DeviceOpt = "cpu",
    members: MembersOpt = None,
    seed: SeedOpt = None,
    dtype: DtypeOpt = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Fit a model on a version or a split, save it with a model card."""
    from .train import train as run_train

    params = _model_params(model, epochs, force_weight, members, seed, dtype)
    with _bar(json_) as bar:
        prog = _TrainProgress(bar, json_, params.get("epochs", 1000))
        card = run_train(
            _open(store), out_dir, model=model, descriptor=descriptor, version=version,
            split=split, fold=fold, device=device, params=params, log=prog.epoch,
            progress=prog.structures,
        )
    if json_:
        _print_json(card)
        return
    m = card["metrics"]
    out.print(
        f"{card['kind']} model on version {card['version']} ({card['n_train']} structures) → "
        f"{out_dir}; {card['metrics_on']} energy MAE {m['energy_mae']:.2f} meV/atom"
        + (f", force MAE {m['force_mae']:.3f} eV/Å" if m["force_mae"] is not None else "")
    )


@app.command()
@_command
def cv(
    store: StoreArg,
    split: Annotated[str, typer.Option(help="Split manifest to cross-validate over.")],
    version: VersionOpt = None,
    model: ModelOpt = "hdnn",
    descriptor: DescriptorOpt = None,
    epochs: EpochsOpt = None,
    force_weight: ForceWeightOpt = None,
    device: DeviceOpt = "cpu",
    members: MembersOpt = None,
    seed: SeedOpt = None,
    dtype: DtypeOpt = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Cross-validate: one model per fold of a split, per-fold and mean ± std errors."""
    from .train import cross_validate

    params = _model_params(model, epochs, force_weight, members, seed, dtype)
    with _bar(json_) as bar:
        prog = _TrainProgress(bar, json_, params.get("epochs", 1000))
        df = cross_validate(
            _open(store), split, model=model, descriptor=descriptor, version=version,
            device=device, params=params, log=prog.epoch, progress=prog.structures,
        )
    if json_:
        _print_json({**{k: df.attrs[k] for k in ("split", "version", "model", "mean", "std")},
                     "folds": df.to_dict(orient="records")})
        return
    table = Table(title=f"{model} CV over split {split!r} (version {df.attrs['version']})")
    cols = [("energy_mae", "E MAE", 2), ("energy_rmse", "E RMSE", 2),
            ("force_mae", "F MAE", 3), ("force_rmse", "F RMSE", 3)]
    cols = [c for c in cols if c[0] in df.attrs["mean"]]
    for name in ("fold", "train", "test"):
        table.add_column(name, justify="right")
    for _, label, _ in cols:
        table.add_column(label, justify="right")
    for _, r in df.iterrows():
        table.add_row(str(r["fold"]), str(r["n_train"]), str(r["n_test"]),
                      *[f"{r[c]:.{d}f}" for c, _, d in cols])
    mean, std = df.attrs["mean"], df.attrs["std"]
    table.add_row("mean ± std", "", "", *[f"{mean[c]:.{d}f} ± {std[c]:.{d}f}" for c, _, d in cols],
                  style="bold")
    out.print(table)
    out.print("energies meV/atom, forces eV/Å; each fold's test part")


@app.command()
@_command
def evaluate(
    target: Annotated[str, typer.Argument(help="STORE, STORE@VERSION or a structure file.")],
    model_dir: Annotated[Path, typer.Option("--model", help="Model directory.")],
    parity: Annotated[
        Path | None, typer.Option(help="Write per-structure/per-atom predictions (Parquet).")
    ] = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Energy and force errors of a saved model on a store version or a file."""
    from .train import evaluate as run_evaluate

    result = run_evaluate(model_dir, target, parity=str(parity) if parity else None)
    if json_:
        keys = ("n_structures", "energy_mae", "energy_rmse", "force_mae", "force_rmse")
        _print_json({k: result[k] for k in keys})
        return
    table = Table(title=f"{model_dir} on {result['target']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("structures", str(result["n_structures"]))
    table.add_row("energy MAE (meV/atom)", f"{result['energy_mae']:.3f}")
    table.add_row("energy RMSE (meV/atom)", f"{result['energy_rmse']:.3f}")
    if result["force_mae"] is not None:
        table.add_row("force MAE (eV/Å)", f"{result['force_mae']:.4f}")
        table.add_row("force RMSE (eV/Å)", f"{result['force_rmse']:.4f}")
    out.print(table)


@app.command()
@_command
def log(store: StoreArg, json_: JsonOpt = False, traceback: TraceOpt = False) -> None:
    """List the versions of a store, oldest first."""
    df = _open(store).log()
    if json_:
        _print_json(
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
@_command
def info(
    store: StoreArg, version: VersionOpt = None, json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Summarise a version: structures, atoms, elements, methods."""
    summary = _open(store).info(version)
    if json_:
        _print_json(summary)
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
@_command
def diff(
    store: StoreArg,
    a: Annotated[str, typer.Argument(help="Old version (number or tag).")],
    b: Annotated[str, typer.Argument(help="New version (number or tag).")],
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Structures added, removed and relabelled between two versions."""
    d = _open(store).diff(a, b)
    if json_:
        _print_json(d)
        return
    table = Table(title=f"diff {a} → {b}")
    table.add_column("change")
    table.add_column("structures", justify="right")
    table.add_column("first ids")
    for key, ids in d.items():
        table.add_row(key, str(len(ids)), ", ".join(i[:12] for i in ids[:3]))
    out.print(table)


@app.command()
@_command
def tag(
    store: StoreArg,
    name: Annotated[str, typer.Argument(help="Tag name.")],
    version: VersionOpt = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Name a version (default: the latest)."""
    number = _open(store).tag(name, version)
    if json_:
        _print_json({"tag": name, "version": number})
    else:
        out.print(f"tagged version {number} as {name!r}")


@app.command()
@_command
def export(
    store: StoreArg,
    out_file: Annotated[Path, typer.Argument(metavar="OUT", help="Output file (.xyz, .db...).")],
    version: VersionOpt = None,
    format: Annotated[str | None, typer.Option(help="ASE format name.")] = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Write a version to extxyz, an ASE database or any format ASE writes."""
    st = _open(store)
    with _bar(json_) as bar:
        task = bar.add_task(f"exporting to {out_file.name}", total=None)
        n = st.export(
            out_file, version=version, format=format,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    number = st.resolve(version)
    if json_:
        _print_json({"version": number, "n_structures": n, "path": str(out_file)})
    else:
        out.print(f"wrote {n} structures of version {number} to {out_file}")


@app.command()
@_command
def optimize(store: StoreArg, json_: JsonOpt = False, traceback: TraceOpt = False) -> None:
    """Compact the table's files and rebuild its id/geometry_hash indices."""
    version = _open(store).optimize()
    if json_:
        _print_json({"version": version})
    else:
        out.print(f"optimized; latest version {version}")


def main() -> None:  # pragma: no cover - console-script entry point
    """Entry point of the ``pesdata`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
