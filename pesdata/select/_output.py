"""Where a selection's outcome goes: the queue directory and the ledger, kept together."""

from __future__ import annotations

import datetime as _dt
import os
import secrets
from pathlib import Path

import pandas as pd

from . import ledger as _ledger
from .candidates import Candidates

__all__ = ["check_queue_path", "keep", "new_name", "write_selected"]


def new_name() -> str:
    """A default selection name: ``sel-<local time>-<4 hex>``."""
    return f"sel-{_dt.datetime.now().strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"


def check_queue_path(out) -> None:
    """OutputError unless ``out`` can become a new queue directory (checked before any work)."""
    from ..atomic import check_output_path
    from ..errors import OutputError

    p = check_output_path(out, directory=True)
    if p.exists() and any(p.iterdir()):
        raise OutputError(f"{p}: the queue directory exists and is not empty")
    parent = p.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: cannot write the queue directory there ({parent} is not a "
                          "writable directory)")


def keep(store, name: str, decided: pd.DataFrame, summary: dict, write_queue) -> Path | None:
    """Write the queue (if asked), then keep the ledger; a failure of either leaves neither."""
    import shutil

    from ..errors import OutputError, PesdataError

    queue = None
    if write_queue is not None:
        try:
            queue = write_queue()
        except OSError as exc:
            if isinstance(exc, PesdataError):  # OutputError, DiskFull, StoreReadOnly
                raise
            raise OutputError(f"cannot write the queue directory: {exc}") from exc
    try:
        _ledger.save_ledger(store, name, decided, summary)
    except BaseException:
        if queue is not None:
            shutil.rmtree(queue, ignore_errors=True)
        raise
    return queue


def write_selected(store, out, cands: Candidates, df: pd.DataFrame, summary: dict) -> Path:
    """Write the selected frames (in pick order) and their ledger rows as a queue."""
    from ..label.queue import write_queue

    sel = df[df["decision"] == "selected"].sort_values("rank", kind="stable")
    images = []
    for k in sel.index:
        atoms = cands.images[k].copy()
        atoms.info.update(cands.images[k].info)
        atoms.info["pesdata_id"] = df.at[k, "id"]
        atoms.info["pesdata_source"] = df.at[k, "source"]
        images.append(atoms)
    return Path(write_queue(out, images, sel.reset_index(drop=True), store=str(store.uri),
                            reference_version=int(summary["version"]),
                            selection=summary["name"]))
