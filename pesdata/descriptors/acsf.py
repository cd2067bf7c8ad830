"""Behler–Parrinello atom-centred symmetry functions (ACSF) in torch.

Definitions (Behler, J. Chem. Phys. 134, 074106 (2011)), with fc(r) = 0.5 [cos(π r / rc) + 1]
for r < rc and 0 beyond:

* G1 = Σ_j fc(r_ij)
* G2 = Σ_j exp(−η (r_ij − Rs)²) fc(r_ij)
* G4 = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(−η (r_ij² + r_ik² + r_jk²))
  · fc(r_ij) fc(r_ik) fc(r_jk)
* G5 = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(−η (r_ij² + r_ik²)) fc(r_ij) fc(r_ik)

Conventions, chosen to equal dscribe's ACSF for the same parameters: the angular sums run over
unordered pairs {j, k} of distinct neighbours (periodic images are distinct neighbours), the
central atom's element is not encoded, and features are element-resolved in this order — for
each neighbour element Z (ascending atomic number): G1, then the G2 rows in the order given;
then for each unordered element pair (Z_a ≥ Z_b, ordered as dscribe: pair index
a(a+1)/2 + b over sorted species indices): the G4 rows, then the G5 rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase.data import chemical_symbols

from ..errors import ParameterError
from ._base import Descriptor
from ._triplets import triplet_chunks
from .jacobian import add_term_grads, empty_jacobian, triplet_leaves

__all__ = ["ACSF", "default_acsf_params"]


def default_acsf_params(r_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """A documented default grid derived from the cutoff.

    G2: 8 Gaussians centred at Rs = 0, η_n = 1 / (2 σ_n²) with σ_n = rc (n + 1) / 16,
    n = 0..7 (widths from rc/16 to rc/2).
    G4: η ∈ {2 / rc², 0.5 / rc²} (σ = rc/2 and rc), ζ ∈ {1, 4}, λ ∈ {−1, +1} (8 rows).
    """
    sigma = r_cut * (np.arange(8) + 1) / 16
    g2 = np.stack([1 / (2 * sigma**2), np.zeros(8)], axis=1)
    g4 = np.array(
        [[eta, zeta, lam] for eta in (2 / r_cut**2, 0.5 / r_cut**2) for zeta in (1, 4)
         for lam in (-1, 1)],
        dtype=float,
    )
    return g2, g4


def _as_rows(params, width: int, name: str) -> np.ndarray:
    if params is None:
        return np.zeros((0, width))
    try:
        arr = np.asarray(params, dtype=float).reshape(-1, width) if np.size(params) else (
            np.zeros((0, width)))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be rows of {width} numbers, got "
                             f"{str(params)[:200]!r}") from exc
    if not np.isfinite(arr).all():
        raise ParameterError(f"{name} must be finite numbers, got {str(params)[:200]!r}")
    return arr


class ACSF(Descriptor):
    """Element-resolved ACSF (G1, G2, G4, G5), batched and differentiable.

    Parameters
    ----------
    species : sequence of str or int
        Elements that may occur (symbols or atomic numbers); others raise.
    r_cut : float
        Cutoff radius, Å.
    g2_params : array (n, 2), optional
        Rows (η [Å⁻²], Rs [Å]). Default: :func:`default_acsf_params`.
    g4_params, g5_params : array (n, 3), optional
        Rows (η [Å⁻²], ζ, λ). G4 default: :func:`default_acsf_params`; G5 default none.
    dtype : torch.dtype
        float64 (default) or float32.
    device : str or torch.device
        Where the computation runs.
    compile : bool, optional
        Run the per-triplet arithmetic of the angular terms as one ``torch.compile``-fused
        kernel when no gradient is needed (descriptor caching, training-set precompute):
        ~6x faster for that part on CPU, at the price of a one-off compilation (~20 s cold,
        a few seconds from torch's on-disk cache). Default: the ``PESDATA_COMPILE``
        environment variable ("1" turns it on); off otherwise. Values are unchanged (to
        rounding), so the config hash does not include it; a failed compilation warns and
        falls back to the eager kernel.
    """

    name = "acsf"

    def __init__(
        self,
        species: Sequence[str | int],
        r_cut: float,
        g2_params=None,
        g4_params=None,
        g5_params=None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        compile: bool | None = None,
    ) -> None:
        super().__init__(species, r_cut, dtype, device, compile)
        d2, d4 = default_acsf_params(self.r_cut)
        self.g2_params = _as_rows(d2 if g2_params is None else g2_params, 2, "g2_params")
        self.g4_params = _as_rows(d4 if g4_params is None else g4_params, 3, "g4_params")
        self.g5_params = _as_rows(g5_params, 3, "g5_params")
        # plain floats for the triplet kernel (torch.compile traces them as constants)
        self._g4, self._g5 = self.g4_params.tolist(), self.g5_params.tolist()
        n_types = len(self.species)
        self._radial = 1 + len(self.g2_params)
        self._angular = len(self.g4_params) + len(self.g5_params)
        self.chunk = 1 << 16  # triplets per chunk of the angular kernel (measured best here)
        self.n_features = self._radial * n_types + self._angular * n_types * (n_types + 1) // 2

    # -- description ---------------------------------------------------------------------------
    def config(self) -> dict:
        """JSON-serialisable configuration (what the config hash covers)."""
        return {
            "descriptor": self.name,
            "species": self.species,
            "r_cut": self.r_cut,
            "g2_params": self.g2_params.tolist(),
            "g4_params": self.g4_params.tolist(),
            "g5_params": self.g5_params.tolist(),
        }

    @property
    def feature_names(self) -> list[str]:
        """One name per feature column, in output order."""
        sym = [chemical_symbols[z] for z in self.species]
        names = []
        for s in sym:
            names.append(f"G1[{s}]")
            names += [f"G2[{s}](eta={e:g},rs={r:g})" for e, r in self.g2_params]
        for a in range(len(sym)):
            for b in range(a + 1):
                pair = f"{sym[a]}-{sym[b]}"
                names += [f"G4[{pair}](eta={e:g},zeta={z:g},lambda={lam:g})"
                          for e, z, lam in self.g4_params]
                names += [f"G5[{pair}](eta={e:g},zeta={z:g},lambda={lam:g})"
                          for e, z, lam in self.g5_params]
        return names

    def _fc(self, r: torch.Tensor) -> torch.Tensor:
        return 0.5 * (torch.cos(torch.pi * r / self.r_cut) + 1)

    def _radial_rows(self, r: torch.Tensor, fc: torch.Tensor) -> list[torch.Tensor]:
        """[G1, G2 rows...] pair terms, one (P,) tensor each."""
        return [fc] + [torch.exp(-eta * (r - rs) ** 2) * fc for eta, rs in self.g2_params]

    def _triplet_rows(self, cos, rij, rik, fc2) -> list[torch.Tensor]:
        """G4 then G5 triplet terms without the 2^(1−ζ) factor, one (T,) tensor per row."""
        r2 = rij * rij + rik * rik
        rows: list[torch.Tensor] = []
        if self._g4:
            rjk2 = torch.clamp(r2 - 2 * rij * rik * cos, min=0)
            # fc(r_jk), 0 beyond rc: the clamp makes cos(π) = −1 there (zero gradient too)
            x = torch.clamp(torch.sqrt(rjk2), max=self.r_cut) * (torch.pi / self.r_cut)
            fc_jk = (torch.cos(x) + 1) * 0.5
            rows += _angular(self._g4, cos, r2 + rjk2, fc2 * fc_jk)
        if self._g5:
            rows += _angular(self._g5, cos, r2, fc2)
        return rows

    def _angular_scale(self) -> np.ndarray:
        """2^(1−ζ) of every angular row (G4 then G5)."""
        return 2.0 ** (1 - np.concatenate([self.g4_params[:, 1], self.g5_params[:, 1]]))

    def _jacobian(self, vec, center, tj, n_atoms):
        """Per-term pair Jacobian (see :mod:`pesdata.descriptors.jacobian`)."""
        vec = vec.detach()
        g = self.from_pairs(vec, center, tj, n_atoms)
        n_types = len(self.species)
        jac = empty_jacobian(len(center), self.n_features, vec)
        if center.numel() == 0:
            return g, jac
        v = vec.clone().requires_grad_(True)
        r = torch.linalg.norm(v, dim=1)
        rows = self._radial_rows(r, self._fc(r))
        base = tj * self._radial
        add_term_grads(jac, rows, [base + k for k in range(len(rows))], [v], [torch.arange(
            len(v), device=v.device)])
        if not self._angular:
            return g, jac
        scale = self._angular_scale().tolist()
        for p, q, vp, vq in triplet_leaves(vec, center, self.chunk):
            rij, rik = torch.linalg.norm(vp, dim=1), torch.linalg.norm(vq, dim=1)
            cos = (vp * vq).sum(1) / (rij * rik)
            rows = self._triplet_rows(cos, rij, rik, self._fc(rij) * self._fc(rik))
            hi, low = torch.maximum(tj[p], tj[q]), torch.minimum(tj[p], tj[q])
            base = n_types * self._radial + (hi * (hi + 1) // 2 + low) * self._angular
            add_term_grads(jac, [row * c for row, c in zip(rows, scale, strict=True)],
                           [base + a for a in range(len(rows))], [vp, vq], [p, q])
        return g, jac

    # -- computation --------------------------------------------------------------------------
    def from_pairs(
        self, vec: torch.Tensor, center: torch.Tensor, tj: torch.Tensor, n_atoms: int
    ) -> torch.Tensor:
        """Features from the neighbour-list pair vectors (see :meth:`Descriptor.from_pairs`)."""
        dtype, dev = vec.dtype, vec.device
        out = torch.zeros(n_atoms * self.n_features, dtype=dtype, device=dev)
        if center.numel() == 0:
            return out.view(n_atoms, self.n_features)
        r = torch.linalg.norm(vec, dim=1)
        fc = self._fc(r)

        # radial block: [G1, G2...] per neighbour element
        values = torch.stack(self._radial_rows(r, fc), dim=1)  # (P, 1 + n_g2)
        col = tj[:, None] * self._radial + torch.arange(self._radial, device=dev)
        index = center[:, None] * self.n_features + col
        out.index_add_(0, index.reshape(-1), values.reshape(-1))

        if self._angular:
            self._angular_terms(out, center, vec, r, fc, tj, dtype, dev)
        return out.view(n_atoms, self.n_features)

    def _triplet_values(self, a_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        """(n_angular, T) terms from the two sides' packed pair quantities (ux, uy, uz, r, fc)."""
        cos = a_[0] * b_[0] + a_[1] * b_[1] + a_[2] * b_[2]
        return torch.stack(self._triplet_rows(cos, a_[3], b_[3], a_[4] * b_[4]))

    def _angular_terms(self, out, center, vec, r, fc, tj, dtype, dev) -> None:
        """G4/G5 over unordered neighbour pairs {p, q} of each center (p < q in list order).

        Kernel notes: triplets are generated and reduced in chunks of whole centers (memory
        stays bounded); pair quantities are packed and gathered once per triplet side; one
        exp per distinct η; integer ζ by repeated squaring; r_jk from the law of cosines
        (optionally all fused by ``torch.compile``); the parameter-major (n_angular × T) terms
        are reduced per chunk — a segment sum per center for one element, an ``index_add_``
        over (center, element pair) otherwise — and the constant 2^(1−ζ) is applied after the
        reduction.
        """
        n_types = len(self.species)
        n_pt = n_types * (n_types + 1) // 2
        n_atoms = out.numel() // self.n_features
        acc = torch.zeros(self._angular, n_atoms * n_pt, dtype=dtype, device=dev)
        unit = vec / r[:, None]
        order = torch.argsort(center, stable=True)
        centers = center[order]
        # pair quantities sorted by center, one contiguous row each: (5 or 6, P); the
        # neighbour element is only needed with more than one species
        quantities = [*unit.T, r, fc] + ([tj.to(dtype)] if n_types > 1 else [])
        rows_sorted = torch.stack(quantities)[:, order].contiguous()
        kernel = self._kernel(self._triplet_values,
                              torch.is_grad_enabled() and rows_sorted.requires_grad)
        for lo, nq, p_rep, q_rep in triplet_chunks(centers, self.chunk):
            # the p side repeats runs of consecutive entries; the q side is a 1-D gather per row
            a_ = torch.repeat_interleave(rows_sorted[:, lo : lo + nq.numel()], nq, dim=1)
            b_ = torch.stack([row.index_select(0, q_rep) for row in rows_sorted])
            values = kernel(a_, b_)
            if n_types == 1:
                # triplets come grouped by center: a segment sum (~2.5x faster than a scatter)
                seg, inverse = torch.unique_consecutive(centers[lo : lo + nq.numel()],
                                                        return_inverse=True)
                lengths = torch.zeros(len(seg), dtype=nq.dtype, device=dev).index_add_(
                    0, inverse, nq)
                sums = torch.segment_reduce(
                    values, "sum", lengths=lengths.expand(len(values), -1).contiguous(), axis=1)
                acc.index_add_(1, seg, sums)
            else:
                ta, tb = a_[5].long(), b_[5].long()
                hi, low = torch.maximum(ta, tb), torch.minimum(ta, tb)
                c = centers[p_rep]
                acc.index_add_(1, c * n_pt + hi * (hi + 1) // 2 + low, values)
        acc *= torch.as_tensor(self._angular_scale(), dtype=dtype, device=dev)[:, None]
        block = acc.view(self._angular, n_atoms, n_pt).permute(1, 2, 0).reshape(n_atoms, -1)
        out.view(n_atoms, self.n_features)[:, n_types * self._radial :] += block


def _angular(
    params: Sequence[Sequence[float]], cos: torch.Tensor, r2: torch.Tensor, cut: torch.Tensor
) -> list[torch.Tensor]:
    """(1 + λ cos)^ζ exp(−η r2) cut for every parameter row, one (T,) tensor per row.

    One exp per distinct η; integer ζ by repeated squaring (others by pow); the 2^(1−ζ)
    factor is applied by the caller after the reduction.
    """
    gauss: dict[float, torch.Tensor] = {}
    squares: dict[float, list[torch.Tensor]] = {}  # λ → [b, b², b⁴, ...], b = 1 + λ cos
    powers: dict[tuple[float, float], torch.Tensor] = {}
    rows = []
    for eta, zeta, lam in params:
        if eta not in gauss:
            gauss[eta] = torch.exp(-eta * r2) * cut
        if (lam, zeta) not in powers:
            if lam not in squares:
                squares[lam] = [1 + lam * cos]  # ≥ 0 up to rounding, as |cos| ≤ 1
            powers[(lam, zeta)] = _power(squares[lam], zeta)
        rows.append(powers[(lam, zeta)] * gauss[eta])
    return rows


def _power(squares: list[torch.Tensor], zeta: float) -> torch.Tensor:
    """b**ζ from the list [b, b², b⁴, ...] (extended in place); non-integer ζ by pow."""
    if not (float(zeta).is_integer() and zeta >= 1):
        return torch.clamp(squares[0], min=0) ** zeta  # a rounding −1e-16 must not give NaN
    n, m, result = int(zeta), 0, None
    while n:
        if m == len(squares):
            squares.append(squares[-1] * squares[-1])
        if n & 1:
            result = squares[m] if result is None else result * squares[m]
        n >>= 1
        m += 1
    return result
