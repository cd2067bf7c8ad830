"""The curate run: read → validate → deduplicate → one commit → report."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from ..errors import InputError, ParameterError, ValidationError, from_os_error
from ..frames import Frame, LabelKeys, chemical_formula, frames_to_table, reduced_formula
from ..io import detect_format, read_frames
from ._batches import _parallel_batches, iter_batches, validate_batch
from ._population import flag_outliers
from ._report import CurateReport
from ._spool import Spool
from ._stats import RunStats
from ._unmapped import UnmappedLabels
from ._validators import Issue, default_validators
from .dedup import ENERGY_TOL, FORCE_TOL, RunIds, classify, resolve

__all__ = ["ENERGY_TOL", "FORCE_TOL", "curate", "curate_new"]

MEMORY = "<memory>"


def _population_of(frame: Frame) -> dict:
    """Method, reduced composition and (when the frame has one) config_type of a frame."""
    out = {"method": frame.method, "composition": reduced_formula(chemical_formula(frame.numbers))}
    if frame.config_type:
        out["config_type"] = frame.config_type
    return out


def _group_key(frame: Frame) -> str:
    """The population a frame's outlier statistics are compared within.

    Method and reduced composition (TiO2 and Ti8O15 are different populations), and the
    frame's ``config_type`` when it carries one (5000 K MD snapshots are not compared with
    near-equilibrium cells of the same composition).
    """
    return ", ".join(f"{k} {v!r}" for k, v in _population_of(frame).items())


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
    sources: Sequence[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> CurateReport:
    """Ingest structure files into ``store`` as one new version.

    Frames stream in batches, are validated, deduplicated against the store and each other by
    ``id`` (geometry + method), and committed in a single atomic version. Memory stays flat
    with the number of frames: the rows wait in a spool on disk, and what the run remembers per
    row (its id, its outlier statistics) goes to files beside it, read back in bounded pieces
    (:func:`~pesdata.curate.dedup.resolve`, :mod:`pesdata.curate._population`). Duplicates
    with labels that differ beyond 1 meV/atom or 1e-3 eV/Å are conflicts: the stored labels
    stay, the conflict is reported with both sources. An unlabelled stored structure that
    arrives with labels is relabelled.

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
    sources : sequence of str, optional
        For structures in memory: where each came from (``file#frame``), stored in the
        ``source`` column and quoted in the report instead of ``<memory>#i``.
    scheduler : str, optional
        Run parsing, validation and hashing as Dask tasks, one per input file:
        ``synchronous``, ``threads``, ``processes`` or ``tcp://HOST:PORT`` (see
        :mod:`pesdata.parallel`). Classification, deduplication and the commit stay here, in
        input order, so the report and the rows equal the serial run's. ``None`` (default):
        serial. Structures in memory are always curated serially.
    workers : int, optional
        Local Dask workers (default one per core).

    Returns
    -------
    CurateReport

    Raises
    ------
    ValidationError
        Invalid frames without ``quarantine`` (nothing written; the report is ``.report``).
    InputError
        No input, or a file that is missing, empty, of unknown format or malformed.
    SchemaError
        A frame's per-atom array or ``info`` value does not fit the store's schema.
    ConcurrentWriteError
        Another writer held the store's lock for more than ``lock_timeout`` seconds.
    """
    if isinstance(paths, (str, os.PathLike, Atoms)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise InputError("no input files given")
    if all(isinstance(p, Atoms) for p in paths):
        if sources is not None:
            sources = [str(x) for x in sources]
            if len(sources) != len(paths):
                raise ParameterError(f"sources must name each of the {len(paths)} structures, "
                                     f"got {len(sources)}")
        inputs: list = [(paths, sources)]
        paths = [MEMORY]
    else:
        paths = [str(p) for p in paths]
        inputs = paths
        for p in paths:  # fail fast, before taking the lock, on missing/empty/unknown files
            detect_format(p, format)
    from ..parallel import check_scheduler, check_workers

    scheduler, workers = check_scheduler(scheduler), check_workers(workers)
    if paths == [MEMORY]:
        scheduler = None
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
        with _disk_errors(store):
            spool = Spool(store.tmp_dir())
        unmapped = UnmappedLabels(keys)
        try:
            with _disk_errors(store):
                run = _ingest(
                    store, ds, spool, inputs, report, frame_checks, keys,
                    dict(format=format, method=method, config_type=config_type, group=group),
                    batch_size, progress, unmapped, (scheduler, workers),
                )
            report.warnings = unmapped.warnings()
            with _disk_errors(store):
                _resolve(run, spool, report)
                _population(run.stats, population_checks, spool, report)
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
                    spool.batches, spool.schema, message=message, meta=meta,
                    append_only=report.relabelled == 0 and store.lock_path is not None,
                )
                report.committed = True
        finally:
            spool.close()
        name = f"v{report.version:06d}-{report.created.replace(':', '').replace('+', 'Z')}"
        store.artefacts.save("curate_report", name, report.to_dict())
    return report


@contextlib.contextmanager
def _disk_errors(store):
    """A full disk or a read-only store met while spooling: DiskFull / StoreReadOnly naming the
    store (the spool is removed by the caller's ``finally``)."""
    try:
        yield
    except OSError as exc:
        new = from_os_error(exc, store.root, denied=False)
        if new is not None:
            raise new from exc
        raise


def curate_new(
    uri: str | os.PathLike,
    paths: str | os.PathLike | Sequence[str | os.PathLike] | Sequence[Atoms],
    *,
    storage_options: dict | None = None,
    **options,
) -> CurateReport:
    """Curate into the store at ``uri``, creating it; a store created here for a curate that
    fails is removed again, so a rejected first curate leaves nothing behind.

    This is the call for ``pesdata curate STORE FILE...``. An existing store is curated into as
    :func:`curate` does (nothing is removed on failure). When this call creates the store and
    the curate raises (invalid frames without ``quarantine``, an unreadable file, Ctrl-C, ...),
    the store is deleted before the error propagates — but only while, under the store's write
    lock, it still holds nothing but its empty first version and no artefact (another writer
    that meanwhile committed to it keeps it); a directory that existed before keeps everything
    that was in it.

    Parameters
    ----------
    uri : str or path-like
        Store location (directory or fsspec URL).
    paths
        As for :func:`curate`.
    storage_options : dict, optional
        Object-store options (fsspec and Lance).
    **options
        Keyword options of :func:`curate` (``method``, ``quarantine``, ``energy_key``, ...).

    Returns
    -------
    CurateReport

    Raises
    ------
    PesdataError
        As :func:`curate` raises. The curate's own error is always the one raised: when the
        removal of the new store fails (another writer holds the lock for more than 5 s, an
        I/O error), a :class:`RuntimeWarning` says so and the store is left behind.
    """
    import fsspec

    from ..store import open_store, store_exists

    storage_options = storage_options or {}
    fs, root = fsspec.core.url_to_fs(str(uri), **storage_options)
    root = root.rstrip("/")
    existed = store_exists(uri, **storage_options)
    before = set(fs.ls(root, detail=False)) if not existed and fs.isdir(root) else None
    store = open_store(uri, create=True, **storage_options)
    if existed:
        return curate(store, paths, **options)
    try:
        return curate(store, paths, **options)
    except BaseException:
        # the curate's own error is the one raised: a cleanup that fails (another writer
        # holds the lock, an I/O error, a second Ctrl-C) only warns
        try:
            _remove_if_empty(store, fs, root, before)
        except BaseException as cleanup:  # noqa: BLE001 - never replace the original error
            warnings.warn(
                f"{uri}: could not remove the store created for this failed curate "
                f"({type(cleanup).__name__}: {cleanup}); it may be left behind empty",
                RuntimeWarning,
                stacklevel=2,
            )
        raise


_CLEANUP_LOCK_TIMEOUT = 5.0  # seconds the cleanup of curate_new waits for another writer


def _remove_if_empty(store, fs, root: str, before: set[str] | None) -> None:
    """Delete a store this process created, if still empty (see :func:`curate_new`)."""
    with store.writing(timeout=_CLEANUP_LOCK_TIMEOUT):
        versions = store.table.dataset().versions()
        if len(versions) > 1 or any(fs.ls(p, detail=False) for p in _artefact_dirs(fs, root)):
            return  # someone else wrote to it meanwhile: it is theirs now
        if before is None:  # the directory is ours
            fs.rm(root, recursive=True)
            return
        for path in set(fs.ls(root, detail=False)) - before:
            fs.rm(path, recursive=True)


def _artefact_dirs(fs, root: str) -> list[str]:
    base = f"{root}/artefacts"
    return fs.ls(base, detail=False) if fs.exists(base) else []


def _frames(source, keys: LabelKeys, meta: dict) -> Iterator[Frame]:
    if isinstance(source, str):
        yield from read_frames(source, keys=keys, **meta)
        return
    meta = {k: v for k, v in meta.items() if k != "format"}
    images, names = source
    for i, atoms in enumerate(images):
        name = f"{MEMORY}#{i}" if names is None else names[i]
        yield Frame.from_atoms(atoms, source=name, keys=keys, **meta)


def _ingest(
    store, ds, spool, inputs, report, frame_checks, keys, meta, batch_size, progress, unmapped,
    parallel=(None, None),
):
    """Read, validate and classify every frame against the store; spool the rows to commit.

    Returns the run's logs (:class:`_Run`): the ids that :func:`_resolve` deduplicates and the
    statistics the population validators read.
    """
    run = _Run(RunStats(spool.dir / "stats.bin"), RunIds(spool.dir / "ids.bin"), [])
    stats = run.stats
    schema = ds.schema
    current = {"path": ""}

    def stream():
        for source in inputs:
            current["path"] = source if isinstance(source, str) else MEMORY
            yield from _frames(source, keys, meta)

    def process(batch: list[Frame], checked: list[list[Issue]]) -> None:
        nonlocal schema
        first = report.read
        report.read += len(batch)
        valid = []
        for seq, (frame, errors) in enumerate(zip(batch, checked, strict=True), first):
            unmapped.observe(frame)
            if errors:
                report.rejected.append(
                    {"source": frame.source, "reasons": [i.to_dict() for i in errors]}
                )
                continue
            if not frame.has_labels:
                report.unlabelled += 1
            valid.append((seq, frame))
        existing = _existing(store, ds, [f.id for _, f in valid])
        to_spool: list[tuple[int, Frame, str]] = []
        for seq, frame in valid:
            before = len(report.conflicts)
            kind = classify(frame, existing, report)
            if kind in ("added", "relabelled"):
                to_spool.append((seq, frame, kind))
            run.conflict_seq += [seq] * (len(report.conflicts) - before)
        if to_spool:
            table = frames_to_table([f for _, f, _ in to_spool], schema)
            schema = table.schema
            for (seq, frame, kind), pos in zip(to_spool, spool.append(table), strict=True):
                run.ids.record(frame, pos, kind, seq)
                _record(stats, frame, pos, kind)
        if progress is not None:
            progress(report.read, current["path"])

    if parallel[0] is not None:
        for batch, checked in _parallel_batches(inputs, keys, meta, batch_size, frame_checks,
                                                parallel, current):
            process(batch, checked)
        return run
    # validation of one batch (numpy, scipy's KD-tree: mostly outside the GIL) runs in a worker
    # thread while the next batch is parsed; batches are still processed in order
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pesdata-validate") as pool:
        pending = None
        for batch in iter_batches(stream(), batch_size):
            checked = pool.submit(validate_batch, batch, frame_checks)
            if pending is not None:
                process(pending[0], pending[1].result())
            pending = (batch, checked)
        if pending is not None:
            process(pending[0], pending[1].result())
    return run


@dataclass
class _Run:
    """What a run logs per spooled row (both spilled to the spool directory) and the arrival
    order of each conflict it reported so far."""

    stats: RunStats
    ids: RunIds
    conflict_seq: list[int]


def _resolve(run: _Run, spool, report) -> None:
    """Apply the identity rules across the run's spooled copies (:func:`~.dedup.resolve`) and
    put every conflict in arrival order."""
    found = resolve(run.ids, spool, report, spool.dir / "dedup")
    if found:
        merged = sorted([*zip(run.conflict_seq, report.conflicts, strict=True), *found],
                        key=lambda c: c[0])
        report.conflicts = [entry for _, entry in merged]


def _record(stats: RunStats, frame: Frame, pos: tuple[int, int], kind: str) -> None:
    """Keep the scalars the population (outlier) validators need for a spooled row."""
    fmax = np.nan
    if frame.forces is not None and frame.n_atoms:
        fmax = float(np.sqrt((frame.forces**2).sum(axis=1)).max())
    key = _group_key(frame)
    population = stats.populations.get(key) or _population_of(frame)
    stats.record(pos, kind, key, population, fmax,
                 frame.energy / frame.n_atoms if frame.energy is not None else np.nan)


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


def _population(stats, population_checks, spool, report) -> None:
    """Run the outlier validators over the spooled rows; reject and drop the outliers."""
    if not len(stats) or not population_checks:
        return
    flagged = flag_outliers(stats, population_checks, spool.dir / "population",
                            dropped=spool.dropped)
    for idx in sorted(flagged):
        pos, kind = stats.row(idx)
        source = spool.labels(pos)[3]
        spool.drop(pos)
        if kind == "added":
            report.added -= 1
        else:
            report.relabelled -= 1
        report.rejected.append(
            {"source": source, "reasons": [i.to_dict() for i in flagged[idx]]}
        )
