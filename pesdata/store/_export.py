"""``Store.export``: a version to one file in any format ASE writes, or to a trainer's layout."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import ParameterError

__all__ = ["export_store"]


def export_store(
    store,
    out: str | os.PathLike,
    version: int | str | None = None,
    format: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    to: str | None = None,
    split: str | None = None,
    fold: int = 0,
    e0: str = "none",
) -> int | dict:
    """Write a version of ``store`` to ``out`` (any format ASE writes), or for a trainer.

    Parameters
    ----------
    store : pesdata.Store
        The store.
    out : path-like
        Output file (a regular file or a new path; compressed when it ends in ``.gz``,
        ``.bz2`` or ``.xz``), written atomically; with ``to``, a new directory that appears
        whole or not at all.
    version : int, str or None
        As for :meth:`resolve` (default the latest; with ``split``, the split's own).
    format : str, optional
        ASE format name (default: from the file name); not with ``to``.
    progress : callable, optional
        Called as ``progress(done, total)`` as structures are written (not with ``to``).
    to : str, optional
        A trainer target (``mace``, ``nequip``, ``deepmd``, ``aselmdb``, ``pacemaker``,
        ``gap``, ``extxyz``): see :func:`pesdata.export.export`.
    split : str, optional
        With ``to``: write fold ``fold`` of this split's ``train``/``test`` parts.
    fold : int
        With ``split``: which fold.
    e0 : {"none", "isolated", "average"}
        With ``to``: the isolated-atom energies (:func:`pesdata.export.e0s`).

    Returns
    -------
    int or dict
        The number of structures written; with ``to``, the manifest
        (``out/pesdata-export.json``).

    Raises
    ------
    VersionNotFound
        No such version or tag.
    ParameterError
        ``format`` with ``to``; ``split``, ``fold`` or ``e0`` without ``to``; ``fold``
        without ``split``; an unknown target, fold or E0 mode; ``version`` other than the
        split's.
    OutputError
        ``out`` is a device, FIFO, socket, symlink or directory; with ``to``, ``out``
        exists.
    """
    if to is not None:
        from ..errors import OutputError
        from ..export import export as export_to

        if format is not None:
            raise ParameterError(f"format={format!r}: to={to!r} chooses its own files")
        if split is None and fold != 0:
            raise ParameterError(f"fold={fold!r} needs a split")
        if os.path.lexists(out):
            raise OutputError(f"{out} exists; export --to writes a new directory")
        return export_to(store, out, to, version=version, split=split, fold=fold, e0=e0)
    if split is not None or fold != 0 or e0 != "none":
        raise ParameterError("split, fold and e0 need a trainer target (to=...): a plain "
                             "export writes the whole version to one file")
    from ..io import write_atoms


    snap = store.read(version)
    total = len(snap)

    def images():
        for done, atoms in enumerate(snap, 1):
            yield atoms
            if progress is not None and done % 256 == 0:
                progress(done, total)
        if progress is not None:
            progress(total, total)

    return write_atoms(out, images(), format=format)
