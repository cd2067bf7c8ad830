"""Deduplication and conflict rules of a curate run.

Identity (DESIGN §3): a structure's ``id`` hashes its geometry (numbers, positions rounded to
1e-6 Å, cell, pbc) together with its ``method``. So:

* same geometry, same method, labels that agree → a **duplicate**: kept once, counted;
* same geometry, same method, labels that differ by more than :data:`ENERGY_TOL` (eV/atom) or
  :data:`FORCE_TOL` (eV/Å, largest force-component difference) → a **conflict**: the first
  (stored) labels stay and the conflict is reported with both sources, never dropped silently;
* an unlabelled copy followed by a labelled one → the labelled copy supersedes it
  (**relabelled** when the unlabelled copy is already stored, replaced when it was only seen
  earlier in the same run);
* same geometry with another method → another ``id``, a **new row**.

A run applies the rules in two steps, so that it never holds every id it has seen:

1. :func:`classify` judges each incoming frame against the store (``existing``, looked up
   batch by batch): a frame the store already holds with labels, or holds unlabelled while the
   frame is unlabelled too, is a duplicate (or a conflict) at once; any other frame is spooled
   as ``added`` or ``relabelled``, and :class:`RunIds` logs its id, spool position, arrival
   order and a digest of its labels (41 bytes, appended to a file in the spool directory).
2. :func:`resolve` then finds the ids spooled more than once (the log partitioned by id into
   files of a bounded size, :class:`~pesdata._spill.Parts`) and replays the rules over each
   id's copies in arrival order: the kept copy is superseded by a labelled one when it is
   unlabelled, else each later copy is a duplicate (a conflict when both carry labels that
   differ beyond the tolerances, read back from the spool only when the 64-bit digests differ)
   and is dropped from the spool; the counts are corrected.

The outcome (counts, conflicts and their order, the labels kept) is what applying the rules
frame by frame gives. A superseding copy is committed at its own place in the run's order
(before, it took the superseded copy's place within a batch, so the order depended on the batch
size). The spool holds every copy the store does not resolve until the commit, duplicates
within the run included: disk grows with them (the dropped positions go to a file too).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._ids import id_key
from .._spill import Parts, RecordLog, key_part, part_bits
from ._spool import pack_pos, unpack_pos

if TYPE_CHECKING:  # pragma: no cover
    from ..frames import Frame
    from ._report import CurateReport
    from ._spool import Spool

__all__ = [
    "ENERGY_TOL",
    "FORCE_TOL",
    "RunIds",
    "classify",
    "is_conflict",
    "label_diff",
    "label_digest",
    "record_conflict",
    "resolve",
]

ENERGY_TOL = 1e-3  # eV/atom: duplicates whose energies differ more are conflicts
FORCE_TOL = 1e-3  # eV/Å: same for the largest force-component difference


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


def classify(frame: Frame, existing: dict[str, dict], report: CurateReport) -> str:
    """Judge one valid incoming frame against the store (step 1 of the module doc).

    Parameters
    ----------
    frame : Frame
        The incoming frame (already validated).
    existing : dict
        id → stored row (``energy``, ``forces`` as an array or None, ``source``) for the ids of
        the current batch that the store already holds.
    report : CurateReport
        Counts (``added``, ``duplicates``, ``relabelled``) and conflicts are recorded here.

    Returns
    -------
    str
        ``"added"`` or ``"relabelled"`` (labels for a stored unlabelled row; counted among the
        duplicates too): the frame is to be spooled; ``"conflict"`` or ``"duplicate"``: it is
        not.
    """
    row = existing.get(frame.id)
    if row is None:
        report.added += 1
        return "added"
    report.duplicates += 1  # a relabelled frame is a duplicate too: the store holds it
    stored_labelled = row["energy"] is not None or row["forces"] is not None
    if not stored_labelled and frame.has_labels:
        report.relabelled += 1
        return "relabelled"
    conflict = record_conflict(frame, row["energy"], row["forces"], row["source"], report)
    return "conflict" if conflict else "duplicate"


#: One spooled row of a run: id key, packed spool position, arrival order, label digest and
#: flags (1: labelled, 2: relabelled), 41 bytes.
RUN_REC = np.dtype([("key", "S16"), ("pos", "<i8"), ("seq", "<i8"), ("labels", "<u8"),
                    ("flags", "u1")])
#: Rows logged in memory before they are appended to the run's id file.
LOG_MEM_ROWS = 1 << 16
#: Rows of the log resolved in memory at a time.
MEM_ROWS = 1 << 18
def label_digest(energy, forces) -> int:
    """A 64-bit digest of a frame's labels: equal digests mean equal labels (no conflict)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(b"-" if energy is None else b"E" + np.float64(energy).tobytes())
    if forces is None:
        h.update(b"-")
    else:
        f = np.ascontiguousarray(forces, dtype=np.float64)
        h.update(b"F" + str(f.shape).encode() + f.tobytes())
    return int.from_bytes(h.digest(), "little")


class RunIds:
    """The log of a run's spooled rows (step 1 of the module doc), one :data:`RUN_REC` each,
    appended to ``path`` every :data:`LOG_MEM_ROWS` rows (kept in memory without a path)."""

    def __init__(self, path: Path | None = None) -> None:
        self._log = RecordLog(RUN_REC, path, LOG_MEM_ROWS)

    def __len__(self) -> int:
        return len(self._log)

    def record(self, frame: Frame, pos: tuple[int, int], kind: str, seq: int) -> None:
        """Log a spooled row: ``frame`` at spool position ``pos``, the ``seq``-th frame read."""
        flags = (1 if frame.has_labels else 0) | (2 if kind == "relabelled" else 0)
        self._log.append((id_key(frame.id), pack_pos(pos), seq,
                          label_digest(frame.energy, frame.forces), flags))

    def chunks(self, rows: int = LOG_MEM_ROWS):
        return self._log.chunks(rows)


def resolve(ids: RunIds, spool: Spool, report: CurateReport, spill: Path | None,
            mem_rows: int | None = None) -> list[tuple[int, dict]]:
    """Apply the identity rules across the copies of an id the run spooled (step 2).

    Parameters
    ----------
    ids : RunIds
        The run's log.
    spool : Spool
        Later copies and superseded ones are dropped from it; labels are read from it.
    report : CurateReport
        ``added`` / ``relabelled`` / ``duplicates`` are corrected.
    spill : Path, optional
        A new directory for the partitions (in memory when None or when the log is small).
    mem_rows : int, optional
        Log rows per partition (default :data:`MEM_ROWS`).

    Returns
    -------
    list of (int, dict)
        The conflicts found, each with the arrival order of its incoming copy.
    """
    mem_rows = MEM_ROWS if mem_rows is None else max(1, int(mem_rows))
    bits = part_bits(len(ids), mem_rows)
    parts = Parts(1 << bits, RUN_REC, spill if bits else None)
    for rec in ids.chunks():
        parts.add(key_part(rec["key"], bits), rec)
    conflicts: list[tuple[int, dict]] = []
    for p in range(1 << bits):
        rec = parts.take(p)
        if len(rec) < 2:
            continue
        rec = rec[np.lexsort((rec["seq"], rec["key"]))]
        same = rec["key"][1:] == rec["key"][:-1]
        if not same.any():
            continue
        starts = np.flatnonzero(np.r_[True, ~same])
        ends = np.r_[starts[1:], len(rec)]
        compare: list[tuple[int, int, int]] = []
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            if hi - lo > 1:
                _replay(rec[lo:hi], spool, report, compare)
        conflicts += _compare(compare, spool)
    return conflicts


def _replay(copies: np.ndarray, spool: Spool, report: CurateReport,
            compare: list[tuple[int, int, int]]) -> None:
    """The rules over one id's spooled copies, in arrival order. Which copy is kept depends on
    the labels' presence only, so the label comparisons are queued in ``compare`` as (kept
    position, later position, later arrival) and done by :func:`_compare` in spool order."""
    kept = copies[0]
    for new in copies[1:]:
        if new["flags"] & 2:  # counted as a duplicate of the stored row already
            report.relabelled -= 1
        else:
            report.added -= 1
            report.duplicates += 1
        if not kept["flags"] & 1 and new["flags"] & 1:  # supersede the unlabelled copy
            spool.drop(unpack_pos(kept["pos"]))
            kept = new
            continue
        spool.drop(unpack_pos(new["pos"]))
        if kept["flags"] & new["flags"] & 1 and kept["labels"] != new["labels"]:
            compare.append((int(kept["pos"]), int(new["pos"]), int(new["seq"])))


def _compare(compare: list[tuple[int, int, int]], spool: Spool) -> list[tuple[int, dict]]:
    """The conflicts among queued label comparisons (kept copy first, as reported)."""
    out = []
    last, kept = None, None
    for kp, pos, seq in sorted(compare):  # spool order: each kept copy read once
        if kp != last:
            last, kept = kp, spool.labels(unpack_pos(kp))
        e1, f1, _, src1 = kept
        e2, f2, n, src2 = spool.labels(unpack_pos(pos))
        de, df = label_diff(e1, f1, e2, f2, n)
        if is_conflict(de, df):
            out.append((seq, {"id": spool.value(unpack_pos(pos), "id"), "sources": [src1, src2],
                              "energy_per_atom_diff": de, "max_force_diff": df}))
    return out
