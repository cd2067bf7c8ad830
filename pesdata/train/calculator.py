"""An ASE ``Calculator`` around any trained pesdata model (HDNN, linear, committee).

Energy, forces (−∂E/∂r) and, for cells periodic in all three directions, the stress
((1/V) ∂E/∂ε, eV/Å³, ASE's Voigt order) — all by autograd through the descriptor, so ASE's MD
integrators and optimisers (including cell filters) work with it. A committee calculator also
sets ``energy_std`` (eV/atom) and ``forces_std`` (eV/Å per atom) in ``results``.
"""

from __future__ import annotations

import os

from ase.calculators.calculator import Calculator, all_changes

from ._predict import predict_images

__all__ = ["PesdataCalculator"]


class PesdataCalculator(Calculator):
    """ASE calculator for a fitted model or a saved model directory.

    Parameters
    ----------
    model : fitted model or path
        A fitted :class:`HDNNPotential`, :class:`LinearPotential` or :class:`Committee`,
        or the directory :func:`pesdata.train.save_model` wrote.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(model, str | os.PathLike):
            from .checkpoint import load_model

            model, _ = load_model(model)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        stress = "stress" in properties and bool(self.atoms.pbc.all())
        if hasattr(self.model, "predict_std"):  # a committee: mean and spread in one pass
            spread = self.model.predict_std([self.atoms])
            energy, forces = float(spread["energy"][0]), spread["forces"][0]
            extra = {"energy_std": float(spread["energy_std"][0]),
                     "forces_std": spread["forces_std"][0]}
            out = predict_images(self.model, [self.atoms], forces=False, stress=True) if (
                stress) else {}
        else:
            out = predict_images(self.model, [self.atoms], forces=True, stress=stress)
            energy, forces, extra = float(out["energy"][0]), out["forces"][0], {}
        self.results = {"energy": energy, "free_energy": energy, "forces": forces, **extra}
        if stress:
            self.results["stress"] = out["stress"][0]
