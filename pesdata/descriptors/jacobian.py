"""Derivatives of descriptors with respect to the pair vectors of the neighbour list.

Layout of the sparse Jacobian
-----------------------------
A descriptor computes the features ``g`` (N, F) of a batch from the pair vectors ``vec`` (P, 3)
of a full neighbour list: entry ``p`` is the ordered pair (``i_p``, ``j_p``) with
``vec_p = r_j − r_i + S_p · cell``, ``S_p`` the integer image shift. Atom i's features depend on
the vectors of its *own* pairs only (those with ``i_p = i``), so of the (N·F) × (P·3) Jacobian
only one (F, 3) block per pair is non-zero. It is stored as::

    jac : (P, F, 3),   jac[p, f, :] = ∂ g[i_p, f] / ∂ vec_p

— the same storage as n2p2's and aenet's symmetry-function derivatives. With the upstream
gradient ``dE/dg`` (N, F) of any function E of the features, the chain rule through
``vec_p`` gives (see :func:`pair_gradients`)::

    c_p          = Σ_f (∂E/∂g[i_p, f]) jac[p, f]         (P, 3)
    ∂E/∂r_a      = Σ_{p: j_p = a} c_p − Σ_{p: i_p = a} c_p
    ∂E/∂cell_s   = Σ_{p in structure s} S_p ⊗ c_p          (at fixed Cartesian positions)

so force training can reuse ``jac`` every step instead of differentiating the descriptor again.

How it is computed
------------------
Every descriptor here is a sum of elementwise *terms*: a pair term depends on one pair
vector, a triplet term on two (p, q) of one center, a four-body term on three. Differentiating
one row of terms (one parameter set, all T terms at once) with a single backward pass gives
each term's derivative with respect to its own leaves, since the terms are independent;
:func:`add_term_grads` adds them into ``jac`` at (pair, feature). That costs about one pass per
row over the row's own graph — a few forward passes in all — instead of F backward passes over
the whole descriptor (:func:`autograd_jacobian`, the generic fallback every descriptor gets).
Features that are norms of sums (PTSD S2, S5) are handled with :func:`norm_direction`:
``d‖a‖ = (a / ‖a‖) · da``, with ``a`` fixed from the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from ._triplets import triplet_chunks

__all__ = [
    "add_term_grads",
    "autograd_jacobian",
    "empty_jacobian",
    "norm_direction",
    "pair_gradients",
    "triplet_leaves",
]


def empty_jacobian(n_pairs: int, n_features: int, like: torch.Tensor) -> torch.Tensor:
    """A zero pair Jacobian (n_pairs, n_features, 3) in ``like``'s dtype and device."""
    return torch.zeros(n_pairs, n_features, 3, dtype=like.dtype, device=like.device)


def autograd_jacobian(
    from_pairs: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor],
    vec: torch.Tensor,
    center: torch.Tensor,
    tj: torch.Tensor,
    n_atoms: int,
    n_features: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and pair Jacobian of any ``from_pairs``: one backward pass per feature.

    Parameters
    ----------
    from_pairs : callable
        ``from_pairs(vec, center, tj, n_atoms) -> (n_atoms, n_features)``, differentiable in
        ``vec`` (a descriptor's :meth:`~pesdata.descriptors.Descriptor.from_pairs`).
    vec, center, tj : tensors
        Pair vectors (P, 3), center index (P,) and neighbour species index (P,).
    n_atoms, n_features : int

    Returns
    -------
    g : (n_atoms, n_features) tensor, detached
    jac : (P, n_features, 3) tensor, the layout of this module's docstring
    """
    vec = vec.detach().requires_grad_(True)
    g = from_pairs(vec, center, tj, n_atoms)
    if center.numel() == 0:
        return g.detach(), empty_jacobian(0, n_features, g)
    cols = [
        torch.autograd.grad(g[:, k].sum(), vec, retain_graph=k < n_features - 1)[0]
        for k in range(n_features)
    ]
    return g.detach(), torch.stack(cols, 1)


def add_term_grads(
    jac: torch.Tensor,
    rows: Sequence[torch.Tensor],
    cols: Sequence[torch.Tensor | int],
    leaves: Sequence[torch.Tensor],
    pair_index: Sequence[torch.Tensor],
) -> None:
    """Add the derivatives of elementwise terms to a pair Jacobian ``jac`` (P, F, 3), in place.

    Every ``rows[a]`` (T,) holds T terms, term t a function of ``leaves[s][t]`` (T, 3 copies
    of pair vectors, requiring grad) only; term t of row a adds to feature ``cols[a]`` (an int
    or a (T,) tensor) of the center that pairs ``pair_index[s][t]`` belong to. Since terms are
    elementwise, one backward per row gives every term's own derivative, which goes to
    ``jac[pair_index[s][t], cols[a]]``. Costs one pass over each row's own graph — not F
    passes over the whole descriptor.
    """
    flat = jac.view(-1, 3)
    n_feat = jac.shape[1]
    for row, col in zip(rows, cols, strict=True):
        grads = torch.autograd.grad(
            row, leaves, grad_outputs=torch.ones_like(row), retain_graph=True, allow_unused=True
        )
        for grad, idx in zip(grads, pair_index, strict=True):
            if grad is not None:
                flat.index_add_(0, idx * n_feat + col, grad)


def triplet_leaves(
    vec: torch.Tensor, center: torch.Tensor, chunk: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Triplet terms' leaves: ``(p, q, vec_p, vec_q)`` per chunk of unordered pairs p < q.

    ``p`` and ``q`` (T,) index the neighbour list (same center, each unordered pair once);
    ``vec_p`` and ``vec_q`` (T, 3) are fresh copies of their pair vectors that require grad,
    the ``leaves`` of :func:`add_term_grads` with ``pair_index = [p, q]``.
    """
    vec = vec.detach()
    order = torch.argsort(center, stable=True)
    for _lo, _nq, p_rep, q_rep in triplet_chunks(center[order], chunk):
        p, q = order[p_rep], order[q_rep]
        yield p, q, vec[p].requires_grad_(True), vec[q].requires_grad_(True)


def norm_direction(a: torch.Tensor) -> torch.Tensor:
    """``a / ‖a‖`` per row — the derivative of the row norm — and 0 for (near) zero rows."""
    sq = (a * a).sum(1, keepdim=True)
    tiny = torch.finfo(a.dtype).tiny
    return torch.where(sq > tiny, a / torch.sqrt(torch.clamp(sq, min=tiny)), 0)


def pair_gradients(
    dedg: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    shift: torch.Tensor,
    jac: torch.Tensor,
    structure: torch.Tensor,
    n_structures: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of E with respect to positions and cells, from ``dE/dg`` and a pair Jacobian.

    Parameters
    ----------
    dedg : (N, F) tensor
        ∂E/∂g of every atom's features.
    i, j : (P,) long tensors
        Center and neighbour of each pair (a :class:`~pesdata.descriptors._neighbors.Pairs`).
    shift : (P, 3) tensor
        Integer image shift of each pair.
    jac : (P, F, 3) tensor
        The pair Jacobian (this module's layout).
    structure : (N,) long tensor
        Structure index of every atom.
    n_structures : int

    Returns
    -------
    d_positions : (N, 3) tensor
        ∂E/∂r (forces are its negative).
    d_cells : (n_structures, 3, 3) tensor
        ∂E/∂cell at fixed Cartesian positions, row vectors as the cells.
    """
    c = torch.einsum("pf,pfk->pk", dedg[i], jac)
    d_pos = torch.zeros(dedg.shape[0], 3, dtype=jac.dtype, device=jac.device)
    d_pos.index_add_(0, j, c).index_add_(0, i, -c)
    d_cell = torch.zeros(n_structures, 3, 3, dtype=jac.dtype, device=jac.device)
    d_cell.index_add_(0, structure[i], shift.to(jac.dtype)[:, :, None] * c[:, None, :])
    return d_pos, d_cell
