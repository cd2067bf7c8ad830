"""CLI command ``pesdata report``: the HTML page of tables and pictures about a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    JsonOpt,
    StoreArg,
    TraceOpt,
    VersionOpt,
    app,
    command,
    open_store,
    out,
    print_json,
)


@app.command()
@command
def report(
    store: StoreArg,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory (new, empty, "
                                          "or an earlier report, replaced whole).")],
    version: VersionOpt = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Model directory (pesdata train) for parity plots.")] = None,
    efficiency: Annotated[Path | None, typer.Option(
        "--efficiency", help="bench_label_efficiency.json for the label-efficiency curves.")
    ] = None,
    json_: JsonOpt = False,
    traceback: TraceOpt = False,
) -> None:
    """Write DIR/index.html: versions, composition, label statistics, descriptor map,
    selections, loop history, parity and label-efficiency plots (PNG beside it)."""
    from ..analysis.report import write_report

    st = open_store(store)
    index = write_report(st, out_dir, version=version, model=model, efficiency=efficiency)
    manifest = json.loads((index.parent / "report.json").read_text())
    files = sorted(str(p) for p in index.parent.iterdir() if p.is_file())
    if json_:
        print_json({"index": str(index), "version": manifest["version"], "files": files,
                    "skipped": manifest["skipped"]})
        return
    out.print(f"report of version {manifest['version']}: {index} "
              f"({len(manifest['images'])} pictures)", highlight=False, soft_wrap=True)
    for name, why in manifest["skipped"].items():
        out.print(f"  not drawn: {name}: {why}", highlight=False, soft_wrap=True)
