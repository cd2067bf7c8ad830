"""The explorer interface and its lazy registry."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import ClassVar

import ase

from .._lazy import load_registered
from ..errors import ParameterError

__all__ = ["Explorer", "check_inputs", "explorers", "get_explorer", "register_explorer"]


class Explorer:
    """Base class of explorers: given a calculator and seed structures, yield candidate frames.

    The constructor stores parameters only; :meth:`explore` validates them and runs. Every
    yielded frame is a new ``ase.Atoms`` without a calculator (geometry only: the labels come
    later, from the labeller) whose ``info`` carries at least

    * ``explorer`` — the explorer's name;
    * ``group`` — the trajectory it belongs to (one per seed × setting), for ``--group-cap``
      and leak-free splits;
    * ``config_type`` — what kind of frame it is (e.g. ``md-1200K``);
    * ``step`` — the step of its trajectory;

    plus explorer-specific keys (``temperature``...). ``n_calls_`` counts the calculator's
    energy/force evaluations of the last :meth:`explore`.

    Attributes
    ----------
    name : str
        Registry name (``"md"``, later ``"ssw"``).
    """

    name: ClassVar[str] = ""

    def explore(
        self, calculator, seeds: Sequence[ase.Atoms], seed: int = 0
    ) -> Iterator[ase.Atoms]:  # pragma: no cover - every explorer overrides it
        """Yield candidate frames explored from ``seeds`` with ``calculator``.

        Parameters
        ----------
        calculator : ase calculator
            Drives the exploration (e.g. the current committee's
            :class:`~pesdata.train.calculator.PesdataCalculator`). It is attached to copies
            of the seeds; the seeds themselves are not modified.
        seeds : sequence of ase.Atoms
            Starting structures.
        seed : int
            Seed of every random choice (velocities, rattles); same seed → same frames.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"


def check_inputs(calculator, seeds, seed) -> tuple[list[ase.Atoms], int]:
    """What every :meth:`Explorer.explore` checks first: an ASE calculator, one or more
    non-empty ``ase.Atoms`` (a single Atoms counts as one seed) and a seed ≥ 0.

    Returns
    -------
    seeds : list of ase.Atoms
    seed : int

    Raises
    ------
    ParameterError
        Naming the bad argument and value.
    """
    if calculator is None or not hasattr(calculator, "get_potential_energy"):
        raise ParameterError(f"calculator={calculator!r} is not an ASE calculator")
    if isinstance(seeds, ase.Atoms):
        seeds = [seeds]
    try:
        seeds = list(seeds)
    except TypeError as exc:
        raise ParameterError(f"seeds={seeds!r} is not a sequence of ase.Atoms") from exc
    if not seeds:
        raise ParameterError("seeds=[] is empty: give at least one structure")
    for i, atoms in enumerate(seeds):
        if not isinstance(atoms, ase.Atoms) or len(atoms) == 0:
            raise ParameterError(f"seeds[{i}]={atoms!r} is not a non-empty ase.Atoms")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed={seed!r} must be an integer ≥ 0")
    return seeds, int(seed)


_EXPLORERS: dict[str, str | type] = {
    "md": "pesdata.explore.md:MDExplorer",
    "ssw": "pesdata.explore.ssw_explorer:SSWExplorer",
}


def get_explorer(name: str) -> type[Explorer]:
    """The :class:`Explorer` subclass registered as ``name``; ParameterError if unknown."""
    return load_registered(_EXPLORERS, "explorer", name, Explorer)


def explorers() -> tuple[str, ...]:
    """Registered explorer names."""
    return tuple(sorted(_EXPLORERS))


def register_explorer(cls: type[Explorer]) -> type[Explorer]:
    """Register an Explorer subclass under its ``name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Explorer) and cls.name):
        raise ParameterError(f"{cls!r} is not a named Explorer subclass")
    _EXPLORERS[cls.name] = cls
    return cls
