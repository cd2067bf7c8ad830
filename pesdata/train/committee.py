"""A committee of HDNNs: mean prediction and spread (standard deviation) for uncertainty.

Members share the descriptors (computed once) and differ in their seed — initial weights,
batch order — and in the random part of the training structures each holds out for early
stopping, so each sees a different subset. The committee's energy is the members' mean, hence
its forces are the mean forces; :meth:`Committee.predict_std` gives the spread that selection
uses as committee disagreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ase
import numpy as np
import torch

from .._params import check_int
from ..descriptors import Descriptor
from ._nets import history_summary, load_net, net_state
from ._predict import predict_images
from .data import StructureDataset
from .hdnn import HDNNPotential
from .registry import Potential, register

__all__ = ["Committee"]


@register
class Committee(Potential):
    """K HDNN members (sklearn-style ``fit`` / ``predict``, plus ``predict_std``).

    Parameters
    ----------
    descriptor : Descriptor
    n_members : int
        Number of members K (≥ 2).
    **params
        HDNN hyperparameters (see :class:`HDNNPotential`); member k gets ``seed + k``.
    """

    kind = "committee"

    def __init__(self, descriptor: Descriptor, n_members: int = 4, **params) -> None:
        n_members = check_int("n_members", n_members, 2,
                              what="at least 2 (a committee of one has no spread)")
        self.descriptor, self.n_members = descriptor, n_members
        seed = check_int("seed", params.pop("seed", 0), 0)
        self.members = [HDNNPotential(descriptor, seed=seed + k, **params)
                        for k in range(self.n_members)]

    @property
    def seed(self) -> int:
        return self.members[0].seed

    def params(self) -> dict:
        """Hyperparameters (JSON types) as in the model card."""
        return {**self.members[0].params(), "n_members": self.n_members}

    def fit(
        self,
        images: Sequence[ase.Atoms] | StructureDataset,
        valid: Sequence[ase.Atoms] | StructureDataset | None = None,
        log: Callable[[dict], None] | None = None,
    ) -> Committee:
        """Train every member on the same descriptors; ``log`` records carry ``member``."""
        data = images if isinstance(images, StructureDataset) else self.make_dataset(images)
        if valid is not None and not isinstance(valid, StructureDataset):
            valid = self.make_dataset(valid)
        for k, member in enumerate(self.members):
            member.fit(data, valid, log=_tagged(log, k))
        return self

    def fit_subset(self, data: StructureDataset, idx, log=None) -> Committee:
        """Train every member on ``data[idx]`` (each holds out its own validation draw)."""
        for k, member in enumerate(self.members):
            member.fit_subset(data, idx, log=_tagged(log, k))
        return self

    def make_dataset(self, images, **kwargs) -> StructureDataset:
        """The shared training dataset (see :meth:`HDNNPotential.make_dataset`)."""
        return self.members[0].make_dataset(images, **kwargs)

    @property
    def history_(self) -> list[dict]:
        return [{"member": k, **r} for k, m in enumerate(self.members) for r in m.history_]

    def energy(
        self, g: torch.Tensor, types: torch.Tensor, structure: torch.Tensor, n_structures: int
    ) -> torch.Tensor:
        """Mean total energy (S,) of the members, differentiable."""
        return torch.stack([m.energy(g, types, structure, n_structures)
                            for m in self.members]).mean(0)

    def state_dict(self) -> dict:
        """Every member's tensors, prefixed ``member<k>.``."""
        return {name: t for k, m in enumerate(self.members)
                for name, t in net_state(m, f"member{k}.").items()}

    def load_state(self, state: dict) -> Committee:
        """Load tensors written by :meth:`state_dict`; returns the committee."""
        for k, member in enumerate(self.members):
            load_net(member, state, f"member{k}.")
        return self

    def training_summary(self) -> dict:
        """``{"training": [one record per member]}`` (as :meth:`HDNNPotential.training_summary`)."""
        return {"training": [history_summary(m.history_) for m in self.members]}

    def predict_std(self, images: Sequence[ase.Atoms]) -> dict:
        """Members' mean and spread for ``images``.

        Returns
        -------
        dict
            ``energy`` (S,) mean total energy (eV), ``energy_std`` (S,) standard deviation of
            the energy per atom (eV/atom), ``forces`` list of mean (N, 3) forces and
            ``forces_std`` list of (N,) per-atom spreads √(Σ_k var F_k) (eV/Å).
        """
        images = list(images)
        runs = [predict_images(m, images, forces=True) for m in self.members]
        n = np.array([len(a) for a in images], dtype=float)
        energies = np.stack([r["energy"] for r in runs])
        out = {"energy": energies.mean(0), "energy_std": (energies / n).std(0),
               "forces": [], "forces_std": []}
        for s in range(len(images)):
            f = np.stack([r["forces"][s] for r in runs])  # (K, N, 3)
            out["forces"].append(f.mean(0))
            out["forces_std"].append(np.sqrt(f.var(0).sum(1)))
        return out


def _tagged(log, k: int):
    """``log`` with ``member: k`` added to every record (None stays None)."""
    if log is None:
        return None
    return lambda record: log({"member": k, **record})
