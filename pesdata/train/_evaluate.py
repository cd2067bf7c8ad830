"""Evaluating a saved model on a store version or a structure file, with a parity file.

Structures read from a file pass curate's per-frame validators first
(:func:`pesdata.curate.default_validators`), so a broken frame is a one-line error naming the
file, frame and field — never a crash in the neighbour search or a NaN metric. The parity file
is written through :mod:`pesdata.atomic`: only a regular file or a new path is (re)placed.
"""

from __future__ import annotations

import os
from pathlib import Path

import ase
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path, check_output_path
from ..errors import OutputError, ValidationError
from ._fit import predict_metrics
from .checkpoint import load_model

__all__ = ["evaluate", "read_target"]


def _file_frames(path: str) -> list:
    """Frames of a structure file, each checked by curate's per-frame validators."""
    from ..curate import default_validators, validate_batch
    from ..io import read_frames

    checks, _population = default_validators()  # outliers need a population, not one file
    frames = list(read_frames(path))
    found = validate_batch(frames, checks)
    bad = [(k, frames[k], errors[0]) for k, errors in enumerate(found) if errors]
    if bad:
        k, frame, issue = bad[0]
        where, _, index = frame.source.rpartition("#")
        where, index = (where, index) if index.isdigit() else (path, str(k))
        raise ValidationError(
            f"{len(bad)} of {len(frames)} frame(s) invalid, nothing evaluated; first: "
            f"{where}: frame {index}: field '{issue.field}': {issue.message}"
        )
    return frames


def read_target(target: str) -> tuple[list[ase.Atoms], str]:
    """Structures of ``STORE``, ``STORE@VERSION`` or any structure file curate reads.

    Returns the structures (``info["source"]`` names each: ``file#frame`` or the store id)
    and the target's display name.

    Raises
    ------
    ValidationError
        A frame of the file fails curate's per-frame validators.
    InputError
        The file cannot be read.
    """
    from .. import open_store
    from ..frames import frames_to_table, table_to_atoms

    path, _, version = target.partition("@")
    if (Path(path) / "_pesdata" / "store.json").is_file():
        snap = open_store(path).read(version or None)
        images = snap.to_atoms()
        for atoms, id_ in zip(images, snap.ids, strict=True):
            atoms.info["source"] = f"{path}@{snap.version} id {id_}"
        return images, f"{path}@{snap.version}"
    frames = _file_frames(target)
    images = table_to_atoms(frames_to_table(frames))
    for atoms, frame in zip(images, frames, strict=True):
        atoms.info["source"] = frame.source
    return images, target


def _parity_path(parity: str | os.PathLike) -> Path:
    """The parity path if it may be written; refused before any work otherwise."""
    path = check_output_path(parity)  # a directory, symlink, FIFO or device: OutputError
    if not path.absolute().parent.is_dir():
        raise OutputError(f"--parity {parity}: its directory does not exist")
    return path


def evaluate(model_dir: str | os.PathLike, target: str, parity: str | None = None) -> dict:
    """Energy MAE/RMSE (meV/atom) and force MAE/RMSE (eV/Å) of a saved model on ``target``.

    ``parity`` writes a Parquet file with one row per structure: n_atoms, reference and
    predicted energy, and reference and predicted forces (per atom) for parity plots; it is
    written atomically and may only be a new path or a regular file (else
    :class:`~pesdata.errors.OutputError`, before anything is computed).

    Parameters
    ----------
    model_dir : path-like
        A model directory written by ``pesdata train`` / :func:`save_model`.
    target : str
        ``STORE``, ``STORE@VERSION`` or a structure file curate reads (validated by curate's
        per-frame validators).
    parity : str, optional
        A Parquet file to write the per-structure parity table to.

    Returns
    -------
    dict
        ``target`` (its display name), ``n_structures``, ``energy_mae``, ``energy_rmse``
        (meV/atom), ``force_mae``, ``force_rmse`` (eV/Å; None without reference forces).

    Raises
    ------
    OutputError
        ``parity`` is not a new path or a regular file, or its directory does not exist.
    ArtefactError
        ``model_dir`` is not a valid model.
    InputError
        The target file cannot be read.
    ValidationError
        A frame fails curate's validators, or the model predicts a non-finite value.
    ParameterError
        No labelled structure to evaluate on.
    """
    parity_path = _parity_path(parity) if parity else None
    model, _card = load_model(model_dir)
    images, name = read_target(str(target))
    metrics, pred = predict_metrics(model, images)
    if parity_path is not None:
        ims = pred["images"]
        ref_f = [a.calc.results.get("forces") for a in ims]
        table = pa.table({
            "n_atoms": [len(a) for a in ims],
            "energy_ref": pred["ref_e"],
            "energy_pred": pred["energy"],
            "forces_ref": [None if f is None else np.asarray(f).tolist() for f in ref_f],
            "forces_pred": [np.asarray(f).tolist() for f in pred["forces"]],
        })
        with atomic_path(parity_path) as tmp:  # a killed run leaves no half-written file
            pq.write_table(table, tmp)
    return {"target": name, **metrics}
