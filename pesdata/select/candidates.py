"""Candidate frames for a selection: structure files or a version of another store.

A candidate source is a structure file (any format curate reads) or ``STORE@VERSION`` (a store
directory, optionally with a version or tag). Every frame gets the metadata a ledger row
starts with: ``id`` (its geometry and method, as a store row's), ``geometry_hash``, ``source``,
``n_atoms``, ``formula``, ``config_type`` and ``group``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._formula import chemical_formula
from ..errors import InputError, ParameterError

__all__ = ["Candidates", "is_store", "read_candidates"]

META = ("id", "geometry_hash", "source", "n_atoms", "formula", "config_type", "group")


@dataclass
class Candidates:
    """Candidate frames and their ledger metadata.

    Attributes
    ----------
    images : list of ase.Atoms
        The frames, labels (if any) as a SinglePointCalculator, original info and arrays kept.
    meta : pandas.DataFrame
        One row per frame: the columns of ``META``.
    specs : list of str
        The sources as given.
    stores : list of tuple
        ``(store, version, first_row)`` for each store source, so its cached descriptors can be
        used instead of recomputed.
    """

    images: list
    meta: pd.DataFrame
    specs: list[str]
    stores: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` (without ``@VERSION``) is a pesdata store directory."""
    return (Path(path) / "_pesdata" / "store.json").is_file()


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``STORE@VERSION`` → (STORE, VERSION) when STORE is a store; else (spec, None)."""
    path, at, version = str(spec).rpartition("@")
    if at and path and is_store(path):
        return path, version or None
    return str(spec), None


def read_candidates(specs: str | os.PathLike | Sequence[str | os.PathLike],
                    method: str | None = None) -> Candidates:
    """Read candidate frames from files and store versions.

    Parameters
    ----------
    specs : path or sequence of paths
        Structure files, or ``STORE`` / ``STORE@VERSION``.
    method : str, optional
        Level of theory the candidates will be labelled with (enters their ``id``, as in
        curate); default: each frame's ``method`` info value, else ``"unknown"``.

    Returns
    -------
    Candidates

    Raises
    ------
    InputError
        A file is missing, empty or cannot be parsed (names the file and frame).
    ParameterError
        No sources were given.
    """
    from .. import open_store
    from ..frames import frames_to_table, table_to_atoms
    from ..io import read_frames

    if isinstance(specs, str | os.PathLike):
        specs = [specs]
    specs = [str(s) for s in specs]
    if not specs:
        raise ParameterError("no candidate sources given")
    images, rows, stores = [], [], []
    for spec in specs:
        path, version = _split_spec(spec)
        if is_store(path):
            store = open_store(path)
            snap = store.read(version)
            table = snap.table(columns=["id", "geometry_hash", "config_type", "group"])
            stores.append((store, snap.version, len(images)))
            atoms_list = snap.to_atoms()
            for k, (atoms, id_, gh, ct, grp) in enumerate(zip(
                    atoms_list, *(table.column(c).to_pylist() for c in table.column_names),
                    strict=True)):
                images.append(atoms)
                rows.append((id_, gh, f"{path}@{snap.version}#{k}", len(atoms),
                             chemical_formula(atoms.numbers), ct, grp))
            continue
        if not Path(path).exists():
            raise InputError("no such candidate file or store", path=path)
        frames = list(read_frames(path, method=method))
        for frame, atoms in zip(frames, table_to_atoms(frames_to_table(frames)), strict=True):
            atoms.info.update(frame.info)  # every original key, also those the table folds in
            images.append(atoms)
            rows.append((frame.id, frame.geometry_hash, frame.source, frame.n_atoms,
                         chemical_formula(frame.numbers), frame.config_type, frame.group))
    meta = pd.DataFrame(rows, columns=list(META))
    meta["n_atoms"] = meta["n_atoms"].astype(np.int32)
    return Candidates(images, meta, specs, stores)
