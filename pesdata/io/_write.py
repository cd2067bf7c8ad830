"""Writing structures with ASE (extxyz, ASE db, or any format ASE writes)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import ase.db
import ase.io
from ase import Atoms
from ase.io.formats import filetype, ioformats

from ..errors import FormatError

__all__ = ["write_atoms"]


def write_atoms(path: str | os.PathLike, images: Iterable[Atoms], format: str | None = None) -> int:
    """Write ``images`` to ``path`` atomically (to a temporary file, then renamed).

    Parameters
    ----------
    path : path-like
        Output file; the format is guessed from its extension unless ``format`` is given
        (``.xyz``/``.extxyz`` → extxyz, ``.db`` → ASE db, ``.traj`` → ASE trajectory, ...).
    images : iterable of ase.Atoms
    format : str, optional
        Any ASE format that can write several frames.

    Returns
    -------
    int
        Number of frames written.
    """
    p = Path(path)
    fmt = format or _guess(p)
    if fmt not in ioformats or not ioformats[fmt].can_write:
        raise FormatError(f"ASE cannot write format {fmt!r}", path=str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    os.unlink(tmp)  # ASE's db backend refuses to open an existing empty file
    count = 0
    try:
        if fmt == "db":
            with ase.db.connect(tmp, type="db") as db:
                for atoms in images:
                    db.write(atoms, key_value_pairs={})
                    count += 1
        elif fmt == "extxyz":  # streamed frame by frame: memory stays flat
            with open(tmp, "w") as fh:
                for atoms in images:
                    ase.io.write(fh, atoms, format="extxyz")
                    count += 1
        else:
            imgs = list(images)
            count = len(imgs)
            ase.io.write(tmp, imgs, format=fmt)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


def _guess(p: Path) -> str:
    suffix = p.suffix.lower()
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    if suffix == ".db":
        return "db"
    try:
        return filetype(str(p), read=False)
    except Exception:  # noqa: BLE001 - ASE raises several kinds here
        raise FormatError(
            "cannot tell the output format; name it with --format", path=str(p)
        ) from None
