"""The queue directory: the frames a selection picked, going out to be labelled.

A queue is a directory (``pesdata select --out QUEUE`` writes one with :func:`write_queue`)::

    QUEUE/
      manifest.json      store, reference version, selection name, created, status, ids in order
                         (validated against ``schemas/queue.json`` on write and on read)
      frames.extxyz      the selected frames in pick order: geometry, every per-atom array and
                         info key, ``pesdata_id`` and ``pesdata_source``; *no labels*
      info.jsonl         each frame's ``info`` as JSON, one line per frame (exact types: extxyz
                         turns the string "12" into an int; this file does not)
      ledger.parquet     the ledger rows the selection passed (at least ``id``)
      results/<id>.extxyz           written by ``pesdata label run`` (one labelled frame each)
      results/failed/<id>.json      a structure ``label run`` could not label, and why

``status`` moves from ``open`` to ``labelled`` (``label run`` labelled every structure) to
``imported`` (``label import`` committed the results).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._names import check_name
from ..atomic import atomic_dir, atomic_write, check_output_path
from ..errors import ArtefactError, InputError, OutputError, ParameterError

__all__ = [
    "FORMAT",
    "ID_KEY",
    "LABEL_ARRAYS",
    "LABEL_INFO",
    "Queue",
    "SOURCE_KEY",
    "STATUSES",
    "read_queue",
    "strip_labels",
    "write_queue",
]

FORMAT = "pesdata-queue"
FORMAT_VERSION = 1
STATUSES = ("open", "labelled", "imported")
ID_KEY = "pesdata_id"
SOURCE_KEY = "pesdata_source"

#: ``info`` keys and per-atom arrays that hold labels (the standard names, MACE's ``REF_``
#: names, and the other results ASE calculators give): removed from queued frames.
LABEL_INFO = ("energy", "free_energy", "stress", "virial", "REF_energy", "REF_stress",
              "REF_virial", "dipole", "magmom")
LABEL_ARRAYS = ("forces", "REF_forces", "energies", "stresses")

MANIFEST = "manifest.json"
FRAMES = "frames.extxyz"
INFO = "info.jsonl"
LEDGER = "ledger.parquet"
RESULTS = "results"
FAILED = "failed"


def strip_labels(atoms):
    """A copy of ``atoms`` without labels: no calculator, no label ``info`` keys or arrays.

    The geometry (numbers, positions, cell, pbc), constraints, every other ``info`` key and
    per-atom array are kept. Removed: the calculator (and so its results), the ``info`` keys
    of :data:`LABEL_INFO` and the arrays of :data:`LABEL_ARRAYS`.

    Parameters
    ----------
    atoms : ase.Atoms

    Returns
    -------
    ase.Atoms
    """
    out = atoms.copy()  # Atoms.copy drops the calculator
    out.calc = None
    for key in LABEL_INFO:
        out.info.pop(key, None)
    for key in LABEL_ARRAYS:
        if key in out.arrays:
            del out.arrays[key]
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _validate(doc: dict, where: str | os.PathLike) -> None:
    from ..store import validate_artefact

    validate_artefact("queue", doc, where=str(where))
    if doc["n_structures"] != len(doc["ids"]):
        raise ArtefactError(f"{where}: n_structures is {doc['n_structures']} but "
                            f"{len(doc['ids'])} ids are listed")


def write_queue(
    path: str | os.PathLike,
    images: Sequence,
    ledger,
    *,
    store: str,
    reference_version: int,
    selection: str,
    created: str | None = None,
) -> Path:
    """Write a queue directory for the selected frames ``images`` (atomically).

    Candidate labels are **not** carried: each frame is written through :func:`strip_labels`
    (no calculator results, no ``energy``/``forces``/``stress``/``REF_*`` keys), so nothing in
    the queue can be mistaken for the new labels when results come back. The geometry, every
    other ``info`` key and every per-atom array are kept.

    The directory is built beside ``path`` and renamed into place
    (:func:`pesdata.atomic.atomic_dir`): a reader sees the whole queue or none.

    Parameters
    ----------
    path : path-like
        The queue directory: a new path or an empty directory.
    images : sequence of ase.Atoms
        The selected frames in pick order; each carries ``info["pesdata_id"]`` (its candidate
        id, unique in the queue) and, usually, ``info["pesdata_source"]``.
    ledger : pandas.DataFrame
        The ledger rows to keep with the queue (any columns; at least ``id``).
    store : str
        The store the selection was made against (path or URL).
    reference_version : int
        The store version the reference came from.
    selection : str
        The selection's name (recorded in every imported row as info key ``selection``).
    created : str, optional
        ISO time stamp (default: now, UTC).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OutputError
        ``path`` exists and is not an empty directory (or is a symlink, a file...).
    ParameterError
        A frame lacks ``pesdata_id``, two frames share one, ``ledger`` has no ``id`` column,
        or ``selection``/``reference_version`` are not usable.
    SchemaError
        An ``info`` value JSON cannot hold.
    """
    import pyarrow.parquet as pq

    from .._info import info_to_json
    from ..io import write_atoms

    p = check_output_path(path, directory=True)
    if p.is_dir() and any(p.iterdir()):
        raise OutputError(f"{p}: exists and is not empty; give a new queue directory")
    check_name(selection, "selection name")
    if isinstance(reference_version, bool) or not isinstance(
            reference_version, (int, np.integer)) or reference_version < 0:
        raise ParameterError(
            f"reference_version must be a version number >= 0, got {reference_version!r}")
    if "id" not in getattr(ledger, "columns", ()):
        raise ParameterError("ledger must be a pandas DataFrame with an 'id' column, got "
                             f"{type(ledger).__name__} with columns "
                             f"{list(getattr(ledger, 'columns', []))}")
    frames, ids, sources = [], [], []
    seen: dict[str, int] = {}
    for i, atoms in enumerate(images):
        sid = atoms.info.get(ID_KEY)
        if not isinstance(sid, str) or not sid:
            raise ParameterError(f"image {i}: info['{ID_KEY}'] must be the candidate id (a "
                                 f"non-empty string), got {sid!r}")
        if sid in seen:
            raise ParameterError(f"image {i}: id {sid!r} is already image {seen[sid]}; a queue "
                                 "holds each structure once")
        seen[sid] = i
        ids.append(sid)
        sources.append(str(atoms.info.get(SOURCE_KEY, "")))
        frames.append(strip_labels(atoms))
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "store": str(store),
        "reference_version": int(reference_version), "selection": selection,
        "created": created or _now(), "status": "open", "n_structures": len(ids),
        "ids": ids, "sources": sources,
    }
    _validate(doc, p / MANIFEST)
    infos = [info_to_json(a.info, f"image {i}") for i, a in enumerate(frames)]
    with atomic_dir(p) as stage:
        write_atoms(stage / FRAMES, frames, format="extxyz")
        (stage / INFO).write_text("".join(line + "\n" for line in infos), encoding="utf-8")
        pq.write_table(_ledger_table(ledger), stage / LEDGER)
        (stage / RESULTS / FAILED).mkdir(parents=True)
        (stage / MANIFEST).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return p


def _ledger_table(ledger):
    """Selection-ledger rows with the ledger's declared Arrow types; other frames as pandas
    gives them."""
    import pyarrow as pa

    from ..select.ledger import column_names, to_table

    if set(ledger.columns) <= set(column_names()):
        return to_table(ledger)
    return pa.Table.from_pandas(ledger, preserve_index=False)


@dataclass
class Queue:
    """A queue directory read by :func:`read_queue`.

    Attributes
    ----------
    path : pathlib.Path
        The directory.
    manifest : dict
        The validated ``manifest.json``.
    """

    path: Path
    manifest: dict

    @property
    def ids(self) -> list[str]:
        """The queued structure ids, in pick order."""
        return list(self.manifest["ids"])

    @property
    def selection(self) -> str:
        """The selection's name."""
        return self.manifest["selection"]

    @property
    def status(self) -> str:
        """``open``, ``labelled`` or ``imported``."""
        return self.manifest["status"]

    @property
    def results_dir(self) -> Path:
        """Where ``label run`` writes its results."""
        return self.path / RESULTS

    def result_path(self, sid: str) -> Path:
        """``results/<id>.extxyz``."""
        return self.path / RESULTS / f"{sid}.extxyz"

    def failed_path(self, sid: str) -> Path:
        """``results/failed/<id>.json``."""
        return self.path / RESULTS / FAILED / f"{sid}.json"

    def images(self) -> list:
        """The queued frames (``ase.Atoms``, no labels), in pick order.

        Each carries ``info["pesdata_id"]`` from the manifest (extxyz would read an id such as
        ``12e45`` as a number) and its other ``info`` with the types it was written with.

        Raises
        ------
        InputError
            ``frames.extxyz`` or ``info.jsonl`` is missing or unreadable (names the file).
        ArtefactError
            They do not hold one frame per manifest id.
        """
        from .._info import info_from_json
        from ..io import iter_atoms

        frames_path, info_path = self.path / FRAMES, self.path / INFO
        if not frames_path.is_file():
            raise InputError("the queue's frames are missing", path=str(frames_path))
        ids = self.ids
        images = list(iter_atoms(frames_path, "extxyz")) if ids else []
        try:
            lines = info_path.read_text(encoding="utf-8").splitlines()
            infos = [info_from_json(line) for line in lines]
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the queue's info ({exc})", path=str(info_path)) from exc
        if len(images) != len(ids) or len(infos) != len(ids):
            raise ArtefactError(
                f"{self.path}: {len(images)} frames in {FRAMES} and {len(infos)} lines in "
                f"{INFO}, but the manifest lists {len(ids)} ids")
        for atoms, info, sid in zip(images, infos, ids, strict=True):
            atoms.calc = None
            atoms.info = {**info, ID_KEY: sid}
        return images

    def ledger(self):
        """The ledger rows kept with the queue (pandas DataFrame)."""
        import pyarrow.parquet as pq

        path = self.path / LEDGER
        try:
            return pq.read_table(path).to_pandas()
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the queue's ledger ({exc})", path=str(path)) from exc

    def labelled_ids(self) -> list[str]:
        """Queue ids with a ``label run`` result, in queue order."""
        return [s for s in self.ids if self.result_path(s).is_file()]

    def failures(self) -> dict[str, str]:
        """Queue ids ``label run`` failed on (and has not labelled since) → reason."""
        out = {}
        for sid in self.ids:
            f = self.failed_path(sid)
            if f.is_file() and not self.result_path(sid).is_file():
                try:
                    out[sid] = json.loads(f.read_text(encoding="utf-8"))["reason"]
                except (OSError, ValueError, KeyError, TypeError):
                    out[sid] = "unreadable failure record"
        return out

    def update(self, **changes) -> None:
        """Change manifest fields (``status``, ``imports``...) and rewrite it atomically."""
        doc = {**self.manifest, **changes}
        _validate(doc, self.path / MANIFEST)
        with atomic_write(self.path / MANIFEST) as fh:
            fh.write(json.dumps(doc, indent=2))
        self.manifest = doc

    def __repr__(self) -> str:
        return (f"Queue({str(self.path)!r}, selection={self.selection!r}, "
                f"n_structures={len(self.ids)}, status={self.status!r})")


def read_queue(path: str | os.PathLike | Queue) -> Queue:
    """Open the queue directory at ``path``.

    Parameters
    ----------
    path : path-like or Queue
        The queue directory (a :class:`Queue` is returned as it is).

    Returns
    -------
    Queue

    Raises
    ------
    InputError
        No directory, no ``manifest.json``, or a manifest that is not JSON (names the file).
    ArtefactError
        The manifest does not validate against ``schemas/queue.json``.
    """
    if isinstance(path, Queue):
        return path
    p = Path(path)
    if not p.is_dir():
        raise InputError("no queue directory here (pesdata select --out writes one)",
                         path=str(p))
    mpath = p / MANIFEST
    try:
        doc = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError("not a queue: manifest.json is missing", path=str(mpath)) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the queue manifest ({exc})", path=str(mpath)) from exc
    if not isinstance(doc, dict):
        raise ArtefactError(f"{mpath}: the queue manifest is not a JSON object")
    _validate(doc, mpath)
    return Queue(p, doc)
