"""Export a version or a split to a trainer's format: the parts, the E0s, the targets, the manifest.

:func:`export` gathers the frames — a whole version (part ``all``), or the ``train`` and
``test`` parts of fold ``k`` of a split, in the split's id order — with their labels as the
store holds them (``atoms.calc``: a missing label is absent, never zero), ``info["id"]``,
``config_type``, ``group`` and ``method``; computes the isolated-atom energies (:func:`e0s`);
lets the target's :class:`Exporter` write its files into a staging directory; and writes
``pesdata-export.json`` (``schemas/export.json``) beside them. The directory appears whole or
not at all (:func:`pesdata.atomic.atomic_dir`).

Targets are found by name through a lazy registry, as the selection criteria are; each lives
in its own module (``mace.py``, ``deepmd.py``...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import numpy as np
from ase import Atoms

from .._lazy import load_registered
from ..errors import ParameterError

__all__ = ["E0_MODES", "UNITS", "Exporter", "export", "exporters", "e0s", "get_exporter", "labels"]

E0_MODES = ("isolated", "average", "none")
#: The units every target writes in (ASE's): targets that write a virial or a 3×3 stress
#: override the entry.
UNITS = {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å³ (ASE sign)", "positions": "Å"}
MANIFEST = "pesdata-export.json"


class Exporter:
    """A trainer's file format. Subclasses set :attr:`name` and implement :meth:`write`.

    Attributes
    ----------
    name : str
        The ``--to`` name.
    """

    name: ClassVar[str] = ""

    def write(self, parts: dict[str, list[Atoms]], out: Path, e0: dict[str, float]) -> dict:
        """Write ``parts`` into the (new, empty) directory ``out``.

        Parameters
        ----------
        parts : dict of str to list of ase.Atoms
            ``{"all": [...]}`` or ``{"train": [...], "test": [...]}``; every frame has
            ``info["id"]`` and its labels in ``atoms.calc`` (absent when missing).
        out : pathlib.Path
            The staging directory.
        e0 : dict of str to float
            Isolated-atom energy per element (eV); empty for ``--e0 none``.

        Returns
        -------
        dict
            ``files`` (part → list of paths relative to ``out``), ``counts`` (part →
            structures written), ``key_mapping`` (pesdata label → the target's key),
            ``units`` (quantity → unit), ``missing_labels`` (how a missing label is handled, one
            sentence) and optionally ``notes`` (list of str) and ``refused`` (ids not written,
            with the reason).
        """
        raise NotImplementedError  # pragma: no cover - every target overrides it


_EXPORTERS: dict[str, str | type] = {
    "extxyz": "pesdata.export.extxyz:ExtxyzExporter",
    "mace": "pesdata.export.mace:MaceExporter",
    "nequip": "pesdata.export.nequip:NequipExporter",
    "gap": "pesdata.export.gap:GapExporter",
    "deepmd": "pesdata.export.deepmd:DeepmdExporter",
    "aselmdb": "pesdata.export.aselmdb:AselmdbExporter",
    "pacemaker": "pesdata.export.pacemaker:PacemakerExporter",
}


def get_exporter(name: str) -> type[Exporter]:
    """The :class:`Exporter` registered as ``name``; ParameterError listing the known ones."""
    return load_registered(_EXPORTERS, "export target", name, Exporter)


def exporters() -> tuple[str, ...]:
    """The known ``--to`` names."""
    return tuple(sorted(_EXPORTERS))


def labels(atoms: Atoms) -> dict:
    """The labels a frame carries: ``energy`` (float), ``forces`` ((n, 3)), ``stress``
    ((6,) Voigt, eV/Å³, ASE sign: positive = tensile) — only those present, as float64."""
    calc = atoms.calc
    results = {} if calc is None else getattr(calc, "results", {})
    out = {}
    if results.get("energy") is not None:
        out["energy"] = float(results["energy"])
    if results.get("forces") is not None:
        out["forces"] = np.asarray(results["forces"], dtype=float).reshape(len(atoms), 3)
    if results.get("stress") is not None:
        s = np.asarray(results["stress"], dtype=float).ravel()
        if s.size == 9:
            m = s.reshape(3, 3)
            s = np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
        out["stress"] = s
    return out


def is_isolated_atom(atoms: Atoms) -> bool:
    """A single atom in a non-periodic cell (the E0 reference frames)."""
    return len(atoms) == 1 and not any(atoms.pbc)


def e0s(frames: Sequence[Atoms], mode: str) -> dict[str, float]:
    """Isolated-atom reference energies per element.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        The frames exported (all parts together).
    mode : {"isolated", "average", "none"}
        ``isolated``: the energies of single-atom non-periodic frames (one per element; an
        element without one is an error naming it); ``average``: the least-squares fit of
        the total energies on the element counts (as MACE's ``E0s="average"``); ``none``: {}.

    Raises
    ------
    ParameterError
        Unknown mode, an element without an isolated-atom frame, two differing isolated-atom
        energies of one element, or too few labelled frames for ``average``.
    """
    if mode not in E0_MODES:
        raise ParameterError(f"e0={mode!r} must be one of {list(E0_MODES)}")
    if mode == "none":
        return {}
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    if mode == "isolated":
        found: dict[str, float] = {}
        for a in frames:
            e = labels(a).get("energy")
            if is_isolated_atom(a) and e is not None:
                sym = a.get_chemical_symbols()[0]
                if sym in found and abs(found[sym] - e) > 1e-6:
                    raise ParameterError(f"two isolated-atom energies for {sym}: {found[sym]} "
                                         f"and {e} eV (id {a.info.get('id')})")
                found[sym] = e
        missing = [s for s in elements if s not in found]
        if missing:
            raise ParameterError(f"--e0 isolated: no isolated-atom frame (one atom, no "
                                 f"periodicity, with an energy) for {', '.join(missing)}; "
                                 "add them or use --e0 average")
        return {s: found[s] for s in elements}
    rows, y = [], []
    for a in frames:
        e = labels(a).get("energy")
        if e is not None:
            syms = a.get_chemical_symbols()
            rows.append([syms.count(s) for s in elements])
            y.append(e)
    x = np.asarray(rows, dtype=float)
    if len(y) < len(elements) or np.linalg.matrix_rank(x) < len(elements):
        raise ParameterError(f"--e0 average: the {len(y)} labelled frames do not determine one "
                             f"energy per element ({', '.join(elements)}): compositions too "
                             "few or collinear")
    coef, *_ = np.linalg.lstsq(x, np.asarray(y), rcond=None)
    return {s: float(c) for s, c in zip(elements, coef, strict=True)}


def gather(store, version=None, split: str | None = None,
           fold: int = 0) -> tuple[int, dict[str, list[Atoms]], dict]:
    """The frames to export, by part, and what they came from.

    Returns
    -------
    version : int
    parts : dict of str to list of ase.Atoms
        ``{"all": ...}`` without a split, else ``{"train": ..., "test": ...}`` in the split's
        id order; each frame has ``info["id"]``.
    source : dict
        ``split``, ``fold``, ``n_folds`` and ``strategy`` (None without a split).
    """
    snap_version = store.resolve(version)
    source = {"split": None, "fold": None, "n_folds": None, "strategy": None}
    if split is None:
        snap = store.read(snap_version)
        frames = snap.to_atoms()
        for atoms, i in zip(frames, snap.ids, strict=True):
            atoms.info["id"] = i
        return snap_version, {"all": frames}, source
    from ..split import load_split

    manifest = load_split(store, split)
    if version is not None and snap_version != manifest["version"]:
        raise ParameterError(f"split {split!r} is pinned to version {manifest['version']}, "
                             f"not {snap_version}: drop --version or give that one")
    folds = manifest["folds"]
    if not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold < len(folds):
        raise ParameterError(f"fold={fold!r}: split {split!r} has folds 0..{len(folds) - 1}")
    snap = store.read(manifest["version"])
    row = {i: k for k, i in enumerate(snap.ids)}
    parts = {}
    for part in ("train", "test"):
        ids = folds[fold][part]
        frames = snap.take([row[i] for i in ids])
        for atoms, i in zip(frames, ids, strict=True):
            atoms.info["id"] = i
        parts[part] = frames
    source = {"split": split, "fold": fold, "n_folds": len(folds),
              "strategy": manifest.get("strategy")}
    return manifest["version"], parts, source


def export(store, out: str | os.PathLike, to: str, *, version=None, split: str | None = None,
           fold: int = 0, e0: str = "none", overwrite: bool = False) -> dict:
    """Write a version (or a split's fold) for a trainer, with ``pesdata-export.json``.

    Parameters
    ----------
    store : pesdata.Store
    out : path-like
        The output directory (new; an existing one only with ``overwrite``).
    to : str
        The target (:func:`exporters`).
    version : int or str, optional
        Version or tag (default: the latest, or the split's pinned version).
    split : str, optional
        A split's name: write its ``train`` and ``test`` parts.
    fold : int
        Which fold of the split.
    e0 : {"isolated", "average", "none"}
        Isolated-atom energies (:func:`e0s`) from the ``train`` part (or the whole version),
        recorded in the manifest and used by the targets that take them.
    overwrite : bool
        Replace an existing ``out`` directory.

    Returns
    -------
    dict
        The manifest (as written to ``OUT/pesdata-export.json``).
    """
    from ..errors import OutputError

    exporter = get_exporter(to)()
    if e0 not in E0_MODES:
        raise ParameterError(f"e0={e0!r} must be one of {list(E0_MODES)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists; choose a new directory (or overwrite=True)")
    reserved = False
    if not overwrite:  # claim OUT now: a concurrent export to it fails here, not overwrites
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.mkdir()
            reserved = True
        except FileExistsError as exc:
            raise OutputError(f"{out} exists; choose a new directory") from exc
        except OSError as exc:
            raise OutputError(f"{out}: cannot create it ({exc.strerror or exc})") from exc
    try:
        return _export(store, out, exporter, to, version, split, fold, e0)
    except BaseException:
        if reserved:
            try:
                out.rmdir()  # still our empty reservation: nothing was published
            except OSError:
                pass
        raise


def _export(store, out: Path, exporter: Exporter, to: str, version, split, fold,
            e0: str) -> dict:
    from .. import __version__
    from ..atomic import atomic_dir
    from ..store._artefacts import validate

    number, parts, source = gather(store, version, split, fold)
    # E0s from the training part only (as MACE's E0s="average" does): test energies must not
    # leak into the model through its reference energies
    # (isolated-atom frames are references wherever the split put them)
    every = [a for frames in parts.values() for a in frames]
    references = e0s(every if e0 == "isolated" or "train" not in parts else parts["train"], e0)
    if references:
        lacking = sorted({s for a in every for s in a.get_chemical_symbols()} - set(references))
        if lacking:
            raise ParameterError(
                f"--e0 {e0}: no E0 for {', '.join(lacking)}, which the training part does not "
                "hold (only the test part does); use --e0 isolated or a split whose training "
                "part has every element")
    exporter.e0_mode = e0  # how the E0s were found (mace marks isolated-atom frames for it)
    with atomic_dir(out) as stage:
        written = exporter.write(parts, stage, references)
        manifest = {
            "pesdata_export": 1,
            "target": to,
            "store": _where(store),
            "version": int(number),
            **source,
            "e0_mode": e0,
            "e0": references,
            "parts": {p: {"files": written["files"].get(p, []),
                          "count": int(written["counts"].get(p, 0)),
                          "structures": len(frames)}
                      for p, frames in parts.items()},
            "key_mapping": written["key_mapping"],
            "units": written["units"],
            "missing_labels": written["missing_labels"],
            "refused": written.get("refused", []),
            "notes": written.get("notes", []),
            "pesdata_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        validate("export", manifest, where=out / MANIFEST)
        import json

        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _where(store) -> str:
    """The store's URI, absolute for a local path (the manifest must be traceable from
    anywhere)."""
    uri = str(getattr(store, "uri", store))
    return uri if "://" in uri else os.path.abspath(uri)
