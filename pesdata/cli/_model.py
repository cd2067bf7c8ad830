"""CLI commands of the model side: split, train, cv, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from ._common import (
    JsonOpt,
    StoreArg,
    TraceOpt,
    VersionOpt,
    app,
    bar,
    command,
    err,
    open_store,
    out,
    print_json,
)


@app.command()
@command
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
    from ..split import make_split

    manifest = make_split(
        open_store(store), name, strategy, k=k, repeats=repeats, test_size=test_size,
        group_by=group_by, stratify_by=stratify_by, seed=seed, version=version,
    )
    if json_:
        keys = ("name", "version", "strategy", "folds")
        print_json({k_: manifest[k_] for k_ in keys})
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


def _model_params(epochs, force_weight, members, seed, dtype) -> dict:
    """The model options given on the command line, as model hyperparameters.

    Which options a model kind takes, and their ranges, are checked by the model itself
    (``--members`` with ``--model hdnn``, ``--force-weight nan``, ``--epochs 0`` are refused
    with the option's value quoted, before any training).
    """
    params = {"epochs": epochs, "force_weight": force_weight, "seed": seed, "dtype": dtype,
              "n_members": members}
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
@command
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
    from ..train import train as run_train

    params = _model_params(epochs, force_weight, members, seed, dtype)
    with bar(json_) as progress_bar:
        prog = _TrainProgress(progress_bar, json_, params.get("epochs", 1000))
        card = run_train(
            open_store(store), out_dir, model=model, descriptor=descriptor, version=version,
            split=split, fold=fold, device=device, params=params, log=prog.epoch,
            progress=prog.structures,
        )
    if json_:
        print_json(card)
        return
    m = card["metrics"]
    out.print(
        f"{card['kind']} model on version {card['version']} ({card['n_train']} structures) → "
        f"{out_dir}; {card['metrics_on']} energy MAE {m['energy_mae']:.2f} meV/atom"
        + (f", force MAE {m['force_mae']:.3f} eV/Å" if m["force_mae"] is not None else "")
    )


@app.command()
@command
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
    from ..train import cross_validate

    params = _model_params(epochs, force_weight, members, seed, dtype)
    with bar(json_) as progress_bar:
        prog = _TrainProgress(progress_bar, json_, params.get("epochs", 1000))
        df = cross_validate(
            open_store(store), split, model=model, descriptor=descriptor, version=version,
            device=device, params=params, log=prog.epoch, progress=prog.structures,
        )
    if json_:
        print_json({**{k: df.attrs[k] for k in ("split", "version", "model", "mean", "std")},
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
    for r in df.to_dict("records"):  # iterrows would turn the counts into floats
        table.add_row(str(r["fold"]), str(r["n_train"]), str(r["n_test"]),
                      *[f"{r[c]:.{d}f}" for c, _, d in cols])
    mean, std = df.attrs["mean"], df.attrs["std"]
    table.add_row("mean ± std", "", "", *[f"{mean[c]:.{d}f} ± {std[c]:.{d}f}" for c, _, d in cols],
                  style="bold")
    out.print(table)
    out.print("energies meV/atom, forces eV/Å; each fold's test part")


@app.command()
@command
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
    from ..train import evaluate as run_evaluate

    result = run_evaluate(model_dir, target, parity=str(parity) if parity else None)
    if json_:
        keys = ("n_structures", "energy_mae", "energy_rmse", "force_mae", "force_rmse")
        print_json({k: result[k] for k in keys})
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


