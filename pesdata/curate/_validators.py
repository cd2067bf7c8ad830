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

from ..frames import Frame
from ._neighbors import neighbor_pairs, neighbor_pairs_batch

__all__ = [
    "CellValidator",
    "CoordinateValidator",
    "ElementValidator",
    "EnergyOutlierValidator",
    "FiniteValidator",
    "ForceOutlierValidator",
    "Issue",
    "LabelValidator",
    "LabelValueValidator",
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
    population: dict | None = None  # outliers: the frames compared with (method, ..., n)

    def to_dict(self) -> dict:
        out = {
            "validator": self.validator,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }
        if self.population is not None:
            out["population"] = dict(self.population)
        return out


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


class LabelValueValidator:
    """Labels must be numbers: a boolean or string energy, several values where one energy is
    expected, or forces/stress that are not an array of numbers are rejected with the reason
    :meth:`~pesdata.frames.Frame.from_parts` recorded (``Frame.label_errors``), quoting the
    value."""

    name = "label_value"
    threshold = None
    message = "{reason}"

    def check(self, frame: Frame) -> list[Issue]:
        return [
            Issue(self.name, k, self.message.format(reason=why))
            for k, why in getattr(frame, "label_errors", {}).items()
        ]


class FiniteValidator:
    """Positions, cell and labels must be finite (no NaN or inf).

    A label that was not a number at all (``Frame.label_errors``) is left to
    :class:`LabelValueValidator`, which says why.
    """

    name = "non_finite"
    threshold = None
    message = "{field} contains {count} non-finite value(s)"

    def check(self, frame: Frame) -> list[Issue]:
        fields = {"positions": frame.positions, "cell": frame.cell}
        not_numbers = getattr(frame, "label_errors", {})
        for k in ("energy", "forces", "stress"):
            value = getattr(frame, k)
            if value is not None and k not in not_numbers:
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
    """Periodic cells must be finite and neither degenerate nor near-singular.

    Parameters
    ----------
    threshold : float
        Minimum of ``sqrt(det G) / prod |v|`` over the periodic cell vectors ``v`` (``G`` their
        Gram matrix; for a fully periodic cell ``|det(cell)| / (|a||b||c|)``): 1 for orthogonal
        vectors, 0 for linearly dependent ones; default 1e-3. Periodic directions also need a
        vector longer than 1e-3 Å and no longer than :attr:`limit` (1e9 Å: beyond it the
        volume overflows and the geometry hash's 1e-6 Å rounding no longer holds).
    """

    name = "cell"
    message = "{detail}"
    limit = 1e9

    def __init__(self, threshold: float = 1e-3) -> None:
        self.threshold = threshold

    def check(self, frame: Frame) -> list[Issue]:
        if not frame.pbc.any():
            return []
        periodic = np.asarray(frame.cell, dtype=float)[frame.pbc]
        if not np.isfinite(periodic).all():
            return [Issue(self.name, "cell", "periodic cell vectors are not finite")]
        huge = np.abs(periodic).max(axis=1) > self.limit
        if huge.any():
            k = int(np.flatnonzero(frame.pbc)[np.argmax(huge)])
            detail = (f"periodic cell vector {k} has a component of "
                      f"{np.abs(periodic[np.argmax(huge)]).max():.3g} Å (> {self.limit:g})")
            return [Issue(self.name, "cell", self.message.format(detail=detail))]
        lengths = np.sqrt((periodic * periodic).sum(axis=1))
        short = [int(i) for i, k in zip(np.flatnonzero(frame.pbc), lengths, strict=True)
                 if k < 1e-3]
        if short:
            detail = f"periodic cell vector(s) {short} have zero length"
            return [Issue(self.name, "cell", self.message.format(detail=detail))]
        if len(periodic) == 3:  # |a . (b x c)|, without numpy.linalg's per-call overhead
            (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = periodic.tolist()
            volume = abs(a1 * (b2 * c3 - b3 * c2) - a2 * (b1 * c3 - b3 * c1)
                         + a3 * (b1 * c2 - b2 * c1))
        else:  # the area (or length) the periodic vectors span: sqrt(det of their Gram matrix)
            volume = float(np.sqrt(max(np.linalg.det(periodic @ periodic.T), 0.0)))
        ratio = volume / float(np.prod(lengths))
        if not ratio >= self.threshold:  # NaN too
            what = "|det|/(|a||b||c|)" if frame.pbc.all() else "sqrt(det G)/prod|v|"
            detail = f"cell is near-singular: {what} = {ratio:.2e} < {self.threshold}"
            return [Issue(self.name, "cell", self.message.format(detail=detail))]
        return []


class CoordinateValidator:
    """Atoms may not sit absurdly far from the cell or from each other.

    Such frames are broken (a unit error, an exploded run, a corrupted file) and would
    overflow the 1e-6 Å rounding of the geometry hash (distinct frames would hash alike).

    Parameters
    ----------
    threshold : float
        Largest distance (Å), default 1e5 (10 µm; DFT cells are ~10 Å, the largest MD boxes
        ~1e4 Å) that an atom may lie outside the periodic cell along a periodic direction, and
        that the atoms of a non-periodic frame may span along x, y or z. Any coordinate beyond
        1e9 Å is refused in every frame.
    """

    name = "coordinates"
    limit = 1e9

    def __init__(self, threshold: float = 1e5) -> None:
        self.threshold = threshold

    def check(self, frame: Frame) -> list[Issue]:
        pos = np.asarray(frame.positions, dtype=float)
        if pos.size == 0 or not np.isfinite(pos).all():
            return []  # the finite validator reports those
        far = np.abs(pos).max(axis=1)
        if far.max() <= self.threshold / 2:  # every atom within threshold of the origin and
            return []  # of the others: nothing can be that far from the cell or the molecule
        if far.max() > self.limit:
            k = int(np.argmax(far))
            return [self._issue(f"atom {k} has a coordinate of {far[k]:.3g} Å (> {self.limit:g})")]
        pbc = frame.pbc
        cell = np.asarray(frame.cell, dtype=float)
        if pbc.any() and np.isfinite(cell).all():
            frac = pos @ np.linalg.pinv(cell)
            spacing = 1.0 / np.maximum(np.linalg.norm(np.linalg.pinv(cell).T, axis=1), 1e-300)
            outside = np.maximum(np.maximum(-frac, frac - 1.0), 0.0) * spacing
            outside[:, ~pbc] = 0.0
            if outside.max() > self.threshold:
                k, axis = np.unravel_index(int(np.argmax(outside)), outside.shape)
                return [self._issue(
                    f"atom {k} lies {outside[k, axis]:.3g} Å outside the periodic cell along "
                    f"cell vector {'abc'[axis]} (> {self.threshold:g} Å)"
                )]
        if not pbc.any():
            span = pos.max(axis=0) - pos.min(axis=0)
            if span.max() > self.threshold:
                axis = int(np.argmax(span))
                return [self._issue(
                    f"atoms span {span[axis]:.3g} Å along {'xyz'[axis]} in a non-periodic "
                    f"frame (> {self.threshold:g} Å)"
                )]
        return []

    def _issue(self, message: str) -> Issue:
        return Issue(self.name, "positions", message)


class MinDistanceValidator:
    """Atoms may not sit closer than ``factor`` × the sum of their covalent radii.

    The neighbor search (:func:`~pesdata.curate._neighbors.neighbor_pairs`, a KD-tree over
    the periodic images) needs finite positions and a sound cell: the curate run skips this
    check for frames the finite, cell or coordinate validators rejected, and the check itself
    returns nothing for such a frame (those validators report it).

    Parameters
    ----------
    factor : float
        Fraction of ``r_cov(i) + r_cov(j)`` (ASE's covalent radii); default 0.5 — well below any
        bond, above the overlaps of broken structures.
    """

    name = "overlap"
    message = "atoms {i} and {j} are {d:.3f} Å apart (< {limit:.3f} Å)"
    needs_geometry = True  # skipped when positions or cell were rejected

    def __init__(self, factor: float = 0.5) -> None:
        self.threshold = factor

    def check(self, frame: Frame) -> list[Issue]:
        return self.check_batch([frame])[0]

    def check_batch(self, frames: list[Frame]) -> list[list[Issue]]:
        """:meth:`check` of many frames with one neighbor search (the curate run's path)."""
        out: list[list[Issue]] = [[] for _ in frames]
        todo, geoms, cutoffs, radii = [], [], [], []
        for k, frame in enumerate(frames):
            z = frame.numbers
            if len(z) < 2 and not frame.pbc.any():
                continue
            if not np.isfinite(frame.positions).all() or not np.isfinite(frame.cell).all():
                continue  # the finite validator reports it
            r = covalent_radii[np.clip(z, 0, len(covalent_radii) - 1)]
            cutoff = self.threshold * 2 * float(r.max())
            if cutoff <= 0:
                continue
            todo.append(k)
            geoms.append((frame.positions, frame.cell, frame.pbc))
            cutoffs.append(cutoff)
            radii.append(r)
        try:
            found = neighbor_pairs_batch(geoms, cutoffs)
        except (np.linalg.LinAlgError, ValueError):
            found = None  # some frame's cell is singular or tiny: search frame by frame
        for n, k in enumerate(todo):
            if found is not None:
                i, j, d = found[n]
            else:
                try:
                    i, j, d = neighbor_pairs(*geoms[n], cutoffs[n])
                except np.linalg.LinAlgError:  # a singular periodic cell: the cell validator
                    continue
                except ValueError as exc:  # a cell far smaller than the cutoff: all overlap
                    out[k] = [Issue(self.name, "cell", str(exc))]
                    continue
            out[k] = self._verdict(i, j, d, radii[n])
        return out

    def _verdict(self, i, j, d, radii) -> list[Issue]:
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
    """Robust z-score of a per-frame statistic within each population of frames.

    A population is the frames of one method and composition and, for frames that carry one,
    one ``config_type`` (a set's 5000 K MD snapshots are judged among themselves, not against
    its near-equilibrium cells). It needs ``min_group`` frames before outliers are judged;
    composition is the reduced formula, so TiO2 cells of any size form one population and
    O-deficient Ti8O15 cells another. The rejection reason names the population (method,
    composition, config_type and its size ``n``).
    """

    name = ""
    stat = ""
    field = ""
    message = (
        "{stat} = {value:.4g} has robust z-score {z:.1f} (> {threshold}) among the {n} frames "
        "of {population}"
    )

    def __init__(self, threshold: float, min_group: int = 10, mad_floor: float = 0.0) -> None:
        self.threshold = threshold
        self.min_group = min_group
        self.mad_floor = mad_floor

    def check_population(self, stats: dict) -> dict[int, Issue]:
        """Map frame index → issue for the outliers among ``stats``.

        ``stats`` holds equal-length arrays: ``group`` (object keys naming the population, e.g.
        ``"method 'PBE', composition 'Si', config_type 'md'"``) and the statistic named
        ``self.stat`` (NaN where absent); optionally ``populations``, a dict of key → fields
        (method, composition, config_type) that the issue carries with ``n`` added.
        """
        out: dict[int, Issue] = {}
        keys = stats["group"]
        values = stats[self.stat]
        described = stats.get("populations", {})
        if not len(keys):
            return out
        listed = keys.tolist()
        names = sorted(set(listed))
        index = {k: g for g, k in enumerate(names)}
        code = np.fromiter((index[k] for k in listed), np.int64, len(listed))
        order = np.argsort(code, kind="stable")  # each group's rows, in row order
        bounds = np.searchsorted(code[order], np.arange(len(names) + 1))
        finite = np.isfinite(values)
        for g, key in enumerate(names):
            idx = order[bounds[g]:bounds[g + 1]]
            idx = idx[finite[idx]]
            if idx.size < self.min_group:
                continue
            z = robust_z(values[idx], self.mad_floor)
            population = {**described.get(key, {"group": str(key)}), "n": int(idx.size)}
            for k in np.flatnonzero(np.abs(z) > self.threshold):
                out[int(idx[k])] = self.issue(values[idx[k]], z[k], key, population)
        return out

    def issue(self, value: float, z: float, key, population: dict) -> Issue:
        """The issue of an outlier: ``value`` with robust z-score ``z`` in group ``key``
        (``population`` holds the group's fields and its size ``n``)."""
        msg = self.message.format(stat=self.stat, value=value, z=z, threshold=self.threshold,
                                  n=population["n"], population=key)
        return Issue(self.name, self.field, msg, population=population)


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
        LabelValueValidator(),
        FiniteValidator(),
        CellValidator(),
        CoordinateValidator(),
        MinDistanceValidator(),
        LabelValidator(),
    ]
    population = [ForceOutlierValidator(), EnergyOutlierValidator()]
    return frame, population
