"""Stochastic surface walking (SSW) with any ASE calculator, for clusters, slabs and crystals.

The method of Shang & Liu (J. Chem. Theory Comput. 9, 1838 (2013)) with the variable-cell
extension of Shang, Zhang & Liu (Phys. Chem. Chem. Phys. 16, 17845 (2014)). One SSW step from
the current minimum R⁰ (energy E⁰):

1. **Direction.** A random walking direction ``N⁰ = normalise(N_g + λ N_l)``: ``N_g`` a
   Maxwell–Boltzmann-like global displacement (Gaussian, scaled by 1/√mass), ``N_l`` a local one
   pulling a random atom and one of its neighbours together, ``λ`` uniform in ``mixing``. With a
   variable cell a random symmetric strain direction joins it, weighted by ``cell_mixing``.
2. **Climb.** For ``n = 1 … H`` (``n_gaussians``): rotate the direction towards a soft mode with
   the biased dimer (:func:`~pesdata.explore.dimer.biased_lowest_mode`, bias ``dimer_bias`` ×
   the curvature along ``N⁰``), add a Gaussian ``w·exp(−((R − Rⁿ⁻¹)·Nⁿ)² / (2 ds²))`` centred at
   the current structure (``w = max(height, height_scale · C · ds²)`` with ``C`` the
   curvature along ``Nⁿ``, so that a stiff mode is climbed as surely as a soft one), displace
   by ``ds`` along ``Nⁿ`` and relax on the biased surface (``climb_steps`` optimiser steps at
   most). Stop early when the true energy falls below E⁰ or, with ``descent_stop``, when it
   falls below the previous Gaussian's (a barrier has been crossed).
3. **Quench.** Remove every Gaussian and relax on the true surface to ``fmax``.
4. **Accept** the new minimum with the Metropolis probability ``min(1, exp(−ΔE / k_B T))``.
   A quench that fails to converge, a cluster that falls apart (:func:`is_fragmented` at 1.5 ×
   the start's nearest-neighbour distance) or a calculator failure rejects the step; each is
   counted.

Coordinates are those of :class:`~pesdata.explore.surface.Surface`: Cartesian positions, or with
``cell=True`` the coordinates of ASE's :class:`~ase.filters.FrechetCellFilter`, so that the
lattice is walked alongside the atoms. ASE constraints (``FixAtoms`` in a slab) are respected
by the optimiser and projected out of every direction.

Every energy/force evaluation counts, dimer rotations included; ``max_evaluations`` caps the
total. Each step draws its random numbers from ``numpy.random.default_rng([seed, walker,
step])``, so a walk is reproducible from its seed and a checkpointed walk resumes bit for bit.

Defaults per kind of system (:data:`DEFAULTS`; ``kind="auto"`` picks cluster for no periodic
direction, bulk for three, slab otherwise)::

    kind     temperature  height  width  n_gaussians  mixing      cell
    cluster  1500 K       0.5 eV  0.6 Å  10           (0.1, 1.5)  no
    bulk     2000 K       0.5 eV  0.6 Å  8            (0.1, 1.0)  yes
    slab     1500 K       0.4 eV  0.5 Å  10           (0.1, 1.5)  no
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase import Atoms, units

from .._params import check_float, check_int
from ..errors import ParameterError
from . import _ssw_state as state_io
from .archive import MinimaArchive, is_degenerate_cell, is_fragmented, nearest_neighbour_distance
from .dimer import biased_lowest_mode
from .moves import metropolis, one_blas_thread, random_direction
from .surface import BudgetExhausted, EvaluationFailed, GaussianBias, Surface

__all__ = ["DEFAULTS", "SSW", "metropolis"]

DEFAULTS: dict[str, dict] = {
    "cluster": {"temperature": 1500.0, "height": 0.5, "width": 0.6, "n_gaussians": 10,
                "mixing": (0.1, 1.5), "cell": False},
    "bulk": {"temperature": 2000.0, "height": 0.5, "width": 0.6, "n_gaussians": 8,
             "mixing": (0.1, 1.0), "cell": True},
    "slab": {"temperature": 1500.0, "height": 0.4, "width": 0.5, "n_gaussians": 10,
             "mixing": (0.1, 1.5), "cell": False},
}
_OPTIMIZERS = ("BFGS", "LBFGS", "FIRE")


class SSW:
    """A stochastic surface walker, run like ASE's ``BasinHopping``: ``SSW(...).run(steps)``.

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure (copied; its constraints are kept). Quenched first (step 0).
    calculator : ase calculator
        Energy and forces (and stress with ``cell=True``).
    kind : {"auto", "cluster", "bulk", "slab"}
        Picks the defaults of the parameters left as None.
    temperature : float, optional
        Metropolis temperature in K (> 0).
    height : float, optional
        Smallest Gaussian height ``w`` in eV (> 0).
    height_scale : float
        Each Gaussian is ``max(height, height_scale · C · ds²)`` high, ``C`` the curvature of
        the biased surface along the rotated direction: with ``height_scale`` > 1 the
        Gaussian turns that curvature negative and pushes the structure about ``ds`` along
        ``N`` however stiff the mode (≥ 0).
    descent_stop : bool
        Also stop climbing as soon as the true energy drops from one Gaussian to the next.
    width : float, optional
        Gaussian width and displacement ``ds`` in Å (> 0).
    n_gaussians : int, optional
        Largest number of Gaussians per step, ``H`` (≥ 1).
    mixing : (float, float), optional
        Range of ``λ``, the weight of the local (pair) direction (0 ≤ lo ≤ hi).
    cell : bool, optional
        Walk the cell too (needs three periodic directions and a calculator with stress).
    cell_mixing : float
        Weight of the random strain in the direction (≥ 0; only with ``cell``).
    rotations : int
        Biased-dimer rotations per Gaussian (≥ 0).
    dimer_bias : float
        Bias ``a`` of the rotation as a fraction of the curvature along ``N⁰`` (≥ 0).
    dimer_step : float
        Finite-difference step of the curvatures, Å (> 0).
    fmax : float
        Force threshold of the quench, eV/Å (> 0).
    climb_fmax : float
        Force threshold of the relaxations on the biased surface, eV/Å (> 0).
    climb_steps, quench_steps : int
        Largest number of optimiser steps per biased relaxation / per quench (≥ 1).
    optimizer : {"BFGS", "LBFGS", "FIRE"}
        ASE optimiser of every relaxation.
    max_evaluations : int, optional
        Cap on energy/force evaluations over the whole walk (≥ 1; None: none).
    record_climb : int
        Record every ``record_climb``-th climbing structure (0: none).
    record_quench : int
        Record every ``record_quench``-th quench step (0: none). New distinct minima are always
        recorded.
    trajectory : str or Path, optional
        extxyz file the recorded frames are appended to (after each step). Without it they
        collect in :attr:`frames_`.
    checkpoint : str or Path, optional
        JSON file rewritten after each step; if it exists, the walk resumes from it.
    seed : int
        Seed (≥ 0). walker : int — index of this walker among several (≥ 0).
    energy_tol, distance_tol : float
        Tolerances of the minima archive (eV, Å).

    Attributes
    ----------
    archive_ : MinimaArchive
        Distinct minima found.
    energy_, atoms_ :
        The current minimum. ``best_energy_`` / ``best_atoms_``: the lowest found.
    n_steps_, n_accepted_, n_evaluations_, n_fragmented_, n_unconverged_, n_failed_ : int
        Counters.
    history_ : list of dict
        One row per step (step, evaluations, energy, accepted, reason, best_energy).
    frames_ : list of ase.Atoms
        Recorded frames when no ``trajectory`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from ase import Atoms
    >>> from pesdata.explore.lj import LennardJonesCluster
    >>> start = Atoms("Ne13", positions=np.random.default_rng(0).uniform(0, 2.2, (13, 3)))
    >>> walk = SSW(start, LennardJonesCluster(), temperature=5000, seed=1).run(30)
    >>> round(walk.best_energy_, 4), walk.n_steps_          # LJ13's global minimum: −44.326801
    (-44.3268, 30)
    """

    def __init__(self, atoms: Atoms, calculator, *, kind: str = "auto",
                 temperature: float | None = None, height: float | None = None,
                 width: float | None = None, n_gaussians: int | None = None,
                 mixing: tuple[float, float] | None = None, cell: bool | None = None,
                 height_scale: float = 1.0, descent_stop: bool = True,
                 cell_mixing: float = 1.0, rotations: int = 3, dimer_bias: float = 0.5,
                 dimer_step: float = 0.01, fmax: float = 0.05, climb_fmax: float = 0.3,
                 climb_steps: int = 10, quench_steps: int = 500, optimizer: str = "BFGS",
                 max_evaluations: int | None = None, record_climb: int = 1,
                 record_quench: int = 0, trajectory: str | Path | None = None,
                 checkpoint: str | Path | None = None, seed: int = 0, walker: int = 0,
                 energy_tol: float = 1e-3, distance_tol: float = 0.02) -> None:
        if not isinstance(atoms, Atoms) or len(atoms) == 0:
            raise ParameterError(f"atoms={atoms!r} is not a non-empty ase.Atoms")
        if calculator is None or not hasattr(calculator, "get_potential_energy"):
            raise ParameterError(f"calculator={calculator!r} is not an ASE calculator")
        self.kind = _kind(atoms) if kind == "auto" else kind
        if self.kind not in DEFAULTS:
            raise ParameterError(f"kind={kind!r} must be 'auto' or one of {sorted(DEFAULTS)}")
        d = DEFAULTS[self.kind]
        self.temperature = check_float("temperature", d["temperature"] if temperature is None
                                       else temperature, low=0, low_open=True)
        self.height = check_float("height", d["height"] if height is None else height,
                                  low=0, low_open=True)
        self.width = check_float("width", d["width"] if width is None else width,
                                 low=0, low_open=True)
        self.n_gaussians = check_int("n_gaussians", d["n_gaussians"] if n_gaussians is None
                                     else n_gaussians)
        self.mixing = _mixing(d["mixing"] if mixing is None else mixing)
        self.cell = bool(d["cell"] if cell is None else cell)
        if self.cell and not all(atoms.pbc):
            raise ParameterError(f"cell=True needs a cell periodic in all three directions; "
                                 f"this structure has pbc={atoms.pbc.tolist()}")
        self.height_scale = check_float("height_scale", height_scale, low=0)
        if not isinstance(descent_stop, bool):
            raise ParameterError(f"descent_stop={descent_stop!r} must be True or False")
        self.descent_stop = descent_stop
        self.cell_mixing = check_float("cell_mixing", cell_mixing, low=0)
        self.rotations = check_int("rotations", rotations, 0)
        self.dimer_bias = check_float("dimer_bias", dimer_bias, low=0)
        self.dimer_step = check_float("dimer_step", dimer_step, low=0, low_open=True)
        self.fmax = check_float("fmax", fmax, low=0, low_open=True)
        self.climb_fmax = check_float("climb_fmax", climb_fmax, low=0, low_open=True)
        self.climb_steps = check_int("climb_steps", climb_steps)
        self.quench_steps = check_int("quench_steps", quench_steps)
        if optimizer not in _OPTIMIZERS:
            raise ParameterError(f"optimizer={optimizer!r} must be one of {list(_OPTIMIZERS)}")
        self.optimizer = optimizer
        self.max_evaluations = (None if max_evaluations is None
                                else check_int("max_evaluations", max_evaluations))
        self.record_climb = check_int("record_climb", record_climb, 0)
        self.record_quench = check_int("record_quench", record_quench, 0)
        self.seed = check_int("seed", seed, 0)
        self.walker = check_int("walker", walker, 0)
        self.energy_tol = check_float("energy_tol", energy_tol, low=0)
        self.distance_tol = check_float("distance_tol", distance_tol, low=0)
        self.trajectory = None if trajectory is None else Path(trajectory)
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.calculator = calculator
        self._start = atoms.copy()
        self._start.calc = None

        self.archive_ = MinimaArchive(energy_tol=self.energy_tol,
                                      distance_tol=self.distance_tol)
        self.atoms_: Atoms | None = None
        self.energy_ = math.nan
        self.best_atoms_: Atoms | None = None
        self.best_energy_ = math.inf
        self.n_steps_ = self.n_accepted_ = self.n_evaluations_ = 0
        self.n_fragmented_ = self.n_unconverged_ = self.n_failed_ = 0
        self.history_: list[dict] = []
        self.frames_: list[Atoms] = []
        self.stopped_: str | None = None
        self._bond = math.nan
        self._frames_length = 0
        self._results: dict | None = None  # the calculator's results at the current minimum
        if self.checkpoint is not None and self.checkpoint.exists():
            self._resume()

    # -- public ---------------------------------------------------------------------------------

    def params(self) -> dict:
        """The settings that define the walk (what a checkpoint must agree with)."""
        keys = ("kind", "temperature", "height", "height_scale", "descent_stop", "width",
                "n_gaussians", "cell",
                "cell_mixing", "rotations", "dimer_bias", "dimer_step", "fmax", "climb_fmax",
                "climb_steps", "quench_steps", "optimizer", "record_climb", "record_quench",
                "seed", "walker", "energy_tol", "distance_tol")
        out = {k: getattr(self, k) for k in keys}
        out["mixing"] = list(self.mixing)
        out["numbers"] = self._start.numbers.tolist()
        return out

    def run(self, steps: int, callback: Callable[[SSW], None] | None = None) -> SSW:
        """Walk ``steps`` more SSW steps (the quench of the start counts as step 0).

        Stops early, with the reason in :attr:`stopped_`, when ``max_evaluations`` is spent;
        the step under way is then discarded (the state stays at the last finished step).
        ``callback(self)`` is called after every step.
        """
        steps = check_int("steps", steps, 0)
        self.stopped_ = None
        with one_blas_thread():
            self._run(steps, callback)
        return self

    def _run(self, steps: int, callback) -> None:
        try:
            if self.atoms_ is None:
                self._initial_quench()
                self._finish_step(callback)
            for _ in range(steps):
                self._step(self.n_steps_ + 1)
                self._finish_step(callback)
        except BudgetExhausted:
            self.stopped_ = (f"the budget of {self.max_evaluations} energy/force evaluations "
                             "is spent")
            self.n_evaluations_ = self._evals  # the discarded step's evaluations count too
        except EvaluationFailed as exc:  # only the start's quench raises: nothing to walk from
            self.stopped_ = f"the start could not be quenched: {exc}"
            self.n_evaluations_ = self._evals
            raise

    # -- one step --------------------------------------------------------------------------------

    def _surface(self, atoms: Atoms, known: dict | None = None) -> Surface:
        atoms.calc = self.calculator
        budget = None if self.max_evaluations is None else self.max_evaluations - self._evals
        return Surface(atoms, variable_cell=self.cell, max_evaluations=budget, known=known)

    def _relax(self, surface: Surface, fmax: float, steps: int,
               observer: Callable[[int], None] | None = None) -> bool:
        import ase.optimize

        opt = getattr(ase.optimize, self.optimizer)(surface, logfile=None)
        if observer is not None:
            opt.attach(lambda: observer(opt.nsteps))
        converged = bool(opt.run(fmax=fmax, steps=steps))
        surface.true_energy_forces()  # the final structure is evaluated, and counted
        return converged

    def _initial_quench(self) -> None:
        atoms = self._start.copy()
        self._pending: list[Atoms] = []
        self._evals = self.n_evaluations_
        surface = self._surface(atoms)
        try:
            converged = self._relax(surface, self.fmax, self.quench_steps)
            energy = surface.true_energy_forces()[0]
        finally:
            self._evals += surface.n_evaluations
            self.n_evaluations_ = self._evals
        if not converged:
            raise EvaluationFailed(f"the start did not relax to fmax={self.fmax} within "
                                   f"quench_steps={self.quench_steps} optimiser steps")
        self._bond = 1.5 * nearest_neighbour_distance(atoms)
        start_reason = "start"
        if is_fragmented(atoms, self._bond):
            self.n_fragmented_ += 1
            start_reason = "start (fragmented)"
        self._pending.append(self._snapshot(atoms, surface, 0, "minimum", True))
        self.archive_.add(atoms, energy, step=0, walker=self.walker, evaluations=self._evals)
        self._accept(atoms, energy, surface)
        self.history_.append({"step": 0, "evaluations": self._evals, "energy": energy,
                              "accepted": True, "reason": start_reason, "new": True,
                              "best_energy": self.best_energy_})

    def _step(self, k: int) -> None:
        rng = np.random.default_rng([self.seed, self.walker, k])
        self._pending = []
        self._evals = self.n_evaluations_
        atoms = state_io.atoms_from_dict(state_io.atoms_to_dict(self.atoms_), self._start)
        surface = self._surface(atoms, known=self._results)
        reason, energy, accepted, new = "", math.nan, False, False
        try:
            converged = self._climb_and_quench(surface, rng, k)
            energy = surface.true_energy_forces()[0]
            if not converged:
                reason = "quench did not converge"
                self.n_unconverged_ += 1
            elif is_fragmented(atoms, self._bond):
                reason = "fragmented"
                self.n_fragmented_ += 1
            elif self._degenerate(atoms):
                reason = "degenerate cell"
                self.n_failed_ += 1
        except EvaluationFailed as exc:
            reason = f"failed: {exc}"
            self.n_failed_ += 1
        finally:
            self._evals += surface.n_evaluations
        if not reason:
            _, new = self.archive_.add(atoms, energy, step=k, walker=self.walker,
                                       evaluations=self._evals)
            accepted = metropolis(energy - self.energy_, units.kB * self.temperature, rng)
            reason = "accepted" if accepted else "rejected by Metropolis"
            if new:
                self._pending.append(self._snapshot(atoms, surface, k, "minimum", accepted))
        for frame in self._pending:
            frame.info["accepted"] = accepted
        if accepted:
            self._accept(atoms, energy, surface)
            self.n_accepted_ += 1
        self.history_.append({"step": k, "evaluations": self._evals, "energy": energy,
                              "accepted": accepted, "reason": reason, "new": new,
                              "best_energy": self.best_energy_})

    def _climb_and_quench(self, surface: Surface, rng: np.random.Generator, k: int) -> bool:
        e0 = self.energy_
        reference = surface.atoms.positions.copy()  # the frame of every Gaussian of the step
        n0 = random_direction(surface, rng, self.mixing,
                              self.cell_mixing if self.cell else None)
        n = n0
        previous = e0
        for g in range(1, self.n_gaussians + 1):
            xc = surface.get_x()
            g0 = surface.get_gradient()

            def hessian_vector(v: np.ndarray, xc=xc, g0=g0) -> np.ndarray:
                g1 = surface.gradient_at(xc + self.dimer_step * v)
                surface.set_x(xc)
                return (g1 - g0) / self.dimer_step

            h_start = None
            if g == 1:  # the bias scale: the curvature along N0 at the minimum
                h_start = hessian_vector(n0)
                bias = self.dimer_bias * abs(float(np.dot(n0, h_start)))
            n, curvature, _ = biased_lowest_mode(hessian_vector, n0, start=n, bias=bias,
                                                 rotations=self.rotations,
                                                 project=surface.project, h_start=h_start)
            # tall enough to cancel (height_scale = 1) or reverse (> 1) the biased surface's
            # curvature along n at the centre, so the structure moves off; never below `height`
            height = max(self.height, self.height_scale * curvature * self.width**2)
            surface.biases.append(GaussianBias(xc.copy(), n.copy(), height, self.width))
            surface.set_x(xc + self.width * n)
            self._relax(surface, self.climb_fmax, self.climb_steps)
            # a free cluster may drift round a rigid rotation under the pile of Gaussians:
            # put it back in their frame (no evaluation spent)
            surface.align_to(reference)
            energy = surface.true_energy_forces()[0]
            if self.record_climb and g % self.record_climb == 0:
                self._pending.append(self._snapshot(surface.atoms, surface, k, "climb", False))
            if self._degenerate(surface.atoms):  # a cell flattening away: quench from here
                break
            if energy < e0 or (self.descent_stop and energy < previous):
                break
            previous = energy
        surface.biases.clear()

        def observe(step: int) -> None:
            if self.record_quench and step and step % self.record_quench == 0:
                surface.true_energy_forces()
                self._pending.append(self._snapshot(surface.atoms, surface, k, "quench", False))

        return self._relax(surface, self.fmax, self.quench_steps, observe)

    # -- bookkeeping ------------------------------------------------------------------------------

    def _snapshot(self, atoms: Atoms, surface: Surface, k: int, phase: str,
                  accepted: bool) -> Atoms:
        from ase.calculators.singlepoint import SinglePointCalculator

        results = atoms.calc.results
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                      pbc=atoms.pbc, tags=atoms.get_tags(),
                      constraint=[c.copy() for c in atoms.constraints])
        labels = {"energy": float(surface.true_energy_forces()[0]),
                  "forces": np.array(results["forces"], dtype=float)}
        if "stress" in results:
            labels["stress"] = np.array(results["stress"], dtype=float)
        frame.calc = SinglePointCalculator(frame, **labels)
        frame.info.update({"ssw_step": k, "phase": phase, "accepted": accepted,
                           "walker": self.walker, "config_type": f"ssw-{phase}"})
        return frame

    def _degenerate(self, atoms: Atoms) -> bool:
        return self.cell and is_degenerate_cell(atoms, self._bond / 1.5,
                                                abs(float(np.linalg.det(self._start.cell))))

    def _accept(self, atoms: Atoms, energy: float, surface: Surface) -> None:
        surface.true_energy_forces()  # atoms.calc.results are those of this geometry
        self._results = {k: (float(v) if k == "energy" else np.array(v, dtype=float))
                         for k, v in atoms.calc.results.items()
                         if k in ("energy", "forces", "stress")}
        self.atoms_ = state_io.atoms_from_dict(state_io.atoms_to_dict(atoms), self._start)
        self.energy_ = float(energy)
        if energy < self.best_energy_:
            self.best_energy_ = float(energy)
            self.best_atoms_ = self.atoms_.copy()

    def _finish_step(self, callback) -> None:
        self.n_evaluations_ = self._evals
        self.n_steps_ = self.history_[-1]["step"]
        if self.trajectory is not None:
            self._frames_length = state_io.append_frames(self.trajectory, self._pending)
        else:
            self.frames_.extend(self._pending)
        self._pending = []
        if self.checkpoint is not None:
            state_io.save_checkpoint(self.checkpoint, self._state(), self.archive_)
        if callback is not None:
            callback(self)

    def _state(self) -> dict:
        return {"params": self.params(), "current": state_io.atoms_to_dict(self.atoms_),
                "energy": self.energy_, "best": state_io.atoms_to_dict(self.best_atoms_),
                "best_energy": self.best_energy_, "bond": self._bond,
                "results": {k: (v if k == "energy" else v.tolist())
                            for k, v in self._results.items()},
                "counters": {k: getattr(self, k) for k in _COUNTERS},
                "history": self.history_, "frames_length": self._frames_length}

    def _resume(self) -> None:
        doc = state_io.load_checkpoint(self.checkpoint, self.params(), self.archive_)
        self.atoms_ = state_io.atoms_from_dict(doc["current"], self._start)
        self.energy_ = doc["energy"]
        self.best_atoms_ = state_io.atoms_from_dict(doc["best"], self._start)
        self.best_energy_ = doc["best_energy"]
        self._bond = doc["bond"]
        self._results = {k: (float(v) if k == "energy" else np.array(v, dtype=float))
                         for k, v in doc["results"].items()}
        for key, value in doc["counters"].items():
            setattr(self, key, value)
        self.history_ = doc["history"]
        self._frames_length = doc["frames_length"]
        if self.trajectory is not None:
            state_io.truncate_frames(self.trajectory, self._frames_length)

    def __repr__(self) -> str:
        return (f"SSW(kind={self.kind!r}, steps={self.n_steps_}, accepted={self.n_accepted_}, "
                f"evaluations={self.n_evaluations_}, best_energy={self.best_energy_:.6f}, "
                f"minima={len(self.archive_)})")


_COUNTERS = ("n_steps_", "n_accepted_", "n_evaluations_", "n_fragmented_", "n_unconverged_",
             "n_failed_")


def _kind(atoms: Atoms) -> str:
    n_periodic = int(np.count_nonzero(atoms.pbc))
    return "cluster" if n_periodic == 0 else "bulk" if n_periodic == 3 else "slab"


def _mixing(value) -> tuple[float, float]:
    try:
        lo, hi = value
        ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                 for v in (lo, hi)) and 0 <= lo <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(f"mixing={value!r} must be two finite numbers 0 ≤ lo ≤ hi")
    return float(lo), float(hi)
