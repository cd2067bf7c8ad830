"""A calculator wrapper that counts every energy/force evaluation and can cap them.

Global-optimisation methods are compared at equal budgets of evaluations, counting every call —
dimer rotations, line searches and MD steps included. :class:`CountingCalculator` wraps any ASE
calculator and counts the calls of its ``calculate`` (ASE calls it only when the structure
changed since the last results), so SSW, ``BasinHopping`` and ``MinimaHopping`` are counted
the same way; past ``budget`` it raises :class:`~pesdata.explore.surface.BudgetExhausted`
instead of calculating.
"""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from .surface import BudgetExhausted

__all__ = ["CountingCalculator"]


class CountingCalculator(Calculator):
    """Delegate to ``calc``, counting (and optionally capping) the evaluations.

    Parameters
    ----------
    calc : ase calculator
        The calculator doing the work.
    budget : int, optional
        Largest number of evaluations; the next one raises ``BudgetExhausted``.

    Attributes
    ----------
    n_calls : int
        Evaluations so far.
    """

    def __init__(self, calc, budget: int | None = None) -> None:
        super().__init__()
        self.calc = calc
        self.budget = budget
        self.n_calls = 0
        self.implemented_properties = list(calc.implemented_properties)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if self.budget is not None and self.n_calls >= self.budget:
            raise BudgetExhausted(f"the budget of {self.budget} energy/force evaluations "
                                  "is spent")
        Calculator.calculate(self, atoms, properties, system_changes)
        self.n_calls += 1
        wanted = sorted(set(properties) | ({"energy", "forces"}
                                           & set(self.implemented_properties)))
        self.calc.calculate(self.atoms, wanted, all_changes)
        self.results = dict(self.calc.results)
