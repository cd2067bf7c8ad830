"""``pesdata label import``: bring labelled queue structures into the store as one new version.

Each result frame is matched to one queue id, in this order:

1. **run** — without result files, the results ``label run`` wrote (``results/<id>.extxyz``);
2. **id** — the frame's ``info["pesdata_id"]`` is an id of the queue;
3. **folder** — the file sits in a folder of a ``label export --format vasp`` directory (an
   OUTCAR next to the exported POSCAR), whose ``manifest.json`` names the id;
4. **geometry** — same atomic numbers in the same order, cell within :data:`GEOMETRY_TOL` and
   every position within :data:`GEOMETRY_TOL` Å of the queued one under the cell's minimum
   image (an OUTCAR prints 5–6 decimals, so the exact geometry hash would not match).

A match by run, id or folder is checked against the queued geometry in the same way, so a
relaxed structure is never imported as the structure that was queued. A frame that matches no
queue entry, or a second result for an id, refuses the whole import (nothing is committed).

The stored row is the **queued** structure (its geometry, every original ``info`` key and
per-atom array) with the result's labels, plus ``info["selection"]`` (the selection's name),
``info["selection_id"]`` (the queue id), ``info["candidate_source"]`` (where the candidate
came from) and ``info["label_source"]`` (the result file and frame). The frames then go
through :func:`pesdata.curate.curate` exactly as ``pesdata curate`` would take them: bad
labels are rejected the same way, and importing the same results twice adds nothing (curate
commits no version when every frame is already stored).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import InputError, ParameterError, ValidationError
from .export import read_export_manifest
from .queue import ID_KEY, SOURCE_KEY, Queue, read_queue

__all__ = ["GEOMETRY_TOL", "ImportReport", "geometry_deviation", "import_results"]

GEOMETRY_TOL = 1e-3  # Å
_MEMORY = "<memory>#"


@dataclass
class ImportReport:
    """What one ``label import`` did.

    Attributes
    ----------
    queue, selection : str
        The queue directory and the selection's name.
    version : int
        The version written (or the unchanged latest one when nothing was new).
    committed : bool
        Whether a new version was written.
    read : int
        Result frames read.
    matched : dict
        How many were matched by ``run``, ``id``, ``folder`` and ``geometry``.
    added, duplicates : int
        Rows added; results already in the store (no new row).
    ids : list of str
        The queue ids the results belong to, in queue order.
    missing : list of str
        Queue ids without a stored result after this import (no result, or a result curate
        rejected under ``quarantine``).
    rejected : list of dict
        Results curate rejected under ``quarantine``: ``id``, ``source`` and ``reasons``.
    method : str
        The level of theory the rows were stored with.
    curate : dict
        The curate report's summary (conflicts, rejected, warnings...).
    """

    queue: str
    selection: str
    version: int = 0
    committed: bool = False
    read: int = 0
    matched: dict = field(default_factory=lambda: {"run": 0, "id": 0, "folder": 0,
                                                   "geometry": 0})
    added: int = 0
    duplicates: int = 0
    ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    method: str = ""
    curate: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The JSON ``pesdata label import --json`` prints."""
        return asdict(self)


def geometry_deviation(queued, result) -> float:
    """Largest per-atom distance between two structures of the same atoms, in Å.

    ``inf`` when the atomic numbers (in order) differ or a cell entry differs by more than
    :data:`GEOMETRY_TOL`; displacements are taken under the minimum image of the queued cell
    along every direction either structure calls periodic.

    Parameters
    ----------
    queued, result : ase.Atoms

    Returns
    -------
    float
    """
    if len(queued) != len(result) or not np.array_equal(queued.numbers, result.numbers):
        return float("inf")
    cell = queued.cell.array
    if np.max(np.abs(cell - result.cell.array), initial=0.0) > GEOMETRY_TOL:
        return float("inf")
    d = result.positions - queued.positions
    pbc = np.asarray(queued.pbc) | np.asarray(result.pbc)
    if pbc.any() and queued.cell.rank == 3:
        frac = np.linalg.solve(cell.T, d.T).T
        frac[:, pbc] -= np.round(frac[:, pbc])
        d = frac @ cell
    if not len(d):
        return 0.0
    dev = float(np.max(np.linalg.norm(d, axis=1)))
    return dev if np.isfinite(dev) else float("inf")


class _Matcher:
    """Finds the queue id of a result frame (see the module docstring for the order)."""

    def __init__(self, queue: Queue, images: list) -> None:
        self.queue = queue
        self.by_id = {a.info[ID_KEY]: a for a in images}
        self.by_shape: dict[tuple, list] = {}
        for a in images:
            self.by_shape.setdefault((len(a), a.numbers.tobytes()), []).append(a)
        self.exports: dict[Path, dict | None] = {}

    def _folder(self, path: Path) -> tuple[str | None, str | None]:
        root = path.resolve().parent.parent
        if root not in self.exports:
            self.exports[root] = read_export_manifest(root)
        doc = self.exports[root]
        if doc is None:
            return None, None
        return doc["folders"].get(path.resolve().parent.name), str(root / "manifest.json")

    def match(self, atoms, path: str, frame: int, run_id: str | None = None) -> tuple[str, str]:
        """``(queue id, how)``; :class:`InputError` naming ``path`` and ``frame`` if none."""
        tol = GEOMETRY_TOL
        claimed, how, why = run_id, "run", ""
        if claimed is None:
            sid = atoms.info.get(ID_KEY)
            if isinstance(sid, str) and sid in self.by_id:
                claimed, how = sid, "id"
            elif isinstance(sid, str):
                why = f"; its {ID_KEY} {sid!r} is not in this queue"
        if claimed is None:
            sid, manifest = self._folder(Path(path))
            if sid is not None and sid in self.by_id:
                claimed, how = sid, "folder"
            elif sid is not None:
                why += f"; its folder maps to id {sid!r} in {manifest}, which is not in this queue"
        if claimed is not None:
            dev = geometry_deviation(self.by_id[claimed], atoms)
            if dev > tol:
                what = ("differs in its atoms or cell" if not np.isfinite(dev)
                        else f"is {dev:.3g} Å away (tolerance {tol:g} Å)")
                raise InputError(
                    f"matches queue id {claimed} by {how}, but its geometry {what}: a result "
                    "must be a single point of the queued structure (not a relaxation)",
                    path=path, frame=frame)
            return claimed, how
        best, best_dev = None, float("inf")
        for cand in self.by_shape.get((len(atoms), atoms.numbers.tobytes()), []):
            dev = geometry_deviation(cand, atoms)
            if dev < best_dev:
                best, best_dev = cand, dev
        if best is not None and best_dev <= tol:
            return best.info[ID_KEY], "geometry"
        near = (f"; the nearest queued structure with the same atoms is {best_dev:.3g} Å away "
                f"(tolerance {tol:g} Å)" if best is not None and np.isfinite(best_dev) else
                "; no queued structure has the same atoms in the same order")
        raise InputError(f"matches no entry of queue {self.queue.path} (selection "
                         f"{self.queue.selection!r}): not imported, nothing committed{why}{near}",
                         path=path, frame=frame)


def _labelled(queued, result, method: str | None, label_source: str, selection: str):
    """The queued structure with ``result``'s labels and the provenance info keys."""
    from ase.calculators.singlepoint import SinglePointCalculator

    new = queued.copy()
    original = {k: v for k, v in queued.info.items() if k not in (ID_KEY, SOURCE_KEY, "method")}
    extra = {k: v for k, v in result.info.items() if k not in (ID_KEY, SOURCE_KEY, "method")}
    theirs = result.info.get("method")
    if method is None and theirs is not None and not (
            "method" in queued.info and queued.info["method"] == theirs):
        method = str(theirs)  # the labeller named it (not the candidate's inherited method)
    new.info = {**extra, **original, "selection": selection,
                "selection_id": queued.info[ID_KEY],
                "candidate_source": str(queued.info.get(SOURCE_KEY, "")),
                "label_source": label_source, "method": method or "unknown"}
    for key, value in result.arrays.items():
        if key not in ("numbers", "positions") and key not in new.arrays:
            new.arrays[key] = value
    if result.calc is not None and getattr(result.calc, "results", None):
        new.calc = SinglePointCalculator(new, **dict(result.calc.results))
    return new


def import_results(
    store,
    queue: str | os.PathLike | Queue,
    results: Sequence[str | os.PathLike] | None = None,
    method: str | None = None,
    *,
    format: str | None = None,
    quarantine: bool = False,
    message: str | None = None,
    progress: Callable[[int, str], None] | None = None,
    other_store: bool = False,
) -> ImportReport:
    """Import labelled results of ``queue`` into ``store`` as one new version.

    Parameters
    ----------
    store : pesdata.Store or str
        The store (a path or URL is opened; it must exist).
    queue : path-like or Queue
        The queue directory.
    results : sequence of path-like, optional
        Result files (extxyz, OUTCAR, vasprun.xml, anything ``pesdata curate`` reads). Without
        them, the results ``pesdata label run`` wrote into the queue are imported.
    method : str, optional
        Level of theory of every row. Default: the method the results name (``label run``
        records its calculator's, e.g. ``EMT``), else ``"unknown"``; a candidate's own
        ``method`` key (of its old labels) is never taken for the new labels.
    format : str, optional
        Format of the result files when their names do not tell (ASE name).
    quarantine : bool
        Commit the valid results and list the rejected ones (default: any invalid result
        rejects the whole import, as in curate).
    other_store : bool
        Import into a store other than the one the queue was selected from (refused by
        default: the queue's manifest names its store).
    message : str, optional
        Commit message (default ``label import <selection>``).
    progress : callable, optional
        Called as ``progress(frames_read, path)``.

    Returns
    -------
    ImportReport

    Raises
    ------
    InputError
        No results to import; a result file that cannot be read; a result frame that matches
        no queue entry or matches an id by ``pesdata_id``/folder with another geometry; two
        results for one queue id (names file and frame; nothing committed).
    ValidationError
        Results curate rejects (nothing committed; sources name the result files).
    StoreNotFoundError
        No store at ``store``.
    """
    from ..curate import curate
    from ..io import iter_atoms

    q = read_queue(queue)
    if isinstance(store, (str, os.PathLike)):
        from ..store import open_store

        store = open_store(store)
    _check_store(store, q, other_store)
    images = q.images()
    matcher = _Matcher(q, images)
    report = ImportReport(str(q.path), q.selection)
    picked: dict[str, tuple] = {}  # queue id -> (labelled atoms, label source)

    def take(atoms, path: str, frame: int, run_id: str | None = None) -> None:
        sid, how = matcher.match(atoms, path, frame, run_id)
        src = f"{path}#{frame}"
        if sid in picked:
            raise InputError(f"a second result for queue id {sid} (the first is "
                             f"{picked[sid][1]}); give one result per structure, nothing "
                             "committed", path=path, frame=frame)
        picked[sid] = (_labelled(matcher.by_id[sid], atoms, method, src, q.selection), src)
        report.matched[how] += 1
        report.read += 1
        if progress is not None:
            progress(report.read, path)

    if results is None:
        labelled = q.labelled_ids()
        if not labelled:
            raise InputError("no results to import: run `pesdata label run` on the queue or "
                             "give result files", path=str(q.path))
        for sid in labelled:
            path = str(q.result_path(sid))
            frames = list(iter_atoms(path, "extxyz"))
            if len(frames) != 1:
                raise InputError(f"holds {len(frames)} frames; a label run result holds one",
                                 path=path)
            take(frames[0], path, 0, run_id=sid)
    else:
        results = [results] if isinstance(results, (str, os.PathLike)) else list(results)
        if not results:
            raise InputError("no result files given")
        for path in map(str, results):
            for i, atoms in enumerate(iter_atoms(path, format)):
                take(atoms, path, i)

    order = {sid: i for i, sid in enumerate(q.ids)}
    report.ids = sorted(picked, key=order.__getitem__)
    report.missing = [s for s in q.ids if s not in picked]
    labelled_atoms = [picked[s][0] for s in report.ids]
    sources = [picked[s][1] for s in report.ids]
    methods = sorted({a.info["method"] for a in labelled_atoms})
    report.method = method or ", ".join(methods)
    try:
        cur = curate(store, labelled_atoms, method=method, quarantine=quarantine,
                     message=message or f"label import {q.selection}", sources=sources)
    except ValidationError as exc:
        if exc.report is not None:
            _rename_sources(exc.report, sources)
            raise ValidationError(
                f"{len(exc.report.rejected)} of {len(sources)} result(s) invalid, nothing "
                f"written; first: {exc.report.first_rejection()}", exc.report) from exc
        raise
    _rename_sources(cur, sources)
    by_source = {src: sid for sid, src in zip(report.ids, sources, strict=True)}
    for entry in cur.rejected:
        sid = by_source.get(entry.get("source", ""))
        report.rejected.append({"id": sid, "source": entry.get("source"),
                                "reasons": entry.get("reasons", entry.get("issues"))})
        if sid is not None and sid not in report.missing:
            report.missing.append(sid)
    report.version, report.committed = cur.version, cur.committed
    report.added, report.duplicates = cur.added, cur.duplicates
    report.curate = cur.summary()
    imports = [*q.manifest.get("imports", []), {
        "version": int(cur.version), "committed": bool(cur.committed), "added": int(cur.added),
        "matched": len(report.ids), "store": str(getattr(store, "uri", store)),
        "created": datetime.now(timezone.utc).isoformat()}]
    # "imported" once every queue entry has a stored result; otherwise the status stays
    q.update(status="imported" if not report.missing else q.status, imports=imports)
    return report


def _check_store(store, q, other_store: bool) -> None:
    """ParameterError when ``store`` is not the store the queue was selected from."""
    named = str(q.manifest.get("store", ""))
    here = str(getattr(store, "uri", store))

    def canon(uri: str) -> str:
        return os.path.realpath(uri) if "://" not in uri else uri.rstrip("/")

    if other_store or not named or canon(named) == canon(here):
        return
    raise ParameterError(f"queue {q.path} was selected from store {named}, not {here}; "
                         "import into that store, or pass --other-store to import anyway")


def _rename_sources(report, sources: list[str]) -> None:
    """Curate names in-memory frames ``<memory>#i``; name the result file and frame instead."""
    for entry in report.rejected:
        src = entry.get("source", "")
        if src.startswith(_MEMORY) and src[len(_MEMORY):].isdigit():
            k = int(src[len(_MEMORY):])
            if k < len(sources):
                entry["source"] = sources[k]
    for c in report.conflicts:
        c["sources"] = [sources[int(s[len(_MEMORY):])] if s.startswith(_MEMORY)
                        and s[len(_MEMORY):].isdigit() and int(s[len(_MEMORY):]) < len(sources)
                        else s for s in c.get("sources", [])]
