"""Calculators for ``pesdata label run``, by name: ``emt``, ``lj`` or ``MODULE:FACTORY``.

* ``emt`` — ASE's :class:`~ase.calculators.emt.EMT` (method name ``EMT``).
* ``lj`` — Lennard-Jones with ε = 1 eV and σ = 1 Å for every element (method name ``LJ``),
  untruncated and unshifted: for a non-periodic structure
  :class:`~pesdata.explore.lj.LennardJonesCluster` (every pair, no cutoff; LJ13's global
  minimum reads −44.326801 eV as in Wales & Doye), for a periodic cell ASE's
  :class:`~ase.calculators.lj.LennardJones` with cutoff :data:`LJ_PERIODIC_CUTOFF` (20 σ; a
  lattice sum has no finite exact cutoff: the shift and the neglected tail together change the
  energy of fcc Cu by about 2e-4 eV/atom against 40 σ). ASE's own default (3 σ cutoff, shifted
  pair energies) would read LJ13 at −43.8994.
* ``MODULE:FACTORY`` — ``importlib.import_module(MODULE).FACTORY()`` must return an ASE
  calculator; every worker process calls it once for its own calculator (method name: the
  spec itself; ``label import --method`` names another).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError

__all__ = ["BUILTIN", "LJ_PERIODIC_CUTOFF", "CalculatorSpec", "parse_calculator"]

BUILTIN = ("emt", "lj")
LJ_PERIODIC_CUTOFF = 20.0  # in units of sigma


@dataclass(frozen=True)
class CalculatorSpec:
    """A calculator named on the command line, resolvable in any worker process.

    Parameters
    ----------
    spec : str
        ``emt``, ``lj`` or ``MODULE:FACTORY``.
    """

    spec: str

    @property
    def method(self) -> str:
        """The level of theory recorded with its labels (``EMT``, ``LJ`` or the spec)."""
        return {"emt": "EMT", "lj": "LJ"}.get(self.spec, self.spec)

    @property
    def per_structure(self) -> bool:
        """True when the calculator is set up per structure (``lj``: cutoff from the cell)."""
        return self.spec == "lj"

    def make(self, atoms=None):
        """A new calculator (for ``lj``, one whose cutoff suits ``atoms``)."""
        if self.spec == "emt":
            from ase.calculators.emt import EMT

            return EMT()
        if self.spec == "lj":
            return _lennard_jones(atoms)
        factory = _factory(self.spec)
        try:
            calc = factory()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code failing, quoted
            raise ParameterError(f"calculator {self.spec!r}: the factory raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        if not callable(getattr(calc, "get_potential_energy", None)):
            raise ParameterError(f"calculator {self.spec!r}: the factory returned "
                                 f"{type(calc).__name__}, not an ASE calculator")
        return calc


def _lennard_jones(atoms):
    from ase.calculators.lj import LennardJones

    sigma = 1.0
    if atoms is not None and not np.any(atoms.pbc):
        from ..explore.lj import LennardJonesCluster

        return LennardJonesCluster(epsilon=1.0, sigma=sigma)
    return LennardJones(epsilon=1.0, sigma=sigma, rc=LJ_PERIODIC_CUTOFF * sigma, smooth=False)


def _factory(spec: str):
    module, _, name = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError and whatever the module raises
        raise ParameterError(f"calculator {spec!r}: cannot import module {module!r} "
                             f"({type(exc).__name__}: {exc})") from exc
    factory = getattr(mod, name, None)
    if not callable(factory):
        raise ParameterError(f"calculator {spec!r}: module {module!r} has no callable "
                             f"{name!r}")
    return factory


def parse_calculator(spec: str | CalculatorSpec) -> CalculatorSpec:
    """Check a calculator name (importing ``MODULE`` and finding ``FACTORY``) before any work.

    Parameters
    ----------
    spec : str or CalculatorSpec
        ``emt``, ``lj`` or ``MODULE:FACTORY``.

    Returns
    -------
    CalculatorSpec

    Raises
    ------
    ParameterError
        An unknown name, a malformed ``MODULE:FACTORY``, a module that cannot be imported or
        has no such callable; the message quotes the spec.
    """
    if isinstance(spec, CalculatorSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"calculator must be emt, lj or MODULE:FACTORY, got {spec!r}")
    spec = spec.strip()
    if spec.lower() in BUILTIN:
        return CalculatorSpec(spec.lower())
    module, sep, name = spec.partition(":")
    if not sep or not module or not name.isidentifier():
        raise ParameterError(f"unknown calculator {spec!r}: give emt, lj or MODULE:FACTORY "
                             "(a Python module and a function in it returning an ASE calculator)")
    _factory(spec)
    return CalculatorSpec(spec)
