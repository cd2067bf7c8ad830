"""``pesdata label export``: the queued frames as one extxyz file or as VASP folders.

``extxyz``: one file, every frame with its ``pesdata_id`` (and every other info key and
per-atom array), no labels.

``vasp``: one folder per structure, ``OUT/<nnnn>_<first 12 hex of the id>/POSCAR`` (ASE's VASP
writer, Cartesian, 16 decimals, atoms in the queue's order: never sorted by element; a
structure without a 3-D cell cannot be written as POSCAR and is refused), and
``OUT/manifest.json``, which maps each folder to its queue id (and names the queue, store and
selection). ``pesdata label import`` finds the id of an OUTCAR/vasprun.xml in such a folder
through that manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ..atomic import atomic_dir, check_output_path
from ..errors import InputError, OutputError, ParameterError
from .queue import Queue, read_queue

__all__ = ["EXPORT_KIND", "FORMATS", "export_queue", "folder_name", "read_export_manifest"]

FORMATS = ("extxyz", "vasp")
EXPORT_KIND = "pesdata-label-export"
MANIFEST = "manifest.json"


def folder_name(index: int, sid: str) -> str:
    """The VASP folder of the ``index``-th queued structure: ``0007_3fa2c1d09b8e``."""
    return f"{index:04d}_{sid[:12]}"


def export_queue(
    queue: str | os.PathLike | Queue,
    out: str | os.PathLike,
    format: str = "extxyz",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the queued frames for a labelling code.

    Parameters
    ----------
    queue : path-like or Queue
        The queue directory.
    out : path-like
        ``extxyz``: the output file (a new path or a regular file, replaced atomically).
        ``vasp``: the output directory (new or empty; built beside and renamed into place).
    format : {"extxyz", "vasp"}
        What to write.
    progress : callable, optional
        Called as ``progress(done, total)``.

    Returns
    -------
    dict
        ``{"format", "out", "n_structures", "selection"}`` (vasp: also ``"folders"``, the
        folder → id mapping).

    Raises
    ------
    ParameterError
        An unknown ``format``.
    OutputError
        ``out`` cannot be written (a directory for extxyz, a non-empty directory or a file
        for vasp, a symlink or device).
    InputError, ArtefactError
        The queue is missing or damaged.
    """
    if format not in FORMATS:
        raise ParameterError(f"unknown export format {format!r}; give one of {', '.join(FORMATS)}")
    q = read_queue(queue)
    images = q.images()
    total = len(images)
    summary = {"format": format, "out": str(out), "n_structures": total,
               "selection": q.selection}
    if format == "extxyz":
        from ..io import write_atoms

        write_atoms(out, images, format="extxyz")
        if progress is not None:
            progress(total, total)
        return summary
    import ase.io

    p = check_output_path(out, directory=True)
    if p.is_dir() and any(p.iterdir()):
        raise OutputError(f"{p}: exists and is not empty; give a new directory for the VASP "
                          "folders")
    folders: dict[str, str] = {}
    with atomic_dir(p) as stage:
        for i, atoms in enumerate(images):
            sid = atoms.info["pesdata_id"]
            name = folder_name(i, sid)
            (stage / name).mkdir()
            if atoms.cell.rank < 3:
                raise InputError(f"structure {sid} has no 3-D cell; VASP needs one (export "
                                 "it as extxyz)", path=str(q.path / "frames.extxyz"), frame=i)
            ase.io.write(stage / name / "POSCAR", atoms, format="vasp", direct=False,
                         sort=False)
            folders[name] = sid
            if progress is not None:
                progress(i + 1, total)
        doc = {"kind": EXPORT_KIND, "queue": str(q.path.resolve()),
               "store": q.manifest["store"], "selection": q.selection,
               "reference_version": q.manifest["reference_version"], "folders": folders}
        (stage / MANIFEST).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return {**summary, "folders": folders}


def read_export_manifest(directory: str | os.PathLike) -> dict | None:
    """The folder → id mapping of a VASP export directory, or None when it is not one.

    Parameters
    ----------
    directory : path-like
        A directory that may hold ``manifest.json`` written by :func:`export_queue`.

    Returns
    -------
    dict or None
        The manifest document (``folders`` maps folder name → queue id).
    """
    path = Path(directory) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(doc, dict) and doc.get("kind") == EXPORT_KIND
            and isinstance(doc.get("folders"), dict)):
        return None
    return doc
