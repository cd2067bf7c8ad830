"""``pesdata label run``: label a queue in-process with any ASE calculator.

Every queued structure gets energy, forces and (for a cell periodic in all three directions)
stress, written atomically to ``QUEUE/results/<id>.extxyz``. A structure the calculator cannot
label — it raises (an SCF that does not converge is an exception from the calculator), or it
returns NaN/inf, or a result of the wrong shape — is recorded in
``QUEUE/results/failed/<id>.json`` with the reason, and the others go on. A second run skips
the ids that have a result (and retries the failures), so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
from ase.calculators.calculator import PropertyNotImplementedError

from .._interrupt import check as check_interrupt
from ..atomic import atomic_write
from ..errors import ParameterError
from .calculators import CalculatorSpec, parse_calculator
from .queue import Queue, read_queue

__all__ = ["RunReport", "label_queue"]

CALCULATOR_KEY = "label_calculator"


@dataclass
class RunReport:
    """What one ``label run`` did.

    Attributes
    ----------
    queue : str
        The queue directory.
    calculator : str
        The calculator spec (``emt``, ``lj``, ``MODULE:FACTORY``).
    n_structures : int
        Structures in the queue.
    skipped : int
        Structures already labelled before this run (not recomputed).
    labelled : int
        Structures labelled by this run.
    failed : list of dict
        ``{"id", "reason"}`` of each structure this run could not label.
    status : str
        The queue's status afterwards.
    """

    queue: str
    calculator: str
    n_structures: int
    skipped: int = 0
    labelled: int = 0
    failed: list[dict] = field(default_factory=list)
    status: str = "open"

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def summary(self) -> dict:
        """The JSON ``pesdata label run --json`` prints."""
        return asdict(self)


def _finite_array(value, shape: tuple[int, ...], name: str) -> tuple[np.ndarray | None, str | None]:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None, f"{name} is not numeric ({type(value).__name__})"
    if arr.shape != shape:
        return None, f"{name} has shape {arr.shape}, expected {shape}"
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        return None, f"{name} is not finite ({bad} NaN/inf value(s))"
    return arr, None


def compute(atoms, calc) -> tuple[dict | None, str | None]:
    """Energy, forces and (fully periodic cells) stress of ``atoms`` from ``calc``.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (not modified: a copy is calculated).
    calc : ase calculator

    Returns
    -------
    (dict or None, str or None)
        ``{"energy", "forces", "stress"}`` (stress None for a cell not periodic in 3-D) and
        None; or None and the reason the structure could not be labelled (an exception from
        the calculator, a NaN/inf or misshapen result).
    """
    a = atoms.copy()
    a.calc = calc
    n = len(a)
    try:
        energy = a.get_potential_energy()
        forces = a.get_forces()
        stress = None
        if bool(np.all(a.pbc)):
            try:
                stress = a.get_stress(voigt=True)
            except PropertyNotImplementedError:  # a calculator without stress: E and F stand
                stress = None
        if getattr(a.calc, "converged", True) is False:  # e.g. Vasp, Espresso after reading
            return None, "the calculation did not converge (calculator.converged is False)"
    except Exception as exc:  # noqa: BLE001 - whatever the calculator raises is the reason
        text = str(exc).strip().splitlines()
        return None, f"{type(exc).__name__}: {text[0] if text else 'no message'}"[:500]
    e, why = _finite_array(energy, (), "energy")
    if why is None:
        f, why = _finite_array(forces, (n, 3), "forces")
    if why is None and stress is not None:
        stress, why = _finite_array(stress, (6,), "stress")
    if why is not None:
        return None, why
    return {"energy": float(e), "forces": f, "stress": stress}, None


class _Labeller:
    """One calculator, reused across structures (remade after a failure, or per structure
    when the spec needs it)."""

    def __init__(self, spec: CalculatorSpec) -> None:
        self.spec, self.calc = spec, None

    def __call__(self, sid: str, atoms) -> tuple[str, dict | None, str | None]:
        if self.calc is None or self.spec.per_structure:
            try:
                self.calc = self.spec.make(atoms)
            except Exception as exc:  # noqa: BLE001 - recorded per structure
                return sid, None, f"could not make the calculator: {exc}"
        result, why = compute(atoms, self.calc)
        if why is not None:
            self.calc = None  # a calculator that failed may be in a bad state
        return sid, result, why


_WORKER: dict = {}


def _init_worker(spec: CalculatorSpec) -> None:
    _WORKER["labeller"] = _Labeller(spec)


def _work(sid: str, atoms) -> tuple[str, dict | None, str | None]:
    return _WORKER["labeller"](sid, atoms)


def _store_result(queue: Queue, spec: CalculatorSpec, atoms, result: dict) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator

    from ..io import write_atoms

    a = atoms.copy()
    a.info["method"] = spec.method
    a.info[CALCULATOR_KEY] = spec.spec
    labels = {"energy": result["energy"], "forces": result["forces"]}
    if result["stress"] is not None:
        labels["stress"] = result["stress"]
    a.calc = SinglePointCalculator(a, **labels)
    sid = atoms.info["pesdata_id"]
    write_atoms(queue.result_path(sid), [a], format="extxyz")
    failed = queue.failed_path(sid)
    if failed.exists():
        failed.unlink()


def _store_failure(queue: Queue, spec: CalculatorSpec, sid: str, reason: str) -> None:
    path = queue.failed_path(sid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(json.dumps({"id": sid, "reason": reason, "calculator": spec.spec,
                             "created": datetime.now(timezone.utc).isoformat()}, indent=2))


def label_queue(
    queue: str | os.PathLike | Queue,
    calculator: str | CalculatorSpec,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Label every structure of ``queue`` that has no result yet.

    Parameters
    ----------
    queue : path-like or Queue
        The queue directory.
    calculator : str or CalculatorSpec
        ``emt``, ``lj`` or ``MODULE:FACTORY`` (see :mod:`pesdata.label.calculators`).
    workers : int
        Processes to label in (each makes its own calculator); 1 labels in this process.
    progress : callable, optional
        Called as ``progress(done, total)`` after each structure of this run.

    Returns
    -------
    RunReport
        Failures are in ``report.failed`` (and ``results/failed/<id>.json``), never raised.
        The queue's status becomes ``labelled`` once every structure has a result.

    Raises
    ------
    ParameterError
        An unknown calculator, a factory that raises or returns no calculator (checked once
        before any structure), ``workers`` < 1, or results of another calculator already in
        the queue (labels of two calculators are never mixed; use a fresh queue).
    InputError, ArtefactError
        The queue is missing or damaged.
    """
    spec = parse_calculator(calculator)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ParameterError(f"workers must be an integer >= 1, got {workers!r}")
    q = read_queue(queue)
    done = set(q.labelled_ids())
    previous = q.manifest.get("calculator")
    if done and previous and previous != spec.spec:
        raise ParameterError(
            f"{q.path}: {len(done)} structure(s) were labelled with calculator {previous!r}; "
            f"labelling the rest with {spec.spec!r} would mix two levels of theory")
    report = RunReport(str(q.path), spec.spec, len(q.ids), skipped=len(done))
    labeller = _Labeller(spec)
    if len(done) < len(q.ids) and not spec.per_structure:
        labeller.calc = spec.make()  # a factory that fails or gives no calculator: stop here
    todo = [a for a in q.images() if a.info["pesdata_id"] not in done] if len(done) < len(
        q.ids) else []
    by_id = {a.info["pesdata_id"]: a for a in todo}
    if todo and previous != spec.spec:
        q.update(calculator=spec.spec)
    total = len(todo)

    def record(sid: str, result: dict | None, why: str | None) -> None:
        if why is None:
            _store_result(q, spec, by_id[sid], result)
            report.labelled += 1
        else:
            _store_failure(q, spec, sid, why)
            report.failed.append({"id": sid, "reason": why})
        if progress is not None:
            progress(report.labelled + len(report.failed), total)

    if workers == 1 or total <= 1:
        for atoms in todo:
            check_interrupt()
            record(*labeller(atoms.info["pesdata_id"], atoms))
    else:
        _run_pool(todo, spec, min(int(workers), total), record)
    order = {sid: i for i, sid in enumerate(q.ids)}
    report.failed.sort(key=lambda r: order[r["id"]])
    if len(q.labelled_ids()) == len(q.ids) and q.status == "open":
        q.update(status="labelled")
    report.status = q.status
    return report


def _run_pool(todo: list, spec: CalculatorSpec, workers: int, record) -> None:
    """Label ``todo`` in ``workers`` spawned processes; results are recorded as they come."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(spec,))
    try:
        futures = {pool.submit(_work, a.info["pesdata_id"], a): a.info["pesdata_id"]
                   for a in todo}
        for fut in as_completed(futures):
            sid = futures[fut]
            try:
                result = fut.result()
            except BrokenProcessPool as exc:
                result = (sid, None, f"the worker process died ({exc})")
            record(*result)
    except BaseException:  # Ctrl-C, a failed write: do not label the rest first
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
