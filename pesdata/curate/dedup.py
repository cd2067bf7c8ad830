"""Deduplication and conflict rules of a curate run.

Identity (DESIGN §3): a structure's ``id`` hashes its geometry (numbers, positions rounded to
1e-6 Å, cell, pbc) together with its ``method``. So:

* same geometry, same method, labels that agree → a **duplicate**: kept once, counted;
* same geometry, same method, labels that differ by more than :data:`ENERGY_TOL` (eV/atom) or
  :data:`FORCE_TOL` (eV/Å, largest force-component difference) → a **conflict**: the first
  (stored) labels stay and the conflict is reported with both sources, never dropped silently;
* an unlabelled copy followed by a labelled one → the labelled copy supersedes it
  (**relabelled** when the unlabelled copy is already stored, replaced in place when it was
  only seen earlier in the same run);
* same geometry with another method → another ``id``, a **new row**.

:func:`classify` applies these rules to one incoming frame against what the run has already
spooled (``seen``, ``to_spool``) and what the store holds (``existing``). The rest of the curate
run (reading, validating, spooling, committing) lives in :mod:`pesdata.curate._curate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..frames import Frame
    from ._report import CurateReport
    from ._spool import Spool

__all__ = [
    "ENERGY_TOL",
    "FORCE_TOL",
    "Seen",
    "classify",
    "is_conflict",
    "label_diff",
    "record_conflict",
]

ENERGY_TOL = 1e-3  # eV/atom: duplicates whose energies differ more are conflicts
FORCE_TOL = 1e-3  # eV/Å: same for the largest force-component difference


@dataclass
class Seen:
    """A row this run has already spooled.

    Attributes
    ----------
    pos : (int, int)
        Its position in the spool (file, row).
    labelled : bool
        Whether it carries an energy or forces.
    kind : str
        ``"added"`` (a new row) or ``"relabelled"`` (labels for a stored unlabelled row).
    """

    pos: tuple[int, int]
    labelled: bool
    kind: str


def label_diff(e1, f1, e2, f2, n: int) -> tuple[float | None, float | None]:
    """Label differences of two copies of one structure, where both copies have the label.

    Parameters
    ----------
    e1, e2 : float or None
        Total energies (eV).
    f1, f2 : (n, 3) array or None
        Forces (eV/Å).
    n : int
        Number of atoms (the energy difference is per atom).

    Returns
    -------
    (float or None, float or None)
        ``|e1 − e2| / n`` (eV/atom) and ``max |f1 − f2|`` over all components (eV/Å); ``None``
        where either side lacks the label (or the force shapes differ).
    """
    de = abs(e1 - e2) / max(n, 1) if e1 is not None and e2 is not None else None
    df = None
    if f1 is not None and f2 is not None and np.shape(f1) == np.shape(f2):
        df = float(np.max(np.abs(np.asarray(f1) - np.asarray(f2)))) if np.size(f1) else 0.0
    return de, df


def is_conflict(de: float | None, df: float | None) -> bool:
    """Whether label differences (from :func:`label_diff`) exceed the tolerances.

    A difference of exactly the tolerance is not a conflict; a missing difference (``None``)
    never is.
    """
    return (de is not None and de > ENERGY_TOL) or (df is not None and df > FORCE_TOL)


def record_conflict(
    frame: Frame, energy, forces, source: str, report: CurateReport
) -> dict | None:
    """Compare ``frame``'s labels with a kept copy's; report and return a conflict if any.

    Parameters
    ----------
    frame : Frame
        The incoming duplicate.
    energy, forces
        Labels of the kept copy (stored or spooled earlier).
    source : str
        ``file#frame`` of the kept copy.
    report : CurateReport
        A conflict is appended to ``report.conflicts`` (kept source first).
    """
    de, df = label_diff(energy, forces, frame.energy, frame.forces, frame.n_atoms)
    if not is_conflict(de, df):
        return None
    entry = {
        "id": frame.id,
        "sources": [source, frame.source],
        "energy_per_atom_diff": de,
        "max_force_diff": df,
    }
    report.conflicts.append(entry)
    return entry


def classify(
    frame: Frame,
    seen: dict[str, Seen],
    existing: dict[str, dict],
    spool: Spool,
    report: CurateReport,
    to_spool: dict[str, tuple[Frame, str]],
) -> str:
    """Apply the identity rules to one valid incoming frame.

    Parameters
    ----------
    frame : Frame
        The incoming frame (already validated).
    seen : dict
        id → :class:`Seen` for rows spooled by earlier batches of this run; a superseded
        unlabelled copy is removed from it (and dropped from the spool).
    existing : dict
        id → stored row (``energy``, ``forces`` as an array or None, ``source``) for the ids of
        the current batch that the store already holds.
    spool : Spool
        The run's spool (read for earlier copies' labels; superseded rows dropped).
    report : CurateReport
        Counts (``added``, ``duplicates``, ``relabelled``) and conflicts are recorded here.
    to_spool : dict
        id → (frame, kind) of the rows the current batch will spool; updated in place.

    Returns
    -------
    str
        What the frame was: ``"added"``, ``"relabelled"`` (labels for a stored unlabelled
        row), ``"superseded"`` (replaces an unlabelled copy seen earlier in this run),
        ``"conflict"`` or ``"duplicate"``.
    """
    first = seen.get(frame.id)
    if first is not None or frame.id in to_spool:
        report.duplicates += 1
        if frame.id in to_spool:  # duplicate inside the same batch
            other, kind = to_spool[frame.id]
            e, f, src = other.energy, other.forces, other.source
            other_labelled = other.has_labels
        else:
            e, f, _, src = spool.labels(first.pos)
            other_labelled = first.labelled
        if not other_labelled and frame.has_labels:  # supersede the unlabelled copy
            if frame.id not in to_spool:
                kind = first.kind
                spool.drop(first.pos)
                del seen[frame.id]
            to_spool[frame.id] = (frame, kind)
            return "superseded"
        return "conflict" if record_conflict(frame, e, f, src, report) else "duplicate"
    row = existing.get(frame.id)
    if row is None:
        report.added += 1
        to_spool[frame.id] = (frame, "added")
        return "added"
    report.duplicates += 1
    stored_labelled = row["energy"] is not None or row["forces"] is not None
    if not stored_labelled and frame.has_labels:
        report.relabelled += 1
        to_spool[frame.id] = (frame, "relabelled")
        return "relabelled"
    conflict = record_conflict(frame, row["energy"], row["forces"], row["source"], report)
    return "conflict" if conflict else "duplicate"
