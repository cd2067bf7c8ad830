"""Calculators for tests/test_label.py, reached as ``tests.label_calcs:FACTORY`` (the
``MODULE:FACTORY`` form of ``pesdata label run --calculator``)."""

from __future__ import annotations

import os

from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT

#: Environment variable naming a file each calculation appends the structure's id to.
CALLS_ENV = "PESDATA_TEST_LABEL_CALLS"


class CountingEMT(EMT):
    """EMT that appends ``atoms.info['pesdata_id']`` to the file ``$PESDATA_TEST_LABEL_CALLS``
    names, once per calculation (works across worker processes)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        path = os.environ.get(CALLS_ENV)
        if path:
            with open(path, "a") as fh:
                fh.write(f"{(atoms or self.atoms).info.get('pesdata_id', '?')}\n")
        super().calculate(atoms, list(properties), system_changes)


class FlakyEMT(EMT):
    """EMT that fails as ``atoms.info['fail']`` says: ``raise`` (an SCF-style exception),
    ``nan`` (a NaN energy) or ``inf_forces``."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        mode = (atoms or self.atoms).info.get("fail")
        if mode == "raise":
            raise RuntimeError("SCF did not converge in 60 steps")
        super().calculate(atoms, list(properties), system_changes)
        if mode == "nan":
            self.results["energy"] = float("nan")
        if mode == "inf_forces":
            self.results["forces"][0, 0] = float("inf")


def counting():
    """A :class:`CountingEMT`."""
    return CountingEMT()


def flaky():
    """A :class:`FlakyEMT`."""
    return FlakyEMT()


def not_a_calculator():
    """Returns something that is not a calculator."""
    return 42


NOT_CALLABLE = "just a string"
