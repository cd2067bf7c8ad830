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


def check_queue_path(out, store=None, name: str | None = None) -> bool:
    """OutputError unless ``out`` can become a new queue directory (checked before any work).

    Returns True when ``out`` holds the orphan queue of a select of ``name`` into ``store``
    that was killed after writing the queue and before keeping its ledger (the queue's manifest
    names this store and selection, and no ledger ``name`` exists): :func:`keep` replaces it.
    """
    from ..atomic import check_output_path
    from ..errors import OutputError

    p = check_output_path(out, directory=True)
    if p.exists() and any(p.iterdir()):
        if name is not None and _orphan_queue(p, store, name):
            return True
        raise OutputError(f"{p}: the queue directory exists and is not empty")
    parent = p.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: cannot write the queue directory there ({parent} is not a "
                          "writable directory)")
    return False


def _orphan_queue(path: Path, store, name: str) -> bool:
    """Whether ``path`` is a complete queue of selection ``name`` of ``store`` without ledger."""
    from ..errors import PesdataError
    from ..label.queue import read_queue

    try:
        q = read_queue(path)
    except PesdataError:
        return False
    same_store = os.path.realpath(str(q.manifest.get("store", ""))) == os.path.realpath(
        str(store.uri))
    return (same_store and q.selection == name and q.status == "open"
            and name not in store.artefacts.list(_ledger.KIND))


def keep(store, name: str, decided: pd.DataFrame, summary: dict, write_queue,
         replace: Path | None = None) -> Path | None:
    """Write the queue (if asked), then keep the ledger; a failure of either leaves neither.
    ``replace``: an orphan queue of this selection (see :func:`check_queue_path`), removed
    just before the new one is written."""
    import shutil

    from ..errors import OutputError, PesdataError

    queue = None
    if write_queue is not None:
        if replace is not None:
            shutil.rmtree(replace)
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
