"""Molecular-dynamics exploration: Langevin NVT at a ladder of temperatures with any ASE calculator.

:class:`MDExplorer` runs, for each seed structure (and, with ``copies``, for rattled/strained
copies of it) and each temperature of the ladder, one Langevin trajectory
(:class:`ase.md.langevin.Langevin`, ``fixcm=False``) with the given calculator attached to a
copy of the structure, and yields every ``interval``-th frame as a candidate. Trajectories run
one after another and frames are yielded as they are made, so memory stays flat however long
the exploration.

Every yielded frame is a new :class:`ase.Atoms` with numbers, positions, cell and pbc only (no
calculator, no momenta: the labeller labels it later) and ``info``:

* ``explorer`` — ``"md"``;
* ``group`` — ``"md-<i>-<T>K"`` for seed ``i`` at temperature ``T`` (``"md-<i>.<k>-<T>K"`` for
  its ``k``-th copy, k ≥ 1): one group per trajectory;
* ``config_type`` — ``"md-<T>K"``;
* ``step`` — the MD step of the frame (``interval``, ``2 * interval``, …, ≤ ``steps``);
* ``temperature`` — the thermostat temperature in K;
* ``seed_index`` and ``copy`` — which seed the trajectory started from and which copy of it
  (0: the seed itself).

A trajectory that blows up — a force larger than ``max_force`` eV/Å on any atom, a NaN/inf
energy or force, or the calculator raising — stops there: the frames yielded before it stand,
the reason goes to ``stopped_`` and the other trajectories run on. ``n_calls_`` counts the
calculator's energy/force evaluations.

Determinism: the Maxwell–Boltzmann velocities and the Langevin noise of a trajectory come from
one :class:`numpy.random.Generator` seeded by ``(seed, seed index, copy index, temperature
index)``, and a copy's rattle/strain from one seeded by ``(seed, seed index, copy index)``; the
same ``seed``, seeds and calculator give the same frames, whatever order they are consumed in.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence

import ase
import numpy as np

from ..errors import ParameterError
from ._base import Explorer, check_inputs

__all__ = ["MDExplorer"]

_MD_STREAM, _COPY_STREAM = 0, 1  # first seed word of the two kinds of random streams


class MDExplorer(Explorer):
    """Langevin NVT molecular dynamics at a ladder of temperatures.

    Parameters
    ----------
    temperatures : float or sequence of float
        Thermostat temperatures in K (> 0, distinct); one trajectory per seed and temperature.
    steps : int
        MD steps per trajectory (≥ 1).
    interval : int
        Record every ``interval``-th step (1 ≤ interval ≤ steps): ``steps // interval`` frames
        per trajectory that does not blow up.
    timestep : float
        Time step in fs (> 0).
    friction : float
        Langevin friction in 1/fs (≥ 0).
    rattle : float
        Standard deviation in Å of the Gaussian displacements of the copies (≥ 0).
    strain : float
        Largest component of the random symmetric strain of the copies (0 ≤ strain < 0.5).
    copies : int
        Rattled/strained copies explored besides each seed (≥ 0; > 0 needs ``rattle`` or
        ``strain`` > 0).
    max_force : float
        A force above this (eV/Å, on any atom) stops the trajectory (> 0; ``inf`` disables it).

    Attributes
    ----------
    n_calls_ : int
        Energy/force evaluations of the last :meth:`explore` (so far, while it runs).
    stopped_ : list of dict
        One ``{"group", "step", "reason"}`` per trajectory that stopped early.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> md = MDExplorer(temperatures=(300, 1200), steps=40, interval=20)
    >>> frames = list(md.explore(EMT(), [bulk("Cu", cubic=True)], seed=1))
    >>> len(frames), frames[-1].info["group"], md.n_calls_
    (4, 'md-0-1200K', 82)
    """

    name = "md"

    def __init__(
        self,
        temperatures: float | Sequence[float] = (300.0,),
        steps: int = 200,
        interval: int = 20,
        timestep: float = 2.0,
        friction: float = 0.02,
        rattle: float = 0.0,
        strain: float = 0.0,
        copies: int = 0,
        max_force: float = 50.0,
    ) -> None:
        self.temperatures = temperatures
        self.steps = steps
        self.interval = interval
        self.timestep = timestep
        self.friction = friction
        self.rattle = rattle
        self.strain = strain
        self.copies = copies
        self.max_force = max_force

    # -- validation ----------------------------------------------------------------------------

    def _check_params(self) -> tuple[float, ...]:
        temps = self.temperatures
        if isinstance(temps, numbers.Real) and not isinstance(temps, bool):
            temps = (temps,)
        try:
            temps = tuple(_real(t, "temperatures", lo=0.0, lo_open=True) for t in temps)
        except TypeError as exc:
            raise ParameterError(
                f"temperatures={self.temperatures!r} must be a number or a sequence of numbers"
            ) from exc
        if not temps:
            raise ParameterError(f"temperatures={self.temperatures!r} is empty")
        if len({_label(t) for t in temps}) != len(temps):
            raise ParameterError(f"temperatures={self.temperatures!r} repeats a temperature")
        _integer(self.steps, "steps", lo=1)
        _integer(self.interval, "interval", lo=1)
        if self.interval > self.steps:
            raise ParameterError(
                f"interval={self.interval!r} must not exceed steps={self.steps!r}")
        _real(self.timestep, "timestep", lo=0.0, lo_open=True)
        _real(self.friction, "friction", lo=0.0)
        _real(self.rattle, "rattle", lo=0.0)
        _real(self.strain, "strain", lo=0.0, hi=0.5)
        _integer(self.copies, "copies", lo=0)
        if self.copies and not (self.rattle > 0 or self.strain > 0):
            raise ParameterError(
                f"copies={self.copies!r} needs rattle > 0 or strain > 0 "
                f"(got rattle={self.rattle!r}, strain={self.strain!r})")
        max_force = self.max_force
        if not (_is_real(max_force) and max_force > 0):  # inf allowed: no force limit
            raise ParameterError(f"max_force={max_force!r} must be a number > 0")
        return temps

    # -- the exploration -----------------------------------------------------------------------

    def explore(
        self, calculator, seeds: Sequence[ase.Atoms] | ase.Atoms, seed: int = 0
    ) -> Iterator[ase.Atoms]:
        """Yield every ``interval``-th frame of each seed × copy × temperature trajectory.

        Parameters are checked here, before the first frame (the returned iterator is lazy).

        Parameters
        ----------
        calculator : ase calculator
            Drives the dynamics; attached to copies of the seeds (which stay unchanged).
        seeds : sequence of ase.Atoms or ase.Atoms
            Starting structures (a single Atoms counts as one seed).
        seed : int
            Seed (≥ 0) of the velocities, the Langevin noise and the copies.

        Returns
        -------
        iterator of ase.Atoms
            Frames without calculator, in the order seed, copy, temperature, step.

        Raises
        ------
        ParameterError
            A parameter, the calculator, the seeds or ``seed`` is invalid.
        """
        temps = self._check_params()
        seeds, seed = check_inputs(calculator, seeds, seed)
        self.n_calls_ = 0
        self.stopped_ = []
        return self._run(calculator, seeds, temps, int(seed))

    def _run(self, calculator, seeds: list[ase.Atoms], temps: tuple[float, ...],
             seed: int) -> Iterator[ase.Atoms]:
        for i, start in enumerate(seeds):
            for k in range(int(self.copies) + 1):
                atoms = start if k == 0 else self._copy(start, seed, i, k)
                for t_index, temperature in enumerate(temps):
                    rng = np.random.default_rng([_MD_STREAM, seed, i, k, t_index])
                    yield from self._trajectory(calculator, atoms, temperature, rng, i, k)

    def _copy(self, atoms: ase.Atoms, seed: int, i: int, k: int) -> ase.Atoms:
        """The ``k``-th rattled/strained copy of seed ``i``."""
        rng = np.random.default_rng([_COPY_STREAM, seed, i, k])
        out = atoms.copy()
        out.calc = None
        a = rng.uniform(-self.strain, self.strain, size=(3, 3))
        deform = np.eye(3) + (a + a.T) / 2  # symmetric strain, components within ±strain
        out.set_cell(np.asarray(atoms.cell) @ deform)
        out.set_positions(atoms.positions @ deform + rng.normal(0.0, self.rattle,
                                                                 size=(len(atoms), 3)),
                          apply_constraint=False)
        return out

    def _trajectory(self, calculator, start: ase.Atoms, temperature: float,
                    rng: np.random.Generator, i: int, k: int) -> Iterator[ase.Atoms]:
        from ase.md.langevin import Langevin
        from ase.units import fs

        label = _label(temperature)
        group = f"md-{i}-{label}K" if k == 0 else f"md-{i}.{k}-{label}K"
        info = {"explorer": self.name, "group": group, "config_type": f"md-{label}K",
                "temperature": float(temperature), "seed_index": i, "copy": k}
        atoms = start.copy()
        atoms.info = {}
        atoms.calc = calculator
        if hasattr(calculator, "reset"):
            calculator.reset()  # no results cached from another structure
        _thermalize(atoms, temperature, rng)
        dyn = Langevin(atoms, self.timestep * fs, temperature_K=temperature,
                       friction=self.friction / fs, fixcm=False, rng=rng)
        step, forces = 0, None
        while True:
            record = step > 0 and step % self.interval == 0
            try:
                self.n_calls_ += 1  # every step evaluates the forces at new positions
                forces = atoms.get_forces(md=True) if forces is None else dyn.step(forces)
                reason = self._check_forces(forces)
                cached = _cached(atoms, "energy")
                if reason is None and (record or cached):  # free when cached with the forces
                    self.n_calls_ += not cached
                    energy = float(atoms.get_potential_energy())
                    if not math.isfinite(energy):
                        reason = f"non-finite energy {energy!r}"
            except Exception as exc:  # noqa: BLE001 - any calculator failure stops the trajectory
                reason = f"calculator raised {type(exc).__name__}: {exc}"
            if reason is not None:
                self.stopped_.append({"group": group, "step": step, "reason": reason})
                return
            if record:
                yield _frame(atoms, {**info, "step": step})
            if step == self.steps:
                return
            step += 1

    def _check_forces(self, forces) -> str | None:
        forces = np.asarray(forces, dtype=float)
        if not np.isfinite(forces).all():
            bad = int((~np.isfinite(forces)).any(axis=-1).sum())
            return f"non-finite forces on {bad} atom(s)"
        largest = float(np.linalg.norm(forces, axis=-1).max()) if len(forces) else 0.0
        if largest > self.max_force:
            return f"force {largest:.4g} eV/Å exceeds max_force={self.max_force!r}"
        return None


# -- helpers ---------------------------------------------------------------------------------

def _frame(atoms: ase.Atoms, info: dict) -> ase.Atoms:
    """A new Atoms with the geometry of ``atoms`` only."""
    out = ase.Atoms(numbers=atoms.numbers.copy(), positions=atoms.positions.copy(),
                    cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
    out.info.update(info)
    return out


def _thermalize(atoms: ase.Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Maxwell–Boltzmann momenta at ``temperature`` K drawn from ``rng``."""
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):  # ASE ≥ 3.29 (MaxwellBoltzmannDistribution deprecated)
        vd.thermalize_momenta(atoms, temperature, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)


def _cached(atoms: ase.Atoms, prop: str) -> bool:
    """Whether the attached calculator holds ``prop`` for the current geometry."""
    required = getattr(atoms.calc, "calculation_required", None)
    if required is None:
        return False
    try:
        return not required(atoms, [prop])
    except Exception:  # noqa: BLE001 - a calculator without a usable cache
        return False


def _label(temperature: float) -> str:
    """``300.0`` → ``"300"``, ``312.5`` → ``"312.5"``."""
    return f"{float(temperature):g}"


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not (
        math.isnan(value))


def _real(value, name: str, lo: float, lo_open: bool = False, hi: float | None = None) -> float:
    """``value`` as a finite float within the bounds, else ParameterError naming it."""
    if not (_is_real(value) and math.isfinite(value)) or value < lo or (
            lo_open and value == lo) or (hi is not None and value >= hi):
        bound = f"{'>' if lo_open else '≥'} {lo:g}" + (f" and < {hi:g}" if hi else "")
        raise ParameterError(f"{name}={value!r} must be a finite number {bound}")
    return float(value)


def _integer(value, name: str, lo: int) -> int:
    """``value`` as an int ≥ ``lo``, else ParameterError naming it."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < lo:
        raise ParameterError(f"{name}={value!r} must be an integer ≥ {lo}")
    return int(value)
