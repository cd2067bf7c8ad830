"""Writing structures with ASE (extxyz, ASE db, or any format ASE writes)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import ase.db
import ase.io
from ase import Atoms
from ase.io.formats import filetype, get_compression, ioformats

from ..atomic import atomic_path, check_output_path
from ..errors import FormatError

__all__ = ["write_atoms"]

_OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}


def write_atoms(path: str | os.PathLike, images: Iterable[Atoms], format: str | None = None) -> int:
    """Write ``images`` to ``path`` atomically (to a temporary file, then renamed).

    Only a regular file or a new path is ever replaced: a symlink, device, FIFO, socket or
    directory at ``path`` is refused before anything is written, and the temporary file never
    stays behind (see :mod:`pesdata.atomic`).

    Parameters
    ----------
    path : path-like
        Output file; the format is guessed from its extension unless ``format`` is given
        (``.xyz``/``.extxyz`` → extxyz, ``.db`` → ASE db, ``.traj`` → ASE trajectory, ...).
        A ``.gz``, ``.bz2`` or ``.xz`` ending compresses the output, as ASE does.
    images : iterable of ase.Atoms
    format : str, optional
        Any ASE format that can write several frames.

    Returns
    -------
    int
        Number of frames written.

    Raises
    ------
    OutputError
        ``path`` is a symlink, a special file or a directory.
    FormatError
        The format is unknown, cannot be written, or cannot be compressed.
    """
    p = check_output_path(path)
    fmt = format or _guess(p)
    if fmt not in ioformats or not ioformats[fmt].can_write:
        raise FormatError(f"ASE cannot write format {fmt!r}", path=str(p))
    compression = get_compression(str(p))[1]
    if compression is not None and (fmt == "db" or not ioformats[fmt].acceptsfd):
        raise FormatError(f"format {fmt!r} cannot be written compressed ({compression})",
                          path=str(p))
    count = 0
    with atomic_path(p) as tmp:
        if fmt == "db":
            with ase.db.connect(tmp, type="db") as db:
                for atoms in images:
                    db.write(atoms, key_value_pairs={})
                    count += 1
        elif fmt == "extxyz":  # streamed frame by frame: memory stays flat
            with _open(tmp, compression, "w") as fh:
                for atoms in images:
                    ase.io.write(fh, atoms, format="extxyz")
                    count += 1
        else:
            imgs = list(images)
            count = len(imgs)
            if compression is None:
                ase.io.write(tmp, imgs, format=fmt)
            else:
                mode = "wb" if ioformats[fmt].isbinary else "w"
                with _open(tmp, compression, mode) as fh:
                    ase.io.write(fh, imgs, format=fmt)
    return count


def _open(path: Path, compression: str | None, mode: str) -> IO:
    """``open(path, mode)``, through gzip/bz2/lzma when ``compression`` names one."""
    if compression is None:
        return open(path, mode)
    return _OPENERS[compression](path, mode if "b" in mode else mode + "t")


def _guess(p: Path) -> str:
    root = Path(get_compression(str(p))[0])
    if root.suffix.lower() in (".xyz", ".extxyz"):
        return "extxyz"
    if root.suffix.lower() == ".db":
        return "db"
    try:
        return filetype(str(p), read=False)
    except Exception as exc:  # noqa: BLE001 - ASE raises several kinds here; all mean "unknown"
        raise FormatError(
            "cannot tell the output format; name it with --format", path=str(p)
        ) from exc
