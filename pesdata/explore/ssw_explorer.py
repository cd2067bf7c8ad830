"""Stochastic surface walking as a loop explorer: one seeded SSW walk per seed structure.

:class:`SSWExplorer` is the :class:`~pesdata.explore.Explorer` face of
:class:`~pesdata.explore.ssw.SSW` — what ``explore: {kind: ssw, params: {...}}`` in a loop
config runs, with the current committee's :class:`~pesdata.train.calculator.PesdataCalculator`
walking and ``select`` screening what it visits (the SSW-NN self-learning cycle). For seed
structure ``i`` it walks ``SSW(seeds[i], calculator, seed=seed, walker=i, **params)`` for
``steps`` SSW steps, one step at a time, and yields the frames the walk records in that step
(the minimum of the start, every ``record_climb``-th climbing structure, every
``record_quench``-th quench step and each new distinct minimum), then forgets them, so memory
stays flat however long the walk. A recorded frame with the very geometry of the next one in
its step (a climb that ended below the start and needed no quench) is yielded once, as the
later one (the minimum).

Every yielded frame is a new :class:`ase.Atoms` with numbers, positions, cell and pbc only (no
calculator: the labeller labels it later) and ``info``:

* ``explorer`` — ``"ssw"``;
* ``group`` — ``"ssw-<i>"``: one group per walk (seed structure ``i``);
* ``config_type`` — ``"ssw-climb"``, ``"ssw-quench"`` or ``"ssw-minimum"``;
* ``step`` and ``ssw_step`` — the SSW step that made it (0: the quench of the start);
* ``phase`` — ``climb``, ``quench`` or ``minimum``; ``accepted`` — whether the step's minimum
  was accepted by Metropolis;
* ``walker`` and ``seed_index`` — ``i``;
* ``walk_energy`` — the energy of the walking calculator there (eV; a model's prediction, not
  a label, hence not ``energy``).

A walk stops early — the frames yielded before stand, ``{"group", "step", "reason"}`` goes to
``stopped_`` and the next seed's walk starts — when its ``max_evaluations`` is spent, when the
calculator raises or returns NaN/inf in a step (SSW rejects that step; the walk then stops), or
when even the quench of its start fails. ``n_calls_`` counts the energy/force evaluations of
all walks (dimer rotations included, as SSW counts them).

Determinism: walk ``i`` draws its random numbers from ``(seed, i, step)`` (SSW's own seeding),
so the same ``seed``, seeds and calculator give the same frames.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Sequence

import ase
import numpy as np

from .._params import check_int
from ..errors import ParameterError
from ._base import Explorer, check_inputs

__all__ = ["SSWExplorer"]

#: SSW arguments the explorer sets itself (per walk), refused among ``ssw_params``.
_OWN = {"atoms": "the seed structure", "calculator": "explore()'s calculator",
        "seed": "explore()'s seed", "walker": "the seed structure's index",
        "trajectory": "the explorer (frames are yielded)",
        "checkpoint": "the explorer (the loop resumes from finished steps)"}


class SSWExplorer(Explorer):
    """Stochastic surface walking (:class:`~pesdata.explore.ssw.SSW`) from each seed structure.

    Parameters
    ----------
    steps : int
        SSW steps per seed walk (≥ 1), besides the quench of the start.
    max_evaluations : int, optional
        Cap on the energy/force evaluations of each walk (≥ 1; None: none).
    record_climb : int
        Yield every ``record_climb``-th climbing structure of a step (0: none).
    record_quench : int
        Yield every ``record_quench``-th quench step (0: none). New distinct minima are always
        yielded.
    **ssw_params
        Any other keyword of :class:`~pesdata.explore.ssw.SSW` (``kind``, ``temperature``,
        ``height``, ``width``, ``n_gaussians``, ``mixing``, ``cell``, ``fmax``, ...), passed to
        every walk. ``kind="auto"`` (the default) picks the cluster, bulk or slab defaults per
        seed from its periodicity; bulk walks the cell (``cell=True``), which needs a
        calculator with stress (``PesdataCalculator`` gives it for fully periodic cells).

    Attributes
    ----------
    n_calls_ : int
        Energy/force evaluations of the last :meth:`explore` (so far, while it runs).
    stopped_ : list of dict
        One ``{"group", "step", "reason"}`` per walk that stopped early.
    walks_ : list of dict
        One row per finished walk: group, steps, accepted, evaluations, best_energy, minima
        (distinct minima found), fragmented, unconverged, failed.

    Examples
    --------
    >>> from ase.cluster import Icosahedron
    >>> from ase.calculators.emt import EMT
    >>> ssw = SSWExplorer(steps=2, max_evaluations=400)
    >>> frames = list(ssw.explore(EMT(), [Icosahedron("Cu", 2)], seed=1))   # doctest: +SKIP
    >>> frames[0].info["config_type"], frames[0].info["group"]              # doctest: +SKIP
    ('ssw-minimum', 'ssw-0')
    """

    name = "ssw"

    def __init__(self, steps: int = 10, max_evaluations: int | None = None,
                 record_climb: int = 1, record_quench: int = 0, **ssw_params) -> None:
        self.steps = steps
        self.max_evaluations = max_evaluations
        self.record_climb = record_climb
        self.record_quench = record_quench
        self.ssw_params = ssw_params

    # -- validation ----------------------------------------------------------------------------

    def _check_params(self) -> None:
        from .ssw import SSW

        check_int("steps", self.steps, 1)
        allowed = set(inspect.signature(SSW.__init__).parameters) - {"self"}
        for key in self.ssw_params:
            if key in _OWN:
                raise ParameterError(f"{key}={self.ssw_params[key]!r} cannot be given to the "
                                     f"ssw explorer: it is set by {_OWN[key]}")
            if key not in allowed:
                known = sorted(allowed - set(_OWN) - {"max_evaluations", "record_climb",
                                                      "record_quench"})
                raise ParameterError(f"{key}={self.ssw_params[key]!r} is not a parameter of "
                                     f"the ssw explorer (steps, max_evaluations, record_climb, "
                                     f"record_quench or an SSW keyword: {', '.join(known)})")

    def _walks(self, calculator, seeds: list[ase.Atoms], seed: int) -> list:
        """One SSW per seed, built now so that every parameter is checked before any work."""
        from .ssw import SSW
        from .surface import Surface

        walks = []
        for i, atoms in enumerate(seeds):
            walk = SSW(atoms, calculator, seed=seed, walker=i,
                       max_evaluations=self.max_evaluations, record_climb=self.record_climb,
                       record_quench=self.record_quench, **self.ssw_params)
            if walk.cell and "stress" not in getattr(calculator, "implemented_properties",
                                                     ("stress",)):
                raise ParameterError(
                    f"cell=True (kind={walk.kind!r}) walks the cell, which needs the stress; "
                    f"calculator={calculator!r} does not implement it: give cell=False")
            probe = atoms.copy()
            probe.calc = None
            surface = Surface(probe, variable_cell=walk.cell)
            direction = np.random.default_rng(0).normal(size=surface.ndofs())
            if np.linalg.norm(surface.project(direction)) < 1e-12:
                raise ParameterError(f"seeds[{i}] ({atoms.get_chemical_formula()}) has nothing "
                                     "to walk: every degree of freedom is fixed")
            walks.append(walk)
        return walks

    # -- the exploration -----------------------------------------------------------------------

    def explore(
        self, calculator, seeds: Sequence[ase.Atoms] | ase.Atoms, seed: int = 0
    ) -> Iterator[ase.Atoms]:
        """Yield the frames recorded by one SSW walk per seed structure, step by step.

        Parameters are checked here, before the first frame (the returned iterator is lazy).

        Parameters
        ----------
        calculator : ase calculator
            Walks the surface; attached to copies of the seeds (which stay unchanged).
        seeds : sequence of ase.Atoms or ase.Atoms
            Starting structures (a single Atoms counts as one seed).
        seed : int
            Seed (≥ 0) of every walk.

        Returns
        -------
        iterator of ase.Atoms
            Frames without calculator, in the order seed, step, phase.

        Raises
        ------
        ParameterError
            A parameter (an unknown keyword included), the calculator, the seeds or ``seed``
            is invalid.
        """
        self._check_params()
        seeds, seed = check_inputs(calculator, seeds, seed)
        walks = self._walks(calculator, seeds, seed)
        self.n_calls_ = 0
        self.stopped_: list[dict] = []
        self.walks_: list[dict] = []
        return self._run(calculator, walks)

    def _run(self, calculator, walks: list) -> Iterator[ase.Atoms]:
        for i in range(len(walks)):
            walk, walks[i] = walks[i], None  # the finished walks' archives can go
            yield from self._walk(calculator, walk, i)

    def _walk(self, calculator, walk, i: int) -> Iterator[ase.Atoms]:
        from .surface import EvaluationFailed

        group = f"ssw-{i}"
        before = self.n_calls_
        if hasattr(calculator, "reset"):
            calculator.reset()  # no results cached from another structure
        reason = None
        for _ in range(int(self.steps)):
            try:
                walk.run(1)
            except EvaluationFailed as exc:  # only the quench of the start raises it
                # SSW counts the evaluations of a failed start only in its private tally
                self.n_calls_ = before + int(getattr(walk, "_evals", walk.n_evaluations_))
                reason = f"the quench of the start failed: {exc}"
                break
            self.n_calls_ = before + walk.n_evaluations_
            frames, walk.frames_ = walk.frames_, []
            for j, frame in enumerate(frames):
                if j + 1 < len(frames) and _same_geometry(frame, frames[j + 1]):
                    continue  # e.g. a climb that ended below the start, quenched in place
                yield _frame(frame, group, i)
            last = walk.history_[-1] if walk.history_ else {}
            if walk.stopped_:
                reason = walk.stopped_
            elif str(last.get("reason", "")).startswith("failed"):
                reason = f"step {last['step']} {last['reason']}"
            if reason is not None:
                break
        if reason is not None:
            step = walk.history_[-1]["step"] if walk.history_ else 0
            self.stopped_.append({"group": group, "step": int(step), "reason": reason})
        self.walks_.append({
            "group": group, "steps": int(walk.n_steps_), "accepted": int(walk.n_accepted_),
            "evaluations": self.n_calls_ - before,
            "best_energy": float(walk.best_energy_) if math.isfinite(walk.best_energy_)
            else None, "minima": len(walk.archive_), "fragmented": int(walk.n_fragmented_),
            "unconverged": int(walk.n_unconverged_), "failed": int(walk.n_failed_)})


def _same_geometry(a: ase.Atoms, b: ase.Atoms) -> bool:
    return bool(np.array_equal(a.positions, b.positions)
                and np.array_equal(a.cell.array, b.cell.array))


def _frame(frame: ase.Atoms, group: str, i: int) -> ase.Atoms:
    """A new Atoms with the geometry of a recorded SSW frame and the explorer's info."""
    out = ase.Atoms(numbers=frame.numbers.copy(), positions=frame.positions.copy(),
                    cell=frame.cell.array.copy(), pbc=frame.pbc.copy())
    info = frame.info
    out.info.update({"explorer": SSWExplorer.name, "group": group,
                     "config_type": f"ssw-{info['phase']}", "step": int(info["ssw_step"]),
                     "ssw_step": int(info["ssw_step"]), "phase": info["phase"],
                     "accepted": bool(info["accepted"]), "walker": i, "seed_index": i,
                     "walk_energy": float(frame.calc.results["energy"])})
    return out
