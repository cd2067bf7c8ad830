"""Power-type structure descriptors (PTSD, S1–S6) of the SSW-NN global potential, in torch.

With fc(r) = 0.5 tanh³(1 − r/rc) for r < rc (0 beyond) and Rⁿ(r) = rⁿ fc(r):

* S1 = Σ_j Rⁿ(r_ij)
* S2 = [Σ_m |Σ_j Rⁿ(r_ij) Y_Lm(r̂_ij)|²]^½
* S3 = 2^(1−ζ) Σ_{j≠k} (1 + λ cos θ_ijk)^ζ Rⁿ(r_ij) Rᵐ(r_ik) Rᵖ(r_jk)
* S4 = 2^(1−ζ) Σ_{j≠k} (1 + λ cos θ_ijk)^ζ Rⁿ(r_ij) Rᵐ(r_ik)
* S5 = [Σ_m |Σ_{j≠k} Rⁿ(r_ij) Rᵐ(r_ik) Rᵖ(r_jk) (Y_Lm(r̂_ij) + Y_Lm(r̂_ik))|²]^½
* S6 = 2^(1−ζ) Σ_{j,k,l distinct} (1 + λ cos δ_ijkl)^ζ Rⁿ(r_ij) Rᵐ(r_ik) Rᵖ(r_il)

Conventions where the published form leaves room:

* Sums run over *ordered* neighbour tuples of distinct neighbour entries (periodic images are
  distinct neighbours): S3–S5 over j ≠ k (both orders), S6 over ordered triples — so terms
  with n ≠ m count each geometric pair in both roles.
* Rᵖ(r_jk) uses the cutoff too: pairs j, k farther apart than rc contribute nothing to S3/S5.
* δ_ijkl is the dihedral about the i–k axis: the angle between the plane (r_ij, r_ik) and the
  plane (r_ik, r_il), cos δ = (n₁·n₂)/(|n₁||n₂|) with n₁ = r_ij × r_ik, n₂ = r_ik × r_il;
  collinear triples (a zero normal) contribute nothing.
* Y_Lm are orthonormal real spherical harmonics (the sums over m equal those of the complex
  ones). Square roots are taken of max(x, tiny) so gradients stay finite for empty shells.
* Element resolution: S1/S2 per neighbour element; S3–S5 per unordered element pair of (j, k);
  S6 per unordered element triple of (j, k, l). Feature order: for each element (ascending Z)
  its S1 then S2 rows; for each pair (a ≥ b, index a(a+1)/2 + b) its S3, S4, S5 rows; for each
  triple (a ≥ b ≥ c, in that nested order) its S6 rows; rows in the order given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations_with_replacement

import numpy as np
import torch
from ase.data import chemical_symbols

from ..errors import ParameterError
from ._base import Descriptor
from ._triplets import triplet_chunks
from .jacobian import add_term_grads, empty_jacobian, norm_direction, triplet_leaves

__all__ = ["PTSD", "real_spherical_harmonics"]

_WIDTH = {"s1": 1, "s2": 2, "s3": 5, "s4": 4, "s5": 4, "s6": 5}


def default_ptsd_params() -> dict[str, list]:
    """Documented default parameter sets (S6, four-body and costly, is off by default)."""
    return {
        "s1": [[n] for n in range(6)],
        "s2": [[n, ell] for n in (0, 2) for ell in (1, 2, 3, 4)],
        "s3": [[0, 0, 0, z, lam] for z in (1, 4) for lam in (-1, 1)],
        "s4": [[0, 0, z, lam] for z in (1, 4) for lam in (-1, 1)],
        "s5": [[0, 0, 0, ell] for ell in (1, 2, 3)],
        "s6": [],
    }


def real_spherical_harmonics(unit: torch.Tensor, l_max: int) -> list[torch.Tensor]:
    """Orthonormal real Y_lm of unit vectors, one (P, 2l+1) tensor per l = 0..l_max.

    Uses Y ∝ (dᵐP_l/dzᵐ)(z) · Re/Im((x + iy)ᵐ), which has no 1/sinθ and is smooth at the
    poles (differentiable everywhere).
    """
    x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
    # (x + iy)^m as (re, im)
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(l_max):
        re.append(re[-1] * x - im[-1] * y)
        im.append(re[-2] * y + im[-1] * x)
    # Q[l][m] = d^m P_l / dz^m by the standard recurrences
    q = [[None] * (l_max + 1) for _ in range(l_max + 1)]
    for m in range(l_max + 1):
        q[m][m] = torch.full_like(z, float(np.prod(np.arange(1, 2 * m, 2)) if m else 1.0))
        if m + 1 <= l_max:
            q[m + 1][m] = (2 * m + 1) * z * q[m][m]
        for ell in range(m + 2, l_max + 1):
            q[ell][m] = ((2 * ell - 1) * z * q[ell - 1][m] - (ell + m - 1) * q[ell - 2][m]) / (
                ell - m
            )
    out = []
    for ell in range(l_max + 1):
        cols = []
        for m in range(-ell, ell + 1):
            am = abs(m)
            norm = math.sqrt(
                (2 * ell + 1) / (4 * math.pi) * math.factorial(ell - am) / math.factorial(ell + am)
            )
            if m == 0:
                cols.append(norm * q[ell][0])
            else:
                trig = re[am] if m > 0 else im[am]
                cols.append(math.sqrt(2) * norm * q[ell][am] * trig)
        out.append(torch.stack(cols, dim=1))
    return out


class PTSD(Descriptor):
    """Element-resolved power-type structure descriptors S1–S6, batched and differentiable.

    Parameters
    ----------
    species : sequence of str or int
    r_cut : float
        Cutoff radius, Å.
    s1 .. s6 : list of rows, optional
        s1 rows (n,); s2 rows (n, L); s3 rows (n, m, p, ζ, λ); s4 rows (n, m, ζ, λ);
        s5 rows (n, m, p, L); s6 rows (n, m, p, ζ, λ). Powers n, m, p ≥ 0, L ≥ 0 integers.
        Defaults: :func:`default_ptsd_params`.
    dtype, device, compile : as for :class:`~pesdata.descriptors.ACSF` (``compile`` fuses the
        S3–S5 triplet terms when no gradient is needed).
    """

    name = "ptsd"

    def __init__(
        self,
        species: Sequence[str | int],
        r_cut: float,
        s1=None, s2=None, s3=None, s4=None, s5=None, s6=None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        compile: bool | None = None,
    ) -> None:
        super().__init__(species, r_cut, dtype, device, compile)
        defaults = default_ptsd_params()
        given = {"s1": s1, "s2": s2, "s3": s3, "s4": s4, "s5": s5, "s6": s6}
        self.params: dict[str, np.ndarray] = {}
        for key, rows in given.items():
            rows = defaults[key] if rows is None else rows
            try:
                arr = np.asarray(rows, dtype=float).reshape(-1, _WIDTH[key])
            except (TypeError, ValueError) as exc:
                raise ParameterError(f"{key} parameters must be rows of {_WIDTH[key]} numbers, "
                                     f"got {str(rows)[:200]!r}") from exc
            if not np.isfinite(arr).all():
                raise ParameterError(f"{key} parameters must be finite, got {str(rows)[:200]!r}")
            self.params[key] = arr
        for key, col in (("s2", 1), ("s5", 3)):
            ells = self.params[key][:, col]
            if (ells < 0).any() or not np.all(ells == np.round(ells)):
                raise ParameterError(
                    f"{key}: L must be a non-negative integer, got {str(ells.tolist())[:200]}")
        # plain floats for the triplet kernel (torch.compile traces them as constants)
        self._rows = {k: v.tolist() for k, v in self.params.items()}
        t = len(self.species)
        self._n1 = len(self.params["s1"]) + len(self.params["s2"])
        self._n2 = sum(len(self.params[k]) for k in ("s3", "s4", "s5"))
        self._n3 = len(self.params["s6"])
        self._pairs = t * (t + 1) // 2
        self._triples = list(combinations_with_replacement(range(t - 1, -1, -1), 3))
        self.n_features = self._n1 * t + self._n2 * self._pairs + self._n3 * len(self._triples)

    def config(self) -> dict:
        """JSON-serialisable configuration (what the config hash covers)."""
        return {
            "descriptor": self.name, "species": self.species, "r_cut": self.r_cut,
            **{k: v.tolist() for k, v in self.params.items()},
        }

    @property
    def feature_names(self) -> list[str]:
        """One name per feature column, in output order."""
        sym = [chemical_symbols[z] for z in self.species]

        def rows(key, label):
            return [f"{key.upper()}[{label}]({','.join(f'{v:g}' for v in r)})"
                    for r in self.params[key]]

        names = []
        for s in sym:
            names += rows("s1", s) + rows("s2", s)
        for a in range(len(sym)):
            for b in range(a + 1):
                names += rows("s3", f"{sym[a]}-{sym[b]}") + rows("s4", f"{sym[a]}-{sym[b]}")
                names += rows("s5", f"{sym[a]}-{sym[b]}")
        for a, b, c in self._triples:
            names += rows("s6", f"{sym[a]}-{sym[b]}-{sym[c]}")
        return names

    # -- computation --------------------------------------------------------------------------
    def _fc(self, r: torch.Tensor) -> torch.Tensor:
        inside = r < self.r_cut
        return torch.where(inside, 0.5 * torch.tanh(1 - r / self.r_cut) ** 3, torch.zeros_like(r))

    def _l_max(self) -> int:
        ells = [int(v) for v in np.concatenate([self.params["s2"][:, 1], self.params["s5"][:, 3]])]
        return max(ells, default=-1)

    def _geometry(self, vec: torch.Tensor, l_max: int | None = None):
        """r, unit vectors, fc(r) and the Y_lm list (l ≤ l_max, default all) of pair vectors."""
        r = torch.linalg.norm(vec, dim=1)
        unit = vec / r[:, None]
        lmax = self._l_max() if l_max is None else l_max
        return r, unit, self._fc(r), real_spherical_harmonics(unit, lmax) if lmax >= 0 else []

    def _s5_ells(self) -> list[int]:
        return sorted({int(ell) for *_, ell in self.params["s5"]})

    def _pair_terms(self, r, fc, ylm) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """S1 pair terms (P,) and S2 pair terms (P, 2L+1), one per parameter row."""
        s1 = [r**n * fc for (n,) in self.params["s1"]]
        s2 = [ylm[int(ell)] * (r**n * fc)[:, None] for n, ell in self.params["s2"]]
        return s1, s2

    def _triplet_terms(self, rij, rik, cos, fij, fik, yp, yq):
        """S3 and S4 terms (T,) of unordered pairs {j, k} (both orders summed), S5 (T, 2L+1)."""
        rjk = torch.sqrt(torch.clamp(rij**2 + rik**2 - 2 * rij * rik * cos, min=0))
        fjk = self._fc(rjk)
        rows = []

        def pair_radial(n, m):
            return rij**n * fij * rik**m * fik + rik**n * fik * rij**m * fij

        for n, m, pw, zeta, lam in self._rows["s3"]:
            ang = 2 ** (1 - zeta) * torch.clamp(1 + lam * cos, min=0) ** zeta
            rows.append(ang * pair_radial(n, m) * (rjk**pw * fjk))
        for n, m, zeta, lam in self._rows["s4"]:
            ang = 2 ** (1 - zeta) * torch.clamp(1 + lam * cos, min=0) ** zeta
            rows.append(ang * pair_radial(n, m))
        s5 = [(pair_radial(n, m) * (rjk**pw * fjk))[:, None] * (yp[int(ell)] + yq[int(ell)])
              for n, m, pw, ell in self._rows["s5"]]
        return rows, s5

    def _quad_terms(self, vj, vk, vl, rj, rk, rl, fj, fk, fl) -> list[torch.Tensor]:
        """S6 terms of ordered triples (j, k, l) of distinct neighbours, one (Q,) per row."""
        n1 = torch.linalg.cross(vj, vk)
        n2 = torch.linalg.cross(vk, vl)
        norm = torch.linalg.norm(n1, dim=1) * torch.linalg.norm(n2, dim=1)
        ok = norm > 1e-12
        cosd = torch.where(ok, (n1 * n2).sum(1) / torch.where(ok, norm, 1), 0)
        rows = []
        for n_, m_, p_, zeta, lam in self.params["s6"]:
            ang = 2 ** (1 - zeta) * torch.clamp(1 + lam * cosd, min=0) ** zeta
            rows.append(torch.where(ok, ang * rj**n_ * fj * rk**m_ * fk * rl**p_ * fl, 0))
        return rows

    def from_pairs(
        self, vec: torch.Tensor, center: torch.Tensor, tj: torch.Tensor, n_atoms: int
    ) -> torch.Tensor:
        """Features from the neighbour-list pair vectors (see :meth:`Descriptor.from_pairs`)."""
        return self._features(vec, center, tj, n_atoms)[0]

    def _features(self, vec, center, tj, n_atoms):
        """Features, and the S2 and S5 sums before their norms (for :meth:`_jacobian`)."""
        t = len(self.species)
        dtype, dev = vec.dtype, vec.device
        out = torch.zeros(n_atoms, self.n_features, dtype=dtype, device=dev)
        if center.numel() == 0:
            return out, [], []
        r, unit, fc, ylm = self._geometry(vec)
        s1_terms, s2_terms = self._pair_terms(r, fc, ylm)
        row = center * t + tj
        acc1 = torch.zeros(n_atoms * t, len(s1_terms), dtype=dtype, device=dev)
        if s1_terms:
            acc1.index_add_(0, row, torch.stack(s1_terms, 1))
        acc2 = [torch.zeros(n_atoms * t, y.shape[1], dtype=dtype, device=dev).index_add_(0, row, y)
                for y in s2_terms]
        block1 = torch.cat([acc1, *[_norm(a) for a in acc2]], 1)
        out[:, : t * self._n1] = block1.view(n_atoms, t * self._n1)
        acc5 = []
        if self._n2:
            block, acc5 = self._three_body(center, r, unit, fc, tj, ylm, n_atoms)
            out[:, t * self._n1 : t * self._n1 + self._pairs * self._n2] = block
        if self._n3:
            out[:, t * self._n1 + self._pairs * self._n2 :] = self._four_body(
                center, r, vec, fc, tj, n_atoms
            )
        return out, acc2, acc5

    def _three_body(self, center, r, unit, fc, tj, ylm, n_atoms):
        """S3, S4, S5 over ordered pairs j ≠ k (each unordered pair in both roles)."""
        n_pt, dtype, dev = self._pairs, r.dtype, r.device
        n34 = len(self.params["s3"]) + len(self.params["s4"])
        acc = torch.zeros(n_atoms * n_pt, n34, dtype=dtype, device=dev)
        acc5 = [torch.zeros(n_atoms * n_pt, 2 * int(ell) + 1, dtype=dtype, device=dev)
                for *_, ell in self.params["s5"]]
        order = torch.argsort(center, stable=True)
        centers = center[order]
        terms = self._kernel(self._triplet_terms, torch.is_grad_enabled() and r.requires_grad)
        ells = self._s5_ells()
        for _lo, _nq, p_rep, q_rep in triplet_chunks(centers, 1 << 16):
            p, q = order[p_rep], order[q_rep]
            cos = (unit[p] * unit[q]).sum(1)
            rows, s5 = terms(r[p], r[q], cos, fc[p], fc[q], {e: ylm[e][p] for e in ells},
                             {e: ylm[e][q] for e in ells})
            hi, lo = torch.maximum(tj[p], tj[q]), torch.minimum(tj[p], tj[q])
            row = centers[p_rep] * n_pt + hi * (hi + 1) // 2 + lo
            if rows:
                acc.index_add_(0, row, torch.stack(rows, 1))
            for a, w in zip(acc5, s5, strict=True):
                a.index_add_(0, row, w)
        full = torch.cat([acc, *[_norm(a) for a in acc5]], 1)  # s3, s4, s5 order
        return full.view(n_atoms, n_pt * self._n2), acc5

    def _quads(self, center, tj):
        """Per center with ≥ 3 neighbours: (center, j, k, l entry indices, triple-type index)."""
        lut = torch.full((len(self.species),) * 3, -1, dtype=torch.long, device=center.device)
        for k, (a, b, c) in enumerate(self._triples):
            for perm in {(a, b, c), (a, c, b), (b, a, c), (b, c, a), (c, a, b), (c, b, a)}:
                lut[perm] = k
        order = torch.argsort(center, stable=True)
        counts = torch.bincount(center[order]).tolist()
        start = 0
        for i_atom, n in enumerate(counts):
            idx = order[start : start + n]
            start += n
            if n < 3:
                continue
            g = torch.arange(n, device=center.device)
            jj, kk, ll = torch.meshgrid(g, g, g, indexing="ij")
            keep = (jj != kk) & (kk != ll) & (jj != ll)
            j, k, l_ = idx[jj[keep]], idx[kk[keep]], idx[ll[keep]]
            yield i_atom, j, k, l_, lut[tj[j], tj[k], tj[l_]]

    def _four_body(self, center, r, vec, fc, tj, n_atoms):
        """S6 over ordered triples of distinct neighbour entries (j, k, l) of each center."""
        n_tr = len(self._triples)
        acc = torch.zeros(n_atoms * n_tr, self._n3, dtype=vec.dtype, device=vec.device)
        for i_atom, j, k, l_, kind in self._quads(center, tj):
            vals = self._quad_terms(vec[j], vec[k], vec[l_], r[j], r[k], r[l_],
                                    fc[j], fc[k], fc[l_])
            acc.index_add_(0, kind + i_atom * n_tr, torch.stack(vals, 1))
        return acc.view(n_atoms, n_tr * self._n3)

    def _jacobian(self, vec, center, tj, n_atoms):
        """Per-term pair Jacobian (see :mod:`pesdata.descriptors.jacobian`).

        S2 and S5 are norms of sums: their terms are contracted first with the (fixed) unit
        vector of the summed Y_lm coefficients, d‖a‖ = (a / ‖a‖) · da.
        """
        vec = vec.detach()
        g, acc2, acc5 = self._features(vec, center, tj, n_atoms)
        t, n_feat, dev = len(self.species), self.n_features, vec.device
        jac = empty_jacobian(len(center), n_feat, vec)
        if center.numel() == 0:
            return g, jac
        v = vec.clone().requires_grad_(True)
        r, _, fc, ylm = self._geometry(v)
        s1_terms, s2_terms = self._pair_terms(r, fc, ylm)
        row = center * t + tj
        rows = s1_terms + [(norm_direction(a)[row] * y).sum(1)
                           for a, y in zip(acc2, s2_terms, strict=True)]
        add_term_grads(jac, rows, [tj * self._n1 + k for k in range(len(rows))], [v],
                       [torch.arange(len(v), device=dev)])
        if self._n2:
            units5 = [norm_direction(a) for a in acc5]
            for p, q, vp, vq in triplet_leaves(vec, center, 1 << 16):
                lmax = max(self._s5_ells(), default=-1)
                rij, up, fij, yp = self._geometry(vp, lmax)
                rik, uq, fik, yq = self._geometry(vq, lmax)
                rows, s5 = self._triplet_terms(rij, rik, (up * uq).sum(1), fij, fik, yp, yq)
                hi, lo = torch.maximum(tj[p], tj[q]), torch.minimum(tj[p], tj[q])
                pt = hi * (hi + 1) // 2 + lo
                row = center[p] * self._pairs + pt
                rows += [(u[row] * w).sum(1) for u, w in zip(units5, s5, strict=True)]
                base = t * self._n1 + pt * self._n2
                add_term_grads(jac, rows, [base + k for k in range(len(rows))], [vp, vq], [p, q])
        if self._n3:
            base0 = t * self._n1 + self._pairs * self._n2
            for _i, j, k, l_, kind in self._quads(center, tj):
                vj, vk, vl = (vec[x].requires_grad_(True) for x in (j, k, l_))
                geo = [self._geometry(x, -1) for x in (vj, vk, vl)]
                rows = self._quad_terms(vj, vk, vl, *(x[0] for x in geo), *(x[2] for x in geo))
                add_term_grads(jac, rows, [base0 + kind * self._n3 + m for m in range(len(rows))],
                               [vj, vk, vl], [j, k, l_])
        return g, jac


def _norm(a: torch.Tensor) -> torch.Tensor:
    """Row norms (M, 1) of a sum of Y_lm coefficients; sqrt of max(x, tiny) keeps grads finite."""
    return torch.sqrt(torch.clamp((a * a).sum(1), min=torch.finfo(a.dtype).tiny))[:, None]

