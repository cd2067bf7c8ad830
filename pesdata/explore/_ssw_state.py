"""Checkpoint and frame output of an SSW walk: JSON state, append-only extxyz, atomic updates.

The checkpoint is one JSON file rewritten atomically (temporary file, fsync, ``os.replace``)
after every finished SSW step. It holds everything the next step depends on — the current
minimum, the counters, the archive, the walk's history — and the byte length of the frame file
at that moment; a resumed walk truncates the frame file to that length, so frames of a step
killed half-way are dropped and written again identically. Floats round-trip exactly through
JSON (Python writes ``repr``), so a resumed walk continues bit for bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from ase import Atoms

from ..atomic import atomic_write
from ..errors import InputError, ParameterError
from .archive import MinimaArchive

__all__ = ["CHECKPOINT_VERSION", "append_frames", "atoms_from_dict", "atoms_to_dict",
           "load_checkpoint", "save_checkpoint", "truncate_frames"]

CHECKPOINT_VERSION = 1


def atoms_to_dict(atoms: Atoms) -> dict:
    """Geometry of ``atoms`` as JSON-able lists."""
    return {"numbers": atoms.numbers.tolist(), "positions": atoms.positions.tolist(),
            "cell": np.asarray(atoms.cell).tolist(), "pbc": [bool(p) for p in atoms.pbc]}


def atoms_from_dict(d: dict, template: Atoms | None = None) -> Atoms:
    """The geometry of :func:`atoms_to_dict`, with the constraints of ``template``."""
    atoms = Atoms(numbers=d["numbers"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])
    if template is not None and template.constraints:
        atoms.set_constraint([c.copy() for c in template.constraints])
    return atoms


def save_checkpoint(path: Path, state: dict, archive: MinimaArchive) -> None:
    """Write ``state`` plus the archive to ``path`` atomically."""
    minima = [{"energy": m.energy, "step": m.step, "walker": m.walker, "visits": m.visits,
               "evaluations": m.evaluations, "atoms": atoms_to_dict(m.atoms)}
              for m in archive.minima]
    doc = {"pesdata_ssw_checkpoint": CHECKPOINT_VERSION, **state, "archive": minima}
    with atomic_write(path, "w") as fh:
        json.dump(doc, fh)


def load_checkpoint(path: Path, params: dict, archive: MinimaArchive) -> dict:
    """Read a checkpoint written for the same walk; the archive is refilled in place.

    Raises
    ------
    InputError
        The file is not an SSW checkpoint.
    ParameterError
        It was written with other parameters (named in the message).
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable SSW checkpoint ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("pesdata_ssw_checkpoint") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: not an SSW checkpoint of version {CHECKPOINT_VERSION}")
    saved = doc.get("params", {})
    for key in sorted(set(saved) | set(params)):
        if saved.get(key) != params.get(key):
            raise ParameterError(
                f"{path}: the checkpoint was written with {key}={saved.get(key)!r}, this walk "
                f"has {key}={params.get(key)!r}; use the same settings or another checkpoint")
    for m in doc.pop("archive"):
        atoms = atoms_from_dict(m["atoms"])
        index, _ = archive.add(atoms, m["energy"], step=m["step"], walker=m["walker"],
                               evaluations=m["evaluations"])
        archive.minima[index].visits = m["visits"]
    return doc


def append_frames(path: Path, frames: list[Atoms]) -> int:
    """Append ``frames`` to the extxyz file ``path`` (fsynced); returns its new byte length."""
    from ase.io import write

    with open(path, "a", encoding="utf-8") as fh:
        if frames:
            write(fh, frames, format="extxyz")
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def truncate_frames(path: Path, length: int) -> None:
    """Cut the frame file back to ``length`` bytes (the end of the last checkpointed step)."""
    p = Path(path)
    if not p.exists():
        if length:
            raise InputError(f"{p}: the frame file of this checkpoint is missing "
                             f"({length} bytes were written)")
        return
    size = p.stat().st_size
    if size < length:
        raise InputError(f"{p}: holds {size} bytes, fewer than the {length} the checkpoint "
                         "recorded; it was changed since")
    with open(p, "r+b") as fh:
        fh.truncate(length)
