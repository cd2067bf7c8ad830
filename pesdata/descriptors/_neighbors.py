"""Neighbour lists for batches of structures (vesin), as flat index tensors.

The list is computed without gradients (it is piecewise constant); distance vectors are then
rebuilt in torch from positions and cells, so descriptors stay differentiable with respect to
both: ``r_ij = x_j − x_i + S_ij · cell``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from vesin import NeighborList

__all__ = ["Pairs", "neighbor_pairs"]


@dataclass
class Pairs:
    """Full neighbour list of a batch: every ordered pair (i, j, shift) within the cutoff."""

    i: torch.Tensor  # (P,) center atom, index into the flat batch
    j: torch.Tensor  # (P,) neighbour atom
    shift: torch.Tensor  # (P, 3) integer cell shifts, in the positions' dtype

    def vectors(
        self, positions: torch.Tensor, cells: torch.Tensor, structure: torch.Tensor
    ) -> torch.Tensor:
        """Distance vectors r_j − r_i (+ image shift), differentiable in positions and cells."""
        cell_of_pair = cells[structure[self.i]]  # (P, 3, 3)
        offset = torch.einsum("pk,pkl->pl", self.shift, cell_of_pair)
        return positions[self.j] - positions[self.i] + offset


def neighbor_pairs(
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    structure: torch.Tensor,
    cutoff: float,
) -> Pairs:
    """Full neighbour lists of all structures of a flat batch.

    Parameters
    ----------
    positions : (N, 3) tensor
        Positions of all atoms of the batch, Å.
    cells : (S, 3, 3) tensor
        Cells (row vectors), Å.
    pbc : (S, 3) bool tensor
    structure : (N,) long tensor
        Structure index of every atom; atoms of one structure are contiguous.
    cutoff : float
        Cutoff radius, Å (pairs with distance < cutoff).
    """
    pos = positions.detach().to("cpu", torch.float64).numpy()
    cel = cells.detach().to("cpu", torch.float64).numpy()
    per = pbc.detach().to("cpu").numpy().astype(bool)
    sidx = structure.detach().to("cpu").numpy()
    counts = np.bincount(sidx, minlength=len(cel))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    nl = NeighborList(cutoff=cutoff, full_list=True)
    ii, jj, ss = [], [], []
    for s in range(len(cel)):
        a, n = starts[s], counts[s]
        if n == 0:
            continue
        box = cel[s] if per[s].any() else np.zeros((3, 3))
        i, j, shift = nl.compute(pos[a : a + n], box, per[s].tolist(), quantities="ijS")
        ii.append(i.astype(np.int64) + a)
        jj.append(j.astype(np.int64) + a)
        ss.append(shift)
    dev = positions.device
    if not ii:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return Pairs(empty, empty, torch.zeros((0, 3), dtype=positions.dtype, device=dev))
    return Pairs(
        i=torch.from_numpy(np.concatenate(ii)).to(dev),
        j=torch.from_numpy(np.concatenate(jj)).to(dev),
        shift=torch.from_numpy(np.concatenate(ss).astype(np.float64)).to(dev, positions.dtype),
    )
