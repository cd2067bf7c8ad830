"""Several seeded SSW walkers on one structure, in worker processes, merged into one archive.

:func:`run_walkers` is what ``pesdata explore`` calls. Walker ``k`` is an ordinary
:class:`~pesdata.explore.ssw.SSW` with ``seed=seed, walker=k`` — its random numbers come from
``(seed, k, step)`` — writing its frames to ``walker-k.extxyz`` and its checkpoint to
``walker-k.json`` in the work directory. Walkers run **independently** (each one is
deterministic given the seed, whatever the number of processes or their timing) and **share
their minima at the merge**, after all have finished: the walkers' archives are merged in walker
order into one :class:`~pesdata.explore.archive.MinimaArchive`, and a ``minimum`` frame of walker
``k`` whose minimum an earlier walker (lower index) had already found is dropped from the merged
frames. The output is therefore the same for the same arguments, run after run.

With ``walkers > 1`` the walkers run in processes started with the ``spawn`` method (Lance, the
store's table format, is not fork-safe); each process resolves the calculator from its spec
string (:func:`resolve_calculator`) itself. Re-running with the same work directory resumes
every walker from its checkpoint; a walker that has already walked ``steps`` steps walks no more.
A script that calls :func:`run_walkers` with ``walkers > 1`` needs the usual
``if __name__ == "__main__":`` guard of the ``spawn`` start method.

Every walker starts by quenching the same structure, so walkers 1, 2, ... find walker 0's first
minimum again; its frame is kept once (walker 0's), as any other repeated minimum.
"""

from __future__ import annotations

import json
import math
import os
import queue as queue_mod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from .._params import check_int
from ..errors import InputError, ParameterError
from .archive import MinimaArchive

__all__ = ["ExploreCalculator", "merge_walkers", "resolve_calculator", "run_walkers"]

MODEL_CARD = "model_card.json"  # what marks a pesdata model directory (pesdata.train.checkpoint)
RUN_FILE = "run.json"  # the work directory's record of what it is a run of


@dataclass(frozen=True)
class ExploreCalculator:
    """A walking calculator named by a string, resolvable again in any worker process.

    Parameters
    ----------
    spec : str
        ``emt``, ``lj``, ``MODULE:FACTORY`` or the (absolute) path of a pesdata model directory.
    kind : {"builtin", "factory", "model"}
        How ``spec`` is resolved.
    """

    spec: str
    kind: str

    @property
    def method(self) -> str:
        """The level of theory of the frames: ``EMT``, ``LJ``, the ``MODULE:FACTORY`` spec, or
        ``pesdata-model:<absolute path of the model directory>``."""
        if self.kind == "model":
            return f"pesdata-model:{self.spec}"
        from ..label.calculators import CalculatorSpec

        return CalculatorSpec(self.spec).method

    def make(self, atoms: Atoms | None = None):
        """A new calculator for ``atoms`` (``lj``: exact untruncated LJ for a cluster)."""
        if self.kind == "model":
            from ..train.calculator import PesdataCalculator

            return PesdataCalculator(self.spec)
        from ..label.calculators import CalculatorSpec

        return CalculatorSpec(self.spec).make(atoms)


def resolve_calculator(spec: str | ExploreCalculator) -> ExploreCalculator:
    """Check a calculator name before any work and say how to build it.

    Parameters
    ----------
    spec : str
        ``emt`` (ASE's EMT), ``lj`` (ε = σ = 1, untruncated and unshifted: exact for clusters),
        ``MODULE:FACTORY`` (``MODULE.FACTORY()`` returns an ASE calculator; the module is
        imported here to check it), or an existing directory holding a pesdata model (its
        ``model_card.json``; the committee of the loop included). The names ``emt`` and ``lj``
        win over a directory of that name.

    Returns
    -------
    ExploreCalculator

    Raises
    ------
    ParameterError
        Anything else; the message quotes ``spec``.
    """
    if isinstance(spec, ExploreCalculator):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"calculator must be emt, lj, MODEL_DIR or MODULE:FACTORY, "
                             f"got {spec!r}")
    text = spec.strip()
    if text.lower() in ("emt", "lj"):
        return ExploreCalculator(text.lower(), "builtin")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / MODEL_CARD).is_file():
            raise ParameterError(f"calculator {spec!r} is a directory without {MODEL_CARD}: "
                                 "not a pesdata model directory (pesdata train --out)")
        return ExploreCalculator(str(path.resolve()), "model")
    module, sep, name = text.partition(":")
    if not sep or not module or not name.isidentifier():
        raise ParameterError(f"unknown calculator {spec!r}: give emt, lj, a pesdata model "
                             "directory or MODULE:FACTORY (a Python module and a function in "
                             "it returning an ASE calculator)")
    from ..label.calculators import parse_calculator

    parse_calculator(text)  # imports MODULE, finds FACTORY; ParameterError quoting the spec
    return ExploreCalculator(text, "factory")


# -- one walker ----------------------------------------------------------------------------------

def _walk(atoms: Atoms, spec: ExploreCalculator, steps: int, k: int, seed: int, workdir: str,
          params: dict, events=None) -> dict:
    """Run walker ``k`` to ``steps`` steps (resuming its checkpoint); its result as plain data.

    Module level, so that a spawned worker process can run it; ``events`` is a queue (or a
    callable) receiving one dict per finished step.
    """
    from .ssw import SSW

    work = Path(workdir)
    parent = os.getppid() if events is not None and not callable(events) else None
    if parent is not None:
        _die_with_parent()
    lock = _lock_walker(work, k)  # held until this process ends
    calc = spec.make(atoms)
    walk = SSW(atoms, calc, seed=seed, walker=k, trajectory=work / f"walker-{k}.extxyz",
               checkpoint=work / f"walker-{k}.json", **params)

    def send(w) -> None:
        if parent is not None and os.getppid() != parent:
            os._exit(1)  # the run's process is gone: stop at this step's checkpoint
        if events is None:
            return
        event = {"walker": k, "step": w.n_steps_ if w.atoms_ is not None else 0,
                 "evaluations": w.n_evaluations_,
                 "best_energy": w.best_energy_ if math.isfinite(w.best_energy_) else None}
        events(event) if callable(events) else events.put(event)

    send(walk)
    done = walk.n_steps_ if walk.atoms_ is not None else 0
    if walk.atoms_ is None or done < steps:
        walk.run(steps - done, callback=send)
    lock.close()
    return {
        "walker": k,
        "steps": walk.n_steps_,
        "accepted": walk.n_accepted_,
        "evaluations": walk.n_evaluations_,
        "lowest_energy": walk.best_energy_ if math.isfinite(walk.best_energy_) else None,
        "fragmented": walk.n_fragmented_,
        "unconverged": walk.n_unconverged_,
        "failed": walk.n_failed_,
        "stopped": walk.stopped_,
        "minima": [(m.atoms, m.energy, m.step, m.walker, m.evaluations, m.visits)
                   for m in walk.archive_.minima],
    }


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the process that started it dies (a killed
    ``pesdata explore`` must not leave walkers appending to their files behind a re-run)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the per-step parent check still applies
        pass


def _lock_walker(work: Path, k: int):
    """An exclusive lock on walker ``k``'s files for the life of this walk; a walker of
    another run still at work on them is an error, not a silent race."""
    import fcntl

    fh = open(work / f"walker-{k}.lock", "w")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise ParameterError(f"walker {k} in {work} is still running (another pesdata explore "
                             "on the same work directory); wait for it or stop it") from exc
    return fh


# -- the merge -------------------------------------------------------------------------------------

def merge_walkers(results: list[dict], workdir: str | os.PathLike, *, energy_tol: float = 1e-3,
                  distance_tol: float = 0.02) -> tuple[list[Atoms], MinimaArchive, list[int]]:
    """Merge the walkers' archives (walker order) and frames into one output.

    Parameters
    ----------
    results : list of dict
        The walkers' results (``walker`` and ``minima`` rows), in walker order.
    workdir : path-like
        Where ``walker-k.extxyz`` lie.
    energy_tol, distance_tol : float
        Tolerances of the merged archive (those of the walks).

    Returns
    -------
    frames : list of ase.Atoms
        Walker 0's frames, then walker 1's, ..., without the ``minimum`` frames of minima an
        earlier walker had found; each with ``info["group"] = "ssw-w<k>"``.
    archive : MinimaArchive
        The distinct minima of all walkers (visits summed).
    dropped : list of int
        Per walker, how many of its minimum frames were dropped as duplicates.
    """
    import ase.io

    merged = MinimaArchive(energy_tol=energy_tol, distance_tol=distance_tol)
    frames: list[Atoms] = []
    dropped: list[int] = []
    for res in results:
        k = res["walker"]
        repeats: set[int] = set()
        for atoms, energy, step, walker, evaluations, visits in res["minima"]:
            index, new = merged.add(atoms, energy, step=step, walker=walker,
                                    evaluations=evaluations)
            if new:
                merged.minima[index].visits = visits
            else:
                merged.minima[index].visits += visits
                repeats.add(step)
        path = Path(workdir) / f"walker-{k}.extxyz"
        own = ase.io.read(path, ":", format="extxyz") if path.is_file() and (
            path.stat().st_size) else []
        n_dropped = 0
        for frame in own:
            if frame.info.get("phase") == "minimum" and frame.info.get("ssw_step") in repeats:
                n_dropped += 1
                continue
            frame.info["group"] = f"ssw-w{k}"
            frames.append(frame)
        dropped.append(n_dropped)
    return frames, merged, dropped


# -- the driver --------------------------------------------------------------------------------

def _check_workdir(workdir: Path, atoms: Atoms, spec: ExploreCalculator) -> None:
    """Refuse a work directory left by a run of another structure or calculator."""
    from ._ssw_state import atoms_to_dict

    record = {"pesdata_explore_run": 1, "calculator": spec.spec,
              "structure": atoms_to_dict(atoms)}
    path = workdir / RUN_FILE
    if path.is_file() and not any(workdir.glob("walker-*.json")):
        path.unlink()  # a run that failed before its first checkpoint: nothing to resume
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable record of an explore run ({exc})") from exc
        for key in ("calculator", "structure"):
            if saved.get(key) != record[key]:
                raise ParameterError(
                    f"work directory {workdir} holds a run with another {key}; remove it or "
                    "choose another --workdir")
        return
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise ParameterError(f"work directory {workdir} exists and is not an explore run's "
                             "(no run.json): give a new or empty --workdir")
    from ..atomic import atomic_write

    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as fh:
        json.dump(record, fh)


def run_walkers(atoms: Atoms, calculator: str | ExploreCalculator, steps: int, *,
                walkers: int = 1, seed: int = 0, workdir: str | os.PathLike,
                progress: Callable[[int, int, dict], None] | None = None,
                processes: int | None = None, **ssw_params) -> dict:
    """Walk ``walkers`` independent seeded SSW walkers ``steps`` steps each; merge the results.

    Parameters
    ----------
    atoms : ase.Atoms
        The starting structure of every walker.
    calculator : str or ExploreCalculator
        ``emt``, ``lj``, ``MODULE:FACTORY`` or a pesdata model directory
        (see :func:`resolve_calculator`).
    steps : int
        SSW steps per walker (≥ 1), counted from the start: a resumed walker walks only the
        steps it lacks.
    walkers : int
        Number of walkers (≥ 1). One runs in this process, more in ``spawn`` worker processes.
    seed : int
        Seed of every walker (≥ 0); walker ``k`` draws from ``(seed, k, step)``.
    workdir : path-like
        Directory of the walkers' frame files and checkpoints (created; reused to resume).
    progress : callable, optional
        ``progress(done, total, event)`` after every finished step of any walker: steps done
        over all walkers, ``walkers × steps``, and the event (``walker``, ``step``,
        ``evaluations``, ``best_energy``).
    processes : int, optional
        Worker processes for ``walkers > 1`` (default: ``min(walkers, os.cpu_count())``).
    **ssw_params
        Keyword arguments of :class:`~pesdata.explore.ssw.SSW` (``temperature``, ``kind``,
        ``cell``, ``max_evaluations`` — per walker —, ``record_climb``, ...), checked here
        before any walker starts.

    Returns
    -------
    dict
        ``steps``, ``accepted``, ``evaluations``, ``fragmented``, ``unconverged``, ``failed``
        (sums over walkers), ``lowest_energy``, ``distinct_minima`` (merged archive),
        ``duplicate_minima`` (minimum frames dropped at the merge), ``frames`` (merged count),
        ``stopped`` (one reason per walker stopped early by ``max_evaluations``), ``walkers``
        (one row per walker), ``method``, ``seed``; plus ``atoms`` (the merged frames) and
        ``archive`` (the merged :class:`MinimaArchive`), which are not JSON.

    Raises
    ------
    ParameterError
        A bad argument or SSW parameter, an unknown calculator, a work directory of another run
        or a checkpoint written with other settings.
    """
    from .ssw import SSW

    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise ParameterError(f"atoms={atoms!r} is not a non-empty ase.Atoms")
    steps = check_int("steps", steps)
    walkers = check_int("walkers", walkers)
    seed = check_int("seed", seed, 0)
    if processes is not None:
        processes = check_int("processes", processes)
    for key in ("seed", "walker", "trajectory", "checkpoint"):
        if key in ssw_params:
            raise ParameterError(f"{key}= is set by run_walkers per walker, not a parameter")
    spec = resolve_calculator(calculator)
    start = atoms.copy()
    start.calc = None
    calc = spec.make(start)
    check = SSW(start, calc, **ssw_params)  # every parameter checked before any work
    workdir = Path(workdir)
    _check_workdir(workdir, start, spec)

    total = walkers * steps
    done = [0] * walkers

    def on_event(event: dict) -> None:
        done[event["walker"]] = min(event["step"], steps)
        if progress is not None:
            progress(sum(done), total, event)

    if walkers == 1:
        results = [_walk(start, spec, steps, 0, seed, str(workdir), ssw_params, on_event)]
    else:
        results = _run_processes(start, spec, steps, walkers, seed, workdir, ssw_params,
                                 on_event, processes or min(walkers, os.cpu_count() or 1))
    frames, archive, dropped = merge_walkers(results, workdir, energy_tol=check.energy_tol,
                                             distance_tol=check.distance_tol)
    return _summary(results, frames, archive, dropped, spec, seed)


def _run_processes(atoms, spec, steps, walkers, seed, workdir, params, on_event,
                   processes) -> list[dict]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        events = manager.Queue()
        with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
            futures = [pool.submit(_walk, atoms, spec, steps, k, seed, str(workdir), params,
                                   events) for k in range(walkers)]
            pending = set(futures)
            try:
                while pending:
                    _drain(events, on_event)
                    _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for k, f in enumerate(futures):  # the first walker error stops the run
                        if f.done() and not f.cancelled() and f.exception() is not None:
                            raise _named(f.exception(), k)
                _drain(events, on_event)
            except BaseException:
                # cancel() cannot stop a running walker: end the worker processes, so an
                # error (or Ctrl-C) stops the run now, not when the healthy walkers finish
                for f in futures:
                    f.cancel()
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            return [f.result() for f in futures]


def _named(exc: BaseException, k: int) -> BaseException:
    """``exc`` with "walker k: " before its message (the same class when it allows it)."""
    try:
        named = type(exc)(f"walker {k}: {exc}")
    except Exception:  # noqa: BLE001 - a class with another signature: raised as it is
        return exc
    named.__cause__ = exc
    return named


def clean_workdir(workdir: str | os.PathLike) -> None:
    """Remove what a run wrote in ``workdir`` (``run.json``, ``walker-k.extxyz`` and
    ``walker-k.json``, ``walker-k.lock``), and the directory itself when nothing else is left."""
    work = Path(workdir)
    if not (work / RUN_FILE).is_file():
        return
    for path in work.iterdir():
        name = path.name
        if path.is_file() and (name == RUN_FILE or (name.startswith("walker-") and (
                name.endswith(".extxyz") or name.endswith(".json") or name.endswith(".lock")))):
            path.unlink()
    try:
        work.rmdir()
    except OSError:  # other files are there: they are not ours to remove
        pass


def _drain(events, on_event) -> None:
    while True:
        try:
            event = events.get_nowait()
        except queue_mod.Empty:
            return
        on_event(event)


def _summary(results: list[dict], frames: list[Atoms], archive: MinimaArchive,
             dropped: list[int], spec: ExploreCalculator, seed: int) -> dict:
    rows = []
    for res, n_dropped in zip(results, dropped, strict=True):
        row = {k: v for k, v in res.items() if k != "minima"}
        row["distinct_minima"] = len(res["minima"])
        row["frames"] = sum(1 for f in frames if f.info.get("walker") == res["walker"])
        row["duplicate_minima"] = n_dropped
        rows.append(row)
    energies = [r["lowest_energy"] for r in rows if r["lowest_energy"] is not None]
    lowest = archive.lowest()
    return {
        "method": spec.method,
        "seed": seed,
        "n_walkers": len(rows),
        "steps": sum(r["steps"] for r in rows),
        "accepted": sum(r["accepted"] for r in rows),
        "evaluations": sum(r["evaluations"] for r in rows),
        # the archive's lowest: a minimum that is written out (a walker's best_energy_ may
        # be a revisit of an archived minimum, a hair lower, that is not written again)
        "lowest_energy": (lowest.energy if lowest is not None
                          else min(energies) if energies else None),
        "lowest_walker": None if lowest is None else lowest.walker,
        "distinct_minima": len(archive),
        "duplicate_minima": sum(dropped),
        "fragmented": sum(r["fragmented"] for r in rows),
        "unconverged": sum(r["unconverged"] for r in rows),
        "failed": sum(r["failed"] for r in rows),
        "frames": len(frames),
        "stopped": [f"walker {r['walker']}: {r['stopped']}" for r in rows if r["stopped"]],
        "walkers": rows,
        "atoms": frames,
        "archive": archive,
    }
