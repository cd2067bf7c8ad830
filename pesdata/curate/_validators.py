"""Frame validators: each a small class with a name, a threshold and a message.

Per-frame validators implement ``check(frame) -> list[Issue]``; population validators
(outliers) implement ``check_population(stats) -> dict[int, Issue]`` over summary statistics of
all frames of a curate run. An :class:`Issue` of severity ``"error"`` rejects the frame;
``"warning"`` only flags it (missing labels are flagged, never rejected).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import covalent_radii
from vesin import NeighborList

from ..frames import Frame

__all__ = [
    "CellValidator",
    "ElementValidator",
    "EnergyOutlierValidator",
    "FiniteValidator",
    "ForceOutlierValidator",
    "Issue",
    "LabelValidator",
    "MinDistanceValidator",
    "ShapeValidator",
    "default_validators",
]


@dataclass(frozen=True)
class Issue:
    """One problem found in one frame."""

    validator: str
    field: str
    message: str
    severity: str = "error"

    def to_dict(self) -> dict:
        return {
            "validator": self.validator,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


class ShapeValidator:
    """Arrays must have the shapes of the data model (forces (n, 3), stress 6, cell 3×3, ...)."""

    name = "shape"
    threshold = None
    message = "{field} has shape {shape}, expected {expected}"

    def check(self, frame: Frame) -> list[Issue]:
        n = frame.n_atoms
        want = {"positions": (n, 3), "cell": (3, 3), "pbc": (3,)}
        have = {"positions": frame.positions, "cell": frame.cell, "pbc": frame.pbc}
        if frame.forces is not None:
            want["forces"], have["forces"] = (n, 3), frame.forces
        if frame.stress is not None:
            want["stress"], have["stress"] = (6,), frame.stress
        issues = [
            Issue(self.name, k, self.message.format(field=k, shape=v.shape, expected=want[k]))
            for k, v in have.items()
            if np.shape(v) != want[k]
        ]
        for k, v in frame.arrays.items():
            if np.ndim(v) < 1 or np.shape(v)[0] != n or np.ndim(v) > 2:
                issues.append(
                    Issue(
                        self.name,
                        k,
                        self.message.format(field=k, shape=np.shape(v), expected=f"({n}, ...)"),
                    )
                )
        if n == 0:
            issues.append(Issue(self.name, "numbers", "frame has no atoms"))
        return issues


class FiniteValidator:
    """Positions, cell and labels must be finite (no NaN or inf)."""

    name = "non_finite"
    threshold = None
    message = "{field} contains {count} non-finite value(s)"

    def check(self, frame: Frame) -> list[Issue]:
        fields = {"positions": frame.positions, "cell": frame.cell}
        for k in ("energy", "forces", "stress"):
            value = getattr(frame, k)
            if value is not None:
                fields[k] = value
        issues = []
        for k, v in fields.items():
            finite = np.isfinite(np.asarray(v, dtype=float))
            if finite.all():
                continue
            bad = int(finite.size - np.count_nonzero(finite))
            if bad:
                issues.append(Issue(self.name, k, self.message.format(field=k, count=bad)))
        return issues


class ElementValidator:
    """Atomic numbers must be real elements (1–118)."""

    name = "element"
    threshold = (1, 118)
    message = "unknown atomic number(s) {bad}"

    def check(self, frame: Frame) -> list[Issue]:
        z = frame.numbers
        bad = np.unique(z[(z < self.threshold[0]) | (z > self.threshold[1])])
        if bad.size:
            return [Issue(self.name, "numbers", self.message.format(bad=bad.tolist()))]
        return []


class CellValidator:
    """Periodic cells must not be degenerate or near-singular.

    Parameters
    ----------
    threshold : float
        Minimum of ``|det(cell)| / (|a||b||c|)`` over the periodic cell (1 for orthogonal
        vectors, 0 for coplanar ones); default 1e-3. Periodic directions also need a vector
        longer than 1e-3 Å.
    """

    name = "cell"
    message = "{detail}"

    def __init__(self, threshold: float = 1e-3) -> None:
        self.threshold = threshold

    def check(self, frame: Frame) -> list[Issue]:
        if not frame.pbc.any():
            return []
        lengths = np.linalg.norm(frame.cell, axis=1)
        short = [i for i in range(3) if frame.pbc[i] and lengths[i] < 1e-3]
        if short:
            detail = f"periodic cell vector(s) {short} have zero length"
            return [Issue(self.name, "cell", self.message.format(detail=detail))]
        if frame.pbc.all():
            ratio = abs(np.linalg.det(frame.cell)) / np.prod(lengths)
            if ratio < self.threshold:
                detail = (
                    f"cell is near-singular: |det|/(|a||b||c|) = {ratio:.2e} < {self.threshold}"
                )
                return [Issue(self.name, "cell", self.message.format(detail=detail))]
        return []


class MinDistanceValidator:
    """Atoms may not sit closer than ``factor`` × the sum of their covalent radii.

    Parameters
    ----------
    factor : float
        Fraction of ``r_cov(i) + r_cov(j)`` (ASE's covalent radii); default 0.5 — well below any
        bond, above the overlaps of broken structures.
    """

    name = "overlap"
    message = "atoms {i} and {j} are {d:.3f} Å apart (< {limit:.3f} Å)"

    def __init__(self, factor: float = 0.5) -> None:
        self.threshold = factor

    def check(self, frame: Frame) -> list[Issue]:
        z = frame.numbers
        if len(z) < 2 and not frame.pbc.any():
            return []
        radii = covalent_radii[np.clip(z, 0, len(covalent_radii) - 1)]
        cutoff = self.threshold * 2 * float(radii.max())
        if cutoff <= 0:
            return []
        box = frame.cell if frame.pbc.any() else np.zeros((3, 3))
        nl = NeighborList(cutoff=cutoff, full_list=False, n_threads=1)  # threads cost more here
        i, j, d = nl.compute(frame.positions, box, frame.pbc.tolist(), quantities="ijd")
        if len(d) == 0:
            return []
        limit = self.threshold * (radii[i] + radii[j])
        bad = np.flatnonzero(d < limit)
        if bad.size == 0:
            return []
        k = bad[np.argmin(d[bad] / limit[bad])]
        msg = self.message.format(i=int(i[k]), j=int(j[k]), d=float(d[k]), limit=float(limit[k]))
        return [Issue(self.name, "positions", msg)]


class LabelValidator:
    """Frames without energy and forces are flagged as unlabelled (a warning, not a rejection)."""

    name = "unlabelled"
    threshold = None
    message = "frame has no energy and no forces"

    def check(self, frame: Frame) -> list[Issue]:
        if frame.energy is None and frame.forces is None:
            return [Issue(self.name, "energy", self.message, severity="warning")]
        return []


def robust_z(values: np.ndarray, mad_floor: float = 0.0) -> np.ndarray:
    """Robust z-score ``0.6745 (x − median) / max(MAD, mad_floor)``; 0 where that vanishes.

    The floor keeps a tight group (e.g. a dozen near-equilibrium cells whose forces agree to
    0.01 eV/Å) from calling an ordinary structure an outlier.
    """
    med = np.median(values)
    mad = max(float(np.median(np.abs(values - med))), mad_floor)
    if mad <= 0:
        return np.zeros_like(values)
    return 0.6745 * (values - med) / mad


class _OutlierValidator:
    """Robust z-score of a per-frame statistic within each (method, composition) group.

    A group needs ``min_group`` frames before outliers are judged; composition is the reduced
    formula, so TiO2 cells of any size form one group and O-deficient Ti8O15 cells another.
    """

    name = ""
    stat = ""
    field = ""
    message = "{stat} = {value:.4g} has robust z-score {z:.1f} (> {threshold}) among {n} frames"

    def __init__(self, threshold: float, min_group: int = 10, mad_floor: float = 0.0) -> None:
        self.threshold = threshold
        self.min_group = min_group
        self.mad_floor = mad_floor

    def check_population(self, stats: dict[str, np.ndarray]) -> dict[int, Issue]:
        """Map frame index → issue for the outliers among ``stats``.

        ``stats`` holds equal-length arrays: ``group`` (object keys of method and composition)
        and the statistic named ``self.stat`` (NaN where absent).
        """
        out: dict[int, Issue] = {}
        keys = stats["group"]
        values = stats[self.stat]
        for key in set(keys.tolist()):
            idx = np.flatnonzero((keys == key) & np.isfinite(values))
            if idx.size < self.min_group:
                continue
            z = robust_z(values[idx], self.mad_floor)
            for k in np.flatnonzero(np.abs(z) > self.threshold):
                msg = self.message.format(
                    stat=self.stat,
                    value=values[idx[k]],
                    z=z[k],
                    threshold=self.threshold,
                    n=idx.size,
                )
                out[int(idx[k])] = Issue(self.name, self.field, msg)
        return out


class ForceOutlierValidator(_OutlierValidator):
    """Frames whose largest force magnitude is an outlier (robust z-score above ``threshold``).

    Defaults: threshold 15 and a MAD floor of 1 eV/Å, so a frame is rejected only when its
    max|F| lies more than ~22 eV/Å above its group's median. Why so wide: real training sets
    are broad — the mlearn, aenet and GAP-18 sets in ``../shared/data`` mix AIMD snapshots,
    strained cells, surfaces and vacancies (max|F| up to 12 eV/Å), and small, tight groups
    (a dozen near-equilibrium TiO2 cells agreeing to 0.01 eV/Å) would otherwise call an
    ordinary structure an outlier. Forces off by a unit factor (Hartree-scaled XSF forces,
    ×27) or from an exploded SCF stand far above the bar.
    """

    name = "force_outlier"
    stat = "fmax"
    field = "forces"

    def __init__(
        self, threshold: float = 15.0, min_group: int = 10, mad_floor: float = 1.0
    ) -> None:
        super().__init__(threshold, min_group, mad_floor)


class EnergyOutlierValidator(_OutlierValidator):
    """Frames whose energy per atom is an outlier (robust z-score above ``threshold``).

    Defaults: threshold 15 and a MAD floor of 1 eV/atom, so a frame is rejected only when its
    E/atom lies more than ~22 eV/atom from its group's median. Global-search data sets hold
    legitimately high-energy structures (aenet TiO2 spans 1 eV/atom within one composition
    whose MAD is 0.015 eV/atom) and GAP-style sets hold isolated atoms ~5 eV/atom above the
    bulk; both pass. Energies from another reference (absolute CASTEP vs VASP), in kJ/mol,
    or a frame with a garbage energy do not.
    """

    name = "energy_outlier"
    stat = "energy_per_atom"
    field = "energy"

    def __init__(
        self, threshold: float = 15.0, min_group: int = 10, mad_floor: float = 1.0
    ) -> None:
        super().__init__(threshold, min_group, mad_floor)


def default_validators() -> tuple[list, list]:
    """The default (per-frame, population) validator lists."""
    frame = [
        ShapeValidator(),
        ElementValidator(),
        FiniteValidator(),
        CellValidator(),
        MinDistanceValidator(),
        LabelValidator(),
    ]
    population = [ForceOutlierValidator(), EnergyOutlierValidator()]
    return frame, population
