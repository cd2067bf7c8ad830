"""Energies, forces and stress of any model that maps descriptors to energies.

A model exposes ``descriptor`` and ``energy(g, types, structure, n_structures)`` returning
the (S,) float64 total energies of a flat batch from its descriptors ``g``. Forces are
−∂E/∂r by autograd through the descriptor; the stress is (1/V) ∂E/∂ε for a homogeneous
strain ε applied to positions and cell (ASE's sign and Voigt order xx yy zz yz xz xy).
Atoms without a neighbour inside the cutoff (an isolated atom) feel no force: a batch where no
atom has one gets exactly zero forces and stress, and the model's energy at those features.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
import torch

from ..descriptors import batch_atoms

__all__ = ["predict_images"]


def predict_images(
    model,
    images: Sequence[ase.Atoms],
    forces: bool = True,
    stress: bool = False,
    batch_size: int = 16,
) -> dict:
    """Predictions of ``model`` for ``images`` (the ``predict`` of every model kind).

    Parameters
    ----------
    model : Potential
        A fitted model (its ``descriptor`` and ``energy``).
    images : sequence of ase.Atoms
        The structures.
    forces, stress : bool
        Also compute forces (−∂E/∂r) / stress (∂E/∂ε / V, eV/Å³, Voigt xx yy zz yz xz xy).
    batch_size : int
        Structures per batch.

    Returns
    -------
    dict
        ``energy`` (S,) total energies (eV); with ``forces``, ``forces``: a list of (N, 3)
        arrays; with ``stress``, ``stress`` (S, 6) — NaN for structures that are not
        periodic in all three directions.

    Raises
    ------
    SchemaError
        A structure holds an element outside the descriptor's species (the message names
        the structure).
    ParameterError
        The model is not fitted.
    """
    d = model.descriptor
    images = list(images)
    energies, all_forces, stresses = [], [], []
    for lo in range(0, len(images), batch_size):
        chunk = images[lo : lo + batch_size]
        d.check_species(chunk, lo)  # names the structure, not only the element
        b = batch_atoms(chunk, d.dtype, d.device)
        types = d.species_index(b.numbers)
        n_s = len(chunk)
        with torch.enable_grad():
            pos = b.positions.detach().requires_grad_(forces)
            strain = torch.zeros(n_s, 3, 3, dtype=d.dtype, device=d.device,
                                 requires_grad=stress)
            if stress:
                deform = torch.eye(3, dtype=d.dtype, device=d.device) + strain
                positions = torch.einsum("nk,nkl->nl", pos, deform[b.structure])
                cells = b.cells @ deform
            else:
                positions, cells = pos, b.cells
            g = d.forward(positions, b.numbers, cells, b.pbc, b.structure)
            energy = model.energy(g, types, b.structure, n_s)
            wrt = [t for t, on in ((pos, forces), (strain, stress)) if on]
            grads = _gradients(energy.sum(), wrt)
        energies.append(energy.detach().cpu().numpy())
        if forces:
            f = 0.0 - grads.pop(0).detach().cpu().numpy()  # +0.0, not −0.0, without a force
            bounds = np.cumsum([len(a) for a in chunk])[:-1]
            all_forces += np.split(f, bounds)
        if stress:
            de = grads.pop(0).detach().cpu().numpy()
            for k, a in enumerate(chunk):
                vol = abs(np.linalg.det(a.cell.array)) if a.pbc.all() else np.nan
                s = de[k] / vol
                s = 0.5 * (s + s.T)
                stresses.append(s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
    out = {"energy": np.concatenate(energies) if energies else np.zeros(0)}
    if forces:
        out["forces"] = all_forces
    if stress:
        out["stress"] = np.array(stresses).reshape(-1, 6)
    return out


def _gradients(energy: torch.Tensor, wrt: list[torch.Tensor]) -> list[torch.Tensor]:
    """∂energy/∂t for each t in ``wrt``, zeros where the energy does not depend on t.

    A batch in which no atom has a neighbour inside the cutoff (an isolated atom, atoms far
    apart) has descriptors that do not depend on positions or strain: its energy is then
    constant (no graph at all, as for the linear model) or depends on the weights only (the
    HDNN at zero features). Its forces and stress are exactly zero, not an autograd error.

    Parameters
    ----------
    energy : torch.Tensor
        A scalar (the summed energies of a batch).
    wrt : list of torch.Tensor
        Leaf tensors with ``requires_grad``.

    Returns
    -------
    list of torch.Tensor
        One gradient per tensor of ``wrt``, with its shape, dtype and device.
    """
    if not wrt:
        return []
    if not energy.requires_grad:
        return [torch.zeros_like(t) for t in wrt]
    grads = torch.autograd.grad(energy, wrt, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt, strict=True)]
