"""The curate run: read → validate → deduplicate → one commit → report."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from ..errors import InputError, ValidationError
from ..frames import Frame, LabelKeys, _formula, frames_to_table, reduced_formula
from ..io import detect_format, read_frames
from ._report import CurateReport
from ._spool import Spool
from ._validators import Issue, default_validators

__all__ = ["ENERGY_TOL", "FORCE_TOL", "curate"]

MEMORY = "<memory>"
ENERGY_TOL = 1e-3  # eV/atom: duplicates whose energies differ more are conflicts
FORCE_TOL = 1e-3  # eV/Å: same for the largest force-component difference


@dataclass
class _Seen:
    pos: tuple[int, int]  # spool position
    labelled: bool
    kind: str  # "added" or "relabelled"


def _group_key(frame: Frame) -> str:
    """Method and reduced composition (TiO2 and Ti8O15 are different groups)."""
    return f"{frame.method}|{reduced_formula(_formula(frame.numbers))}"


def _label_diff(e1, f1, e2, f2, n: int) -> tuple[float | None, float | None]:
    """Energy-per-atom and max force differences where both sides have the label."""
    de = abs(e1 - e2) / max(n, 1) if e1 is not None and e2 is not None else None
    df = None
    if f1 is not None and f2 is not None and np.shape(f1) == np.shape(f2):
        df = float(np.max(np.abs(np.asarray(f1) - np.asarray(f2)))) if np.size(f1) else 0.0
    return de, df


def _is_conflict(de, df) -> bool:
    return (de is not None and de > ENERGY_TOL) or (df is not None and df > FORCE_TOL)


def curate(
    store,
    paths: str | os.PathLike | Sequence[str | os.PathLike] | Sequence[Atoms],
    *,
    format: str | None = None,
    method: str | None = None,
    config_type: str | None = None,
    group: str | None = None,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    virial_key: str | None = None,
    message: str | None = None,
    quarantine: bool = False,
    validators: tuple[list, list] | None = None,
    batch_size: int = 512,
    lock_timeout: float = 600.0,
    progress: Callable[[int, str], None] | None = None,
) -> CurateReport:
    """Ingest structure files into ``store`` as one new version.

    Frames stream in batches (memory stays flat with file size), are validated, deduplicated
    against the store and each other by ``id`` (geometry + method), and committed in a single
    atomic version. Duplicates with labels that differ beyond 1 meV/atom or 1e-3 eV/Å are
    conflicts: the stored labels stay, the conflict is reported with both sources. An
    unlabelled stored structure that arrives with labels is relabelled.

    Parameters
    ----------
    store : pesdata.Store
        Target store.
    paths : path, sequence of paths, or sequence of ase.Atoms
        Structure files (any format ASE reads; aenet XSF), or structures in memory (their
        ``source`` is ``<memory>#i``), e.g. labelled results of a calculation.
    format : str, optional
        Format of all files when extensions are ambiguous (e.g. ``aims-output``).
    method, config_type, group : str, optional
        Metadata for every frame; per-frame ``info`` values are used when not given.
    energy_key, forces_key, stress_key, virial_key : str, optional
        Non-standard label names (see :class:`~pesdata.frames.LabelKeys`).
    message : str, optional
        Commit message (default: the file names).
    quarantine : bool
        Commit the valid frames and list the rejected ones in the report. By default any
        invalid frame rejects the whole run: nothing is written and :class:`ValidationError`
        (carrying the report) is raised.
    validators : (list, list), optional
        Per-frame and population validators (default :func:`default_validators`).
    batch_size : int
        Frames per batch.
    lock_timeout : float
        Seconds to wait for another writer to finish.
    progress : callable, optional
        Called as ``progress(frames_read, path)`` after every batch.

    Returns
    -------
    CurateReport
    """
    if isinstance(paths, (str, os.PathLike, Atoms)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise InputError("no input files given")
    if all(isinstance(p, Atoms) for p in paths):
        inputs: list = [paths]
        paths = [MEMORY]
    else:
        paths = [str(p) for p in paths]
        inputs = paths
        for p in paths:  # fail fast, before taking the lock, on missing/empty/unknown files
            detect_format(p, format)
    frame_checks, population_checks = validators or default_validators()
    keys = LabelKeys(energy=energy_key, forces=forces_key, stress=stress_key, virial=virial_key)
    options = {
        k: v
        for k, v in dict(
            format=format, method=method, config_type=config_type, group=group,
            energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
            virial_key=virial_key,
        ).items()
        if v is not None
    }
    if not message:
        names = [os.path.basename(p) for p in paths]
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        message = "curate " + ", ".join(names[:3]) + more

    with store.writing(timeout=lock_timeout):
        ds = store.table.dataset()
        report = CurateReport(
            version=ds.version, previous_version=ds.version, files=paths, message=message,
            quarantine=quarantine, options=options,
        )
        spool = Spool(store.tmp_dir())
        try:
            positions = _ingest(
                store, ds, spool, inputs, report, frame_checks, keys,
                dict(format=format, method=method, config_type=config_type, group=group),
                batch_size, progress,
            )
            _population(positions, population_checks, spool, report)
            if report.rejected and not quarantine:
                raise ValidationError(
                    f"{len(report.rejected)} of {report.read} frame(s) invalid, nothing written "
                    f"(use --quarantine to commit the valid ones); first: "
                    f"{report.first_rejection()}",
                    report,
                )
            if spool.n_kept:
                meta = {"kind": "curate", **report.summary()}
                meta.pop("version"), meta.pop("committed")
                report.version = store.table.commit(
                    spool.batches(), spool.schema, message=message, meta=meta,
                    append_only=report.relabelled == 0 and store.lock_path is not None,
                )
                report.committed = True
        finally:
            spool.close()
        name = f"v{report.version:06d}-{report.created.replace(':', '').replace('+', 'Z')}"
        store.artefacts.save("curate_report", name, report.to_dict())
    return report


def _frames(source, keys: LabelKeys, meta: dict) -> Iterator[Frame]:
    if isinstance(source, str):
        yield from read_frames(source, keys=keys, **meta)
        return
    meta = {k: v for k, v in meta.items() if k != "format"}
    for i, atoms in enumerate(source):
        yield Frame.from_atoms(atoms, source=f"{MEMORY}#{i}", keys=keys, **meta)


def _ingest(store, ds, spool, inputs, report, frame_checks, keys, meta, batch_size, progress):
    """Read, validate and classify every frame; spool the rows to commit.

    Returns the per-spooled-row statistics used by the population validators.
    """
    seen: dict[str, _Seen] = {}
    stats: dict[str, list] = {
        "pos": [], "group": [], "fmax": [], "energy_per_atom": [], "source": [], "kind": []
    }
    schema = ds.schema
    current = {"path": ""}

    def stream():
        for source in inputs:
            current["path"] = source if isinstance(source, str) else MEMORY
            yield from _frames(source, keys, meta)

    def process(batch: list[Frame], checked: list[list[Issue]]) -> None:
        nonlocal schema
        report.read += len(batch)
        valid = []
        for frame, errors in zip(batch, checked, strict=True):
            if errors:
                report.rejected.append(
                    {"source": frame.source, "reasons": [i.to_dict() for i in errors]}
                )
                continue
            if not frame.has_labels:
                report.unlabelled += 1
            valid.append(frame)
        existing = _existing(store, ds, [f.id for f in valid])
        to_spool: dict[str, tuple[Frame, str]] = {}
        for frame in valid:
            _classify(frame, seen, existing, spool, report, to_spool)
        if to_spool:
            table = frames_to_table([f for f, _ in to_spool.values()], schema)
            schema = table.schema
            for (frame, kind), pos in zip(to_spool.values(), spool.append(table), strict=True):
                seen[frame.id] = _Seen(pos, frame.has_labels, kind)
                _record(stats, frame, pos, kind)
        if progress is not None:
            progress(report.read, current["path"])

    for batch in iter_batches(stream(), batch_size):
        process(batch, [_validate(f, frame_checks) for f in batch])
    return stats


def _validate(frame: Frame, checks) -> list[Issue]:
    """Errors of the per-frame validators (shape problems stop the later checks)."""
    issues: list[Issue] = []
    for check in checks:
        issues.extend(check.check(frame))
        if issues and check.name == "shape":
            break  # later checks assume the shapes are right
    return [i for i in issues if i.severity == "error"]


def _record(stats: dict, frame: Frame, pos: tuple[int, int], kind: str) -> None:
    """Keep the scalars the population (outlier) validators need for a spooled row."""
    fmax = np.nan
    if frame.forces is not None and frame.n_atoms:
        fmax = float(np.sqrt((frame.forces**2).sum(axis=1)).max())
    stats["pos"].append(pos)
    stats["kind"].append(kind)
    stats["group"].append(_group_key(frame))
    stats["source"].append(frame.source)
    stats["fmax"].append(fmax)
    stats["energy_per_atom"].append(
        frame.energy / frame.n_atoms if frame.energy is not None else np.nan
    )


def _existing(store, ds, ids: list[str]) -> dict[str, dict]:
    """Stored rows (energy, forces, n_atoms, source) for the given ids."""
    if not ids:
        return {}
    table = store.table.lookup(ds, ids, ["id", "energy", "forces", "n_atoms", "source"])
    out = {}
    for row in table.to_pylist():
        forces = row["forces"]
        row["forces"] = None if forces is None else np.asarray(forces, dtype=float)
        out[row["id"]] = row
    return out


def _classify(frame: Frame, seen, existing, spool, report, to_spool) -> None:
    """New row, duplicate, conflict or relabel; spool what must be written.

    ``to_spool`` maps id → (frame, kind) for the current batch, kind being ``added`` or
    ``relabelled``.
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
            return
        _maybe_conflict(frame, e, f, src, report)
        return
    row = existing.get(frame.id)
    if row is None:
        report.added += 1
        to_spool[frame.id] = (frame, "added")
        return
    report.duplicates += 1
    stored_labelled = row["energy"] is not None or row["forces"] is not None
    if not stored_labelled and frame.has_labels:
        report.relabelled += 1
        to_spool[frame.id] = (frame, "relabelled")
        return
    _maybe_conflict(frame, row["energy"], row["forces"], row["source"], report)


def _maybe_conflict(frame: Frame, energy, forces, source: str, report) -> None:
    de, df = _label_diff(energy, forces, frame.energy, frame.forces, frame.n_atoms)
    if _is_conflict(de, df):
        report.conflicts.append(
            {
                "id": frame.id,
                "sources": [source, frame.source],
                "energy_per_atom_diff": de,
                "max_force_diff": df,
            }
        )


def _population(stats, population_checks, spool, report) -> None:
    """Run the outlier validators over the spooled rows; reject and drop the outliers."""
    if not stats["pos"] or not population_checks:
        return
    arrays = {
        "group": np.array(stats["group"], dtype=object),
        "fmax": np.array(stats["fmax"], dtype=float),
        "energy_per_atom": np.array(stats["energy_per_atom"], dtype=float),
    }
    flagged: dict[int, list[Issue]] = {}
    for check in population_checks:
        for idx, issue in check.check_population(arrays).items():
            flagged.setdefault(idx, []).append(issue)
    for idx in sorted(flagged):
        pos = stats["pos"][idx]
        if pos in spool.dropped:
            continue
        spool.drop(pos)
        if stats["kind"][idx] == "added":
            report.added -= 1
        else:
            report.relabelled -= 1
        report.rejected.append(
            {"source": stats["source"][idx], "reasons": [i.to_dict() for i in flagged[idx]]}
        )


def iter_batches(items: Iterable, size: int) -> Iterable[list]:
    """Yield lists of at most ``size`` items."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
