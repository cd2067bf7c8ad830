"""Label-like keys a curate run did not map: the warnings that name the flag to pass.

A GAP-style file keeps its labels under names pesdata does not take by itself (per-atom
``force`` or ``dft_force``, ``dft_energy``, a 3×3 ``dft_virial`` in ``info``). Curated without
``--forces-key``/``--energy-key``/..., such frames are stored unlabelled. :class:`UnmappedLabels`
watches the frames of a run and, for every label a frame lacks while it still carries a key whose
name contains *energy*, *force*, *stress* or *virial* (case-insensitive; what the frames helper
mapped, e.g. MACE's ``REF_*`` keys, is no longer there), produces one warning with the exact flag,
e.g. ``12 frame(s) carry per-atom 'force' but no forces were mapped: pass --forces-key force``.
A label whose flag was given is not warned about.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..frames import Frame, LabelKeys

__all__ = ["UnmappedLabels"]

# names that contain a label word but are settings, not labels (CASTEP/VASP/GAP parameters)
_NOT_LABELS = ("tol", "cutoff", "cut_off", "smearing", "conv", "mix", "sigma", "_per_atom")
# unit suffixes: a stress or virial in other units cannot be mapped as it is
_OTHER_UNITS = ("_kb", "_kbar", "_gpa", "_bar", "_ev_per_atom", "_kcal", "_kj", "_hartree")
# prefixes of reference labels (preferred) and of model predictions (least preferred)
_REFERENCE = ("ref", "dft", "qm", "target", "true", "label")
_PREDICTION = ("gap", "mace", "nequip", "pred", "model", "ml_", "calc")


def _rank(name: str) -> tuple[int, str]:
    low = name.lower()
    if low.startswith(_REFERENCE):
        return 0, name
    if low.startswith(_PREDICTION):
        return 2, name
    return 1, name


def _is_number(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return bool(np.isfinite(value))
    arr = np.asarray(value) if isinstance(value, np.ndarray) else None
    return arr is not None and arr.size == 1 and arr.dtype.kind in "if"


def _numeric_size(value) -> int:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return -1
    return int(arr.size)


class UnmappedLabels:
    """Collect label-like keys left in frames whose label is missing (see the module doc).

    Parameters
    ----------
    keys : LabelKeys
        The label names given for the run (``--energy-key`` etc.).
    """

    def __init__(self, keys: LabelKeys) -> None:
        self.keys = keys
        self.counts: dict[str, Counter[str]] = {
            "energy": Counter(), "forces": Counter(), "stress": Counter(), "virial": Counter(),
            "units": Counter(),
        }
        self.frames: dict[str, int] = Counter()

    def observe(self, frame: Frame) -> None:
        """Note the unmapped label-like keys of one frame."""
        seen: dict[str, set[str]] = {}
        if frame.energy is None and self.keys.energy is None:
            for k, v in frame.info.items():
                low = k.lower()
                if "energy" in low and not any(t in low for t in _NOT_LABELS) and _is_number(v):
                    seen.setdefault("energy", set()).add(k)
        if frame.forces is None and self.keys.forces is None:
            for k, v in frame.arrays.items():
                low = k.lower()
                if "force" in low and np.shape(v) == (frame.n_atoms, 3):
                    seen.setdefault("forces", set()).add(k)
        if frame.stress is None and self.keys.stress is None and self.keys.virial is None:
            for k, v in frame.info.items():
                low = k.lower()
                if not ("stress" in low or "virial" in low) or any(t in low for t in _NOT_LABELS):
                    continue
                if _numeric_size(v) not in (6, 9):
                    continue
                if low.endswith(_OTHER_UNITS):
                    seen.setdefault("units", set()).add(k)
                else:
                    seen.setdefault("virial" if "virial" in low else "stress", set()).add(k)
        for kind, names in seen.items():
            self.counts[kind].update(names)
            self.frames[kind] += 1

    def warnings(self) -> list[str]:
        """One line per label with unmapped candidates, naming the flag to pass."""
        out = []
        what = {
            "energy": ("info key(s)", "no energy was mapped", "--energy-key"),
            "forces": ("per-atom", "no forces were mapped", "--forces-key"),
            "stress": ("info key(s)", "no stress was mapped", "--stress-key"),
            "virial": ("info key(s)", "no stress was mapped", "--virial-key"),
        }
        for kind, (where, missing, flag) in what.items():
            if not self.counts[kind]:
                continue
            names = sorted(self.counts[kind], key=_rank)
            quoted = ", ".join(repr(n) for n in names)
            hint = f"pass {flag} {names[0]}"
            if kind == "virial":
                hint += " (a virial in eV; use --stress-key for a stress in eV/Å³)"
            out.append(f"{self.frames[kind]} frame(s) carry {where} {quoted} but {missing}: {hint}")
        if self.counts["units"]:
            quoted = ", ".join(repr(n) for n in sorted(self.counts["units"]))
            out.append(
                f"{self.frames['units']} frame(s) carry {quoted}, a stress or virial in other "
                "units, not mapped: convert it to a stress in eV/Å³ (--stress-key) or a virial "
                "in eV (--virial-key) to keep it as a label"
            )
        return out
