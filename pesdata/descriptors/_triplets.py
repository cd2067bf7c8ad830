"""Unordered pairs of neighbour-list entries that share a center, generated in chunks.

Three-body terms (ACSF G4/G5, PTSD S3–S5) sum over pairs {j, k} of neighbours of each
center i. Both descriptors, and their per-term Jacobians (:mod:`.jacobian`), walk those pairs
with :func:`triplet_chunks`, so the memory held at once stays bounded whatever the density.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["triplet_chunks"]


def triplet_chunks(
    centers: torch.Tensor, chunk: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Unordered pairs (p < q) of neighbour-list entries sharing a center, in chunks.

    Parameters
    ----------
    centers : (P,) long tensor
        Center index of each neighbour-list entry, sorted (ascending).
    chunk : int
        About how many triplets one chunk holds; chunks always hold whole centers.

    Yields
    ------
    lo : int
        First entry of the chunk: entries ``lo, lo + 1, ...`` each pair with the ``n_q[k]``
        entries after them in their center's block.
    n_q : (E,) long tensor
        Number of partners of each entry of the chunk.
    p_rep, q_rep : (T,) long tensors
        Entry indices (into ``centers``) of each triplet's two sides, ``p_rep < q_rep``.
    """
    dev = centers.device
    counts = torch.bincount(centers)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(centers.numel(), device=dev) - starts[centers]
    n_q = counts[centers] - local - 1  # partners after each entry
    ends = torch.cumsum(n_q, 0)  # triplets up to and including each entry
    stops = torch.cumsum(counts, 0)[counts > 0]
    totals = ends[stops - 1].tolist()
    lo_entry, lo_trip = 0, 0
    last = int(stops[-1]) if stops.numel() else 0
    for stop, total in zip(stops.tolist(), totals, strict=True):
        if total - lo_trip < chunk and stop != last:
            continue
        nq = n_q[lo_entry:stop]
        p_rep = torch.repeat_interleave(torch.arange(lo_entry, stop, device=dev), nq)
        if p_rep.numel():
            offs = torch.cumsum(nq, 0) - nq
            q_rep = p_rep + 1 + (torch.arange(p_rep.numel(), device=dev) - offs[p_rep - lo_entry])
            yield lo_entry, nq, p_rep, q_rep
        lo_entry, lo_trip = stop, total
