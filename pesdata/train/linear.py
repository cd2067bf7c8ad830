"""A linear (SNAP-style) baseline: ridge regression on per-element summed descriptors.

E = Σ_e [ w_e · Σ_{i ∈ e} G_i + b_e n_e ]: one weight vector and one reference energy per
element, fitted by scikit-learn's ``Ridge`` on energies per atom and, with
``force_weight > 0``, on force components too — a force row is −∂(Σ G)/∂r, from the
descriptor's pair Jacobian, so E and F come from the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
import torch
from sklearn.linear_model import Ridge

from .._params import check_float
from .._where import structure_name
from ..descriptors import Descriptor, batch_atoms
from ..errors import ArtefactError, ParameterError
from .registry import Potential, check_fitted, register

__all__ = ["LinearPotential"]


@register
class LinearPotential(Potential):
    """Ridge regression on per-element summed descriptors (sklearn-style ``fit``/``predict``).

    Parameters
    ----------
    descriptor : Descriptor
        An ACSF or PTSD instance (its species are the model's elements).
    alpha : float
        Ridge penalty on the (column-scaled) weights.
    force_weight : float
        Weight of force rows (eV/Å) against energy-per-atom rows (eV/atom); 0 fits energies
        only.
    """

    kind = "linear"

    def __init__(self, descriptor: Descriptor, alpha: float = 1e-8, force_weight: float = 0.0):
        self.descriptor = descriptor
        self.alpha = check_float("alpha", alpha, low=0)
        self.force_weight = check_float("force_weight", force_weight, low=0)

    @classmethod
    def from_params(cls, descriptor: Descriptor, **params) -> LinearPotential:
        """A new linear model; ``device`` is ignored (the fit runs where the descriptor runs)."""
        params.pop("device", None)
        return super().from_params(descriptor, **params)

    def params(self) -> dict:
        """Hyperparameters (JSON types), as recorded in the model card."""
        return {"alpha": self.alpha, "force_weight": self.force_weight}

    def _features(self, atoms: ase.Atoms, forces: bool):
        """Per-element sums (n_el·F + n_el counts) and, optionally, their −∂/∂r rows (3N, ·).

        The force rows come from the descriptor's pair Jacobian: with vec_p = r_j − r_i,
        ∂(Σ_{i ∈ e} G_i)/∂r_a = Σ_{p: j_p = a} J_p − Σ_{p: i_p = a} J_p over pairs whose
        center i_p has element e.
        """
        d = self.descriptor
        b = batch_atoms(atoms, d.dtype, d.device)
        types = d.species_index(b.numbers)
        n_el, f, n = len(d.species), d.n_features, len(atoms)
        if forces:
            g, pairs, jac = d.pair_jacobian(b.positions, b.numbers, b.cells, b.pbc, b.structure)
        else:
            with torch.no_grad():
                g = d.forward(b.positions, b.numbers, b.cells, b.pbc, b.structure)
        summed = torch.zeros(n_el, f, dtype=g.dtype, device=g.device).index_add(0, types, g)
        counts = torch.bincount(types, minlength=n_el).to(torch.float64).cpu().numpy()
        x = np.concatenate([summed.reshape(-1).cpu().numpy(), counts])
        if not forces:
            return x, None
        grad = torch.zeros(n * n_el, f, 3, dtype=jac.dtype, device=jac.device)
        e_p = types[pairs.i]
        grad.index_add_(0, pairs.j * n_el + e_p, jac).index_add_(0, pairs.i * n_el + e_p, -jac)
        # row (atom a, component k), column (element e, feature f): −∂S[e, f]/∂r[a, k]
        rows = -grad.view(n, n_el, f, 3).permute(0, 3, 1, 2).reshape(3 * n, n_el * f)
        return x, np.hstack([rows.cpu().numpy(), np.zeros((3 * n, n_el))])

    def fit(self, images: Sequence[ase.Atoms], valid=None, log=None) -> LinearPotential:
        """Fit to labelled structures (energy, and forces when ``force_weight > 0``).

        ``valid`` and ``log`` are accepted for the common interface and not used: a ridge fit
        has no epochs to early-stop or log.
        """
        use_f = self.force_weight > 0
        xs, ys, fx, fy = [], [], [], []
        for k, atoms in enumerate(images):
            if atoms.calc is None or "energy" not in atoms.calc.results:
                raise ParameterError(f"training {structure_name(atoms, k)} has no energy label")
            self.descriptor.check_species(atoms, k)
            with_f = use_f and "forces" in atoms.calc.results  # frames without forces: E only
            x, rows = self._features(atoms, with_f)
            xs.append(x / len(atoms))
            ys.append(atoms.calc.results["energy"] / len(atoms))
            if with_f:
                fx.append(rows * self.force_weight)
                fy.append(np.asarray(atoms.calc.results["forces"]).reshape(-1) * self.force_weight)
        if use_f and not fx:
            raise ParameterError("force_weight > 0, but no training structure has forces")
        X, y = np.array(xs), np.array(ys)
        if fx:
            X, y = np.vstack([X, *fx]), np.concatenate([y, *fy])
        self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        self.ridge_ = Ridge(alpha=self.alpha, fit_intercept=False).fit(X / self.scale_, y)
        self.coef_ = self.ridge_.coef_ / self.scale_
        return self

    def energy(
        self, g: torch.Tensor, types: torch.Tensor, structure: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        """Total energies (S,) of a flat batch from its descriptors ``g`` (differentiable)."""
        check_fitted(getattr(self, "coef_", None) is not None)
        d = self.descriptor
        n_el, f = len(d.species), d.n_features
        w = torch.as_tensor(self.coef_[: n_el * f].reshape(n_el, f), dtype=g.dtype,
                            device=g.device)
        b = torch.as_tensor(self.coef_[n_el * f :], dtype=g.dtype, device=g.device)
        per_atom = (g * w[types]).sum(1) + b[types]
        out = torch.zeros(n_structures, dtype=torch.float64, device=g.device)
        return out.index_add(0, structure, per_atom.to(torch.float64))

    def state_dict(self) -> dict:
        """``coef`` and ``scale`` (the column scaling of the ridge fit) as tensors."""
        check_fitted(getattr(self, "coef_", None) is not None)
        return {"coef": torch.as_tensor(self.coef_), "scale": torch.as_tensor(self.scale_)}

    def load_state(self, state: dict) -> LinearPotential:
        """Load ``coef`` and ``scale``, checking their length against the descriptor."""
        coef = np.asarray(state["coef"], dtype=float)
        scale = np.asarray(state["scale"], dtype=float)
        d = self.descriptor
        n_coef = len(d.species) * (d.n_features + 1)
        if coef.shape != (n_coef,) or scale.shape != (n_coef,):
            raise ArtefactError(f"linear weights of shape {coef.shape}, the card's descriptor "
                                f"needs ({n_coef},)")
        self.coef_, self.scale_ = coef, scale
        return self
