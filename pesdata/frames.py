"""``ase.Atoms`` ⇄ Arrow conversion of the structure table.

A :class:`Frame` is one structure with its labels as plain numpy arrays, taken from an
``ase.Atoms`` (:meth:`Frame.from_atoms`), validated by :mod:`pesdata.curate`, and batched into an
Arrow table with :func:`frames_to_table`. :func:`table_to_atoms` goes back.

The pieces live in small private modules: content hashing (``geometry_hash``, the row ``id``)
in :mod:`pesdata._hash`, the ``info`` JSON in :mod:`pesdata._info`, formulas in
:mod:`pesdata._formula`, the extra per-atom array columns in :mod:`pesdata._columns`, label
values → numbers (and why a value is not one) in :mod:`pesdata._labels`.
:func:`geometry_hash`, :func:`structure_id`, :func:`chemical_formula` and
:func:`reduced_formula` stay importable from here (``from pesdata.frames import
geometry_hash`` keeps working).

Conventions
-----------
* Labels come from the attached calculator (``atoms.calc.results``) unless a key map names
  another ``info``/``arrays`` key (``energy_key="dft_energy"``, ``forces_key="force"``, ...).
  Missing labels are ``None`` (null in the table), never zero.
* ``stress`` is stored as 6 Voigt components (xx yy zz yz xz xy) in eV/Å³ with ASE's sign. A
  virial key (eV, 9 or 6 components) is converted with ``stress = -virial / volume``.
* MACE's ``REF_*`` convention is mapped automatically: a label that is still missing (no
  calculator result, no standard-name key) and whose key was not named is taken from
  ``info["REF_energy"]``, ``arrays["REF_forces"]``, ``info["REF_stress"]`` or, failing that,
  ``info["REF_virial"]`` (``stress = -virial / volume``; kept in ``info`` when the cell has no
  volume). A named key (``LabelKeys``/``--*-key``) always wins for its label.
* Other calculator results (``free_energy``, ``magmom``, ``magmoms``, ``charges``, ...) and all
  extra ``info``/``arrays`` entries are kept; on the way back, names ASE treats as calculator
  properties become calculator results again, as ASE's own extxyz reader does.
* Extra per-atom arrays are stored in their own kind: float (float64), int (int64), bool or
  string, with one or ``k`` values per atom (:func:`pesdata.schema.array_kind`). String arrays
  (extxyz ``S`` columns) come back as ``object`` arrays of ``str``, as ``ase.io.read`` gives
  them; ints come back as int64 (ASE reads int32), floats as float64. A frame whose array does
  not fit the store's column (another kind or width) is refused with a :class:`SchemaError`;
  an int array into a float column is widened.
* ``info`` is kept as JSON (:mod:`pesdata._info`): ints, floats, bools, strings, None, numpy
  arrays (dtype kept) and nested lists and dicts of these — extxyz holds the latter as ``_JSON``
  values and so do we. Tuples come back as lists and numpy scalars as Python numbers (same
  dtype kind). Values JSON cannot hold (complex numbers, bytes, arbitrary objects, which only
  in-memory ``Atoms`` can carry) are refused with a :class:`SchemaError` naming the frame and
  key.
* ``geometry_hash`` (:mod:`pesdata._hash`) hashes atomic numbers, positions rounded to 1e-6 Å,
  the cell rounded to 1e-6 Å and pbc, in atom order; ``id`` hashes ``geometry_hash`` with the
  method string. Coordinates beyond ~9.2e10 Å (or non-finite) are hashed exactly, in a
  separate domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import ase
import numpy as np
import pyarrow as pa
from ase.calculators.calculator import all_properties
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms, FixCartesian
from ase.io.extxyz import _make_move_mask

from ._arrow import flat_values, fsl_values, list_array
from ._columns import array_column, with_array_columns
from ._formula import chemical_formula, reduced_formula
from ._hash import geometry_hash, structure_id
from ._info import info_from_json, info_to_json
from ._labels import numbers as label_numbers
from ._labels import scalar, to_voigt, virial_to_stress
from .schema import ARRAY_PREFIX, structure_schema

__all__ = [
    "AtomsParts",
    "Frame",
    "LabelKeys",
    "chemical_formula",
    "frames_to_table",
    "geometry_hash",
    "reduced_formula",
    "structure_id",
    "table_to_atoms",
]

_RESERVED_INFO = ("method", "config_type", "group")


@dataclass
class AtomsParts:
    """What an ``ase.Atoms`` carries, unassembled: arrays, ``info`` and calculator results."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    info: dict
    arrays: dict
    results: dict

    @classmethod
    def from_atoms(cls, atoms: ase.Atoms) -> AtomsParts:
        """Take an ``ase.Atoms`` apart; FixAtoms/FixCartesian become a ``move_mask`` array
        (True = free), as extxyz writes them.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure (not modified; ``info``, arrays and results are shallow-copied).

        Returns
        -------
        AtomsParts
        """
        arrays = {k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")}
        if any(isinstance(c, (FixAtoms, FixCartesian)) for c in atoms.constraints):
            arrays["move_mask"] = _make_move_mask(atoms)
        return cls(
            numbers=atoms.numbers,
            positions=atoms.positions,
            cell=atoms.cell.array,
            pbc=atoms.pbc,
            info=dict(atoms.info),
            arrays=arrays,
            results=dict(atoms.calc.results) if atoms.calc is not None else {},
        )


def _set_move_mask(atoms: ase.Atoms, move_mask: np.ndarray) -> None:
    """Constraints from a ``move_mask`` array, as ASE's extxyz reader sets them."""
    move_mask = np.asarray(move_mask, dtype=bool)
    if move_mask.ndim == 1:
        atoms.set_constraint(FixAtoms(mask=~move_mask))
    else:
        atoms.set_constraint([FixCartesian(a, mask=~move_mask[a]) for a in range(len(atoms))])


@dataclass
class LabelKeys:
    """Where to find labels in frames that use non-standard names.

    Parameters
    ----------
    energy : str, optional
        ``atoms.info`` key of the total energy (eV), e.g. ``dft_energy``.
    forces : str, optional
        ``atoms.arrays`` key of the forces (eV/Å), e.g. ``force`` or ``dft_force``.
    stress : str, optional
        ``atoms.info`` key of the stress (eV/Å³, ASE sign; 6 Voigt, 9 or 3×3 values).
    virial : str, optional
        ``atoms.info`` key of the virial (eV; 9 or 6 values); stored as ``-virial / volume``.
    """

    energy: str | None = None
    forces: str | None = None
    stress: str | None = None
    virial: str | None = None


@dataclass
class Frame:
    """One structure with labels and metadata, as numpy arrays.

    Shapes are not enforced here: a frame read from a broken file may carry forces of the wrong
    length, which the curate validators report. Hashes are computed on construction.

    A label that could not be taken as numbers (a boolean or a string energy, several values
    where one is expected, forces or stress that are not an array of numbers) is NaN here (the
    right shape for forces and stress) and ``label_errors`` maps its field to why, quoting the
    value; the curate validators reject the frame with that reason.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    method: str = "unknown"
    config_type: str | None = None
    group: str | None = None
    source: str = ""
    info: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    geometry_hash: str = ""
    id: str = ""
    label_errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=float)
        self.cell = np.asarray(self.cell, dtype=float)
        self.pbc = np.asarray(self.pbc, dtype=bool)
        if not self.geometry_hash:
            self.geometry_hash = geometry_hash(self.numbers, self.positions, self.cell, self.pbc)
        self.id = structure_id(self.geometry_hash, self.method)

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.numbers)

    @property
    def has_labels(self) -> bool:
        """True when the frame carries an energy or forces."""
        return self.energy is not None or self.forces is not None

    @classmethod
    def from_atoms(
        cls,
        atoms: ase.Atoms,
        *,
        method: str | None = None,
        config_type: str | None = None,
        group: str | None = None,
        source: str = "",
        keys: LabelKeys | None = None,
    ) -> Frame:
        """Take a frame from an ``ase.Atoms``.

        ``method``, ``config_type`` and ``group`` given here win over the same keys in
        ``atoms.info``; without either, ``method`` is ``"unknown"``.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure; labels from its calculator or from the keys ``keys`` names.
        method, config_type, group : str, optional
            Metadata (default: ``atoms.info``'s values of the same names).
        source : str
            Where the frame comes from (``file#frame``), quoted in errors.
        keys : LabelKeys, optional
            Non-standard label names.

        Returns
        -------
        Frame
            With ``geometry_hash`` and ``id`` computed. Shapes are not checked here (the
            curate validators report them).
        """
        return cls.from_parts(
            AtomsParts.from_atoms(atoms),
            method=method,
            config_type=config_type,
            group=group,
            source=source,
            keys=keys,
        )

    @classmethod
    def from_parts(
        cls,
        parts: AtomsParts,
        *,
        method: str | None = None,
        config_type: str | None = None,
        group: str | None = None,
        source: str = "",
        keys: LabelKeys | None = None,
    ) -> Frame:
        """Take a frame from the pieces of an ``ase.Atoms`` (see :meth:`from_atoms`).

        Readers that never build an ``ase.Atoms`` (the vectorised extxyz reader) use this;
        ``parts.info``, ``parts.arrays`` and ``parts.results`` are consumed.

        Parameters
        ----------
        parts : AtomsParts
            The pieces of the structure.
        method, config_type, group, source, keys
            As for :meth:`from_atoms`.

        Returns
        -------
        Frame
        """
        keys = keys or LabelKeys()
        info, arrays, results = parts.info, parts.arrays, parts.results

        energy = results.pop("energy", None)
        forces = results.pop("forces", None)
        stress = results.pop("stress", None)
        if keys.energy is not None:
            energy = info.pop(keys.energy, None)
        if keys.forces is not None:
            forces = arrays.pop(keys.forces, None)
        if keys.stress is not None:
            stress = info.pop(keys.stress, None)
        errors: dict[str, str] = {}
        if keys.virial is not None:
            virial = info.pop(keys.virial, None)
            if virial is not None:
                virial, errors["stress"] = label_numbers(virial, f"virial {keys.virial!r}", 9)
                stress = virial_to_stress(virial, parts.cell)
        # extxyz files without a calculator may carry labels under their standard names
        if energy is None and "energy" in info:
            energy = info.pop("energy")
        if forces is None and "forces" in arrays:
            forces = arrays.pop("forces")
        if stress is None and "stress" in info:
            stress = info.pop("stress")
        # MACE's convention, for labels still missing and not named by a key
        if energy is None and keys.energy is None and "REF_energy" in info:
            energy = info.pop("REF_energy")
        if forces is None and keys.forces is None and "REF_forces" in arrays:
            forces = arrays.pop("REF_forces")
        if stress is None and keys.stress is None and keys.virial is None:
            if "REF_stress" in info:
                stress = info.pop("REF_stress")
            elif "REF_virial" in info:
                virial, why = label_numbers(info["REF_virial"], "virial 'REF_virial'", 9)
                stress = virial_to_stress(virial, parts.cell)
                if stress is not None:  # without a cell volume the virial stays in info
                    del info["REF_virial"]
                    errors["stress"] = why

        n = len(parts.numbers)
        for name, value in results.items():  # other calculator results are kept
            arr = np.asarray(value)
            if arr.ndim >= 1 and arr.shape[0] == n and name in ("magmoms", "charges", "energies"):
                arrays.setdefault(name, arr)
            else:
                info.setdefault(name, value)

        meta = {k: info.pop(k, None) for k in _RESERVED_INFO}
        energy, errors["energy"] = scalar(energy)
        forces, errors["forces"] = label_numbers(forces, "forces", (n, 3))
        if "stress" not in errors or errors["stress"] is None:
            stress, errors["stress"] = label_numbers(stress, "stress", 6)
        return cls(
            numbers=parts.numbers,
            positions=parts.positions,
            cell=parts.cell,
            pbc=parts.pbc,
            energy=energy,
            forces=forces,
            stress=None if stress is None else to_voigt(stress),
            method=str(method or meta["method"] or "unknown"),
            config_type=config_type or _opt_str(meta["config_type"]),
            group=group or _opt_str(meta["group"]),
            source=source,
            info=info,
            arrays=arrays,
            label_errors={k: v for k, v in errors.items() if v is not None},
        )


def _opt_str(value) -> str | None:
    return None if value is None else str(value)


def frames_to_table(frames: Sequence[Frame], schema: pa.Schema | None = None) -> pa.Table:
    """Batch frames into an Arrow table of the structure schema.

    Parameters
    ----------
    frames : sequence of Frame
        Valid frames (shapes are assumed checked).
    schema : pyarrow.Schema, optional
        Target schema, e.g. the store's with its extra ``arr_*`` columns. Extra arrays of the
        frames that the schema lacks are added as new columns.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    SchemaError
        A per-atom array does not fit its column (``schema``'s, or the one the batch creates):
        another kind (float into an int or bool column, string ⇄ number) or another width.
        Widening an int array into a float column is allowed. Also raised for an ``info``
        value JSON cannot hold. The message names the frame's source and both types.
    """
    n = np.fromiter((f.n_atoms for f in frames), dtype=np.int64, count=len(frames))
    schema = with_array_columns(frames, schema or structure_schema())

    def cat(arrs, width):
        return np.concatenate(arrs) if arrs else np.zeros((0, width))

    has_f = np.array([f.forces is not None for f in frames], dtype=bool)
    forces = cat([f.forces for f in frames if f.forces is not None], 3)
    has_s = np.array([f.stress is not None for f in frames], dtype=bool)
    stress = np.array([f.stress if f.stress is not None else np.full(6, np.nan) for f in frames])
    cols: dict[str, pa.Array] = {
        "id": pa.array([f.id for f in frames], pa.string()),
        "geometry_hash": pa.array([f.geometry_hash for f in frames], pa.string()),
        "numbers": list_array(cat([f.numbers for f in frames], 1).astype(np.int16), n, None),
        "positions": list_array(cat([f.positions for f in frames], 3), n, 3),
        "cell": pa.FixedSizeListArray.from_arrays(
            pa.array(np.array([f.cell for f in frames]).reshape(-1)), 9
        ),
        "pbc": pa.FixedSizeListArray.from_arrays(
            pa.array(np.array([f.pbc for f in frames], dtype=bool).reshape(-1)), 3
        ),
        "n_atoms": pa.array(n.astype(np.int32)),
        "formula": pa.array([chemical_formula(f.numbers) for f in frames], pa.string()),
        "energy": pa.array(
            [f.energy for f in frames], pa.float64(), from_pandas=False
        ),
        "forces": list_array(forces, np.where(has_f, n, 0), 3, mask=~has_f),
        "stress": pa.FixedSizeListArray.from_arrays(
            pa.array(stress.reshape(-1)), 6, mask=pa.array(~has_s)
        ),
        "method": pa.array([f.method for f in frames], pa.string()),
        "config_type": pa.array([f.config_type for f in frames], pa.string()),
        "group": pa.array([f.group for f in frames], pa.string()),
        "source": pa.array([f.source for f in frames], pa.string()),
        "info": pa.array([info_to_json(f.info, f.source) for f in frames], pa.string()),
    }
    for fld in schema:
        if not fld.name.startswith(ARRAY_PREFIX):
            continue
        cols[fld.name] = array_column(fld, frames, n)
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def table_to_atoms(table: pa.Table) -> list[ase.Atoms]:
    """Turn rows of the structure table back into ``ase.Atoms``.

    Labels go into a ``SinglePointCalculator``; ``method``, ``config_type`` and ``group`` into
    ``atoms.info``; extra arrays into ``atoms.arrays`` (or the calculator when ASE treats the
    name as a calculator property).

    Parameters
    ----------
    table : pyarrow.Table
        Rows of the structure schema (all columns, extra ``arr_*`` ones optional).

    Returns
    -------
    list of ase.Atoms
        One per row, in row order.
    """
    if table.num_rows == 0:
        return []
    numbers, offs = flat_values(table.column("numbers"))
    positions, _ = flat_values(table.column("positions"))
    cells = fsl_values(table.column("cell").combine_chunks(), 9).reshape(-1, 3, 3)
    pbcs = fsl_values(table.column("pbc").combine_chunks(), 3)
    energy = table.column("energy").to_pylist()
    fcol = table.column("forces").combine_chunks()
    fvalid = fcol.is_valid().to_numpy(zero_copy_only=False)
    forces, foffs = flat_values(fcol)
    scol = table.column("stress").combine_chunks()
    svalid = scol.is_valid().to_numpy(zero_copy_only=False)
    stress = fsl_values(scol, 6)
    meta = {k: table.column(k).to_pylist() for k in ("method", "config_type", "group", "info")}
    extra = {}
    for c in table.column_names:
        if not c.startswith(ARRAY_PREFIX):
            continue
        col = table.column(c).combine_chunks()
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        if valid.any():
            flat, eoffs = flat_values(col)  # strings come as object arrays, as ASE reads them
            extra[c[len(ARRAY_PREFIX) :]] = (flat, eoffs, valid)

    out = []
    for i in range(table.num_rows):
        a, b = offs[i], offs[i + 1]
        atoms = ase.Atoms(
            numbers=numbers[a:b], positions=positions[a:b], cell=cells[i], pbc=pbcs[i]
        )
        info = info_from_json(meta["info"][i])
        results = {}
        for k in list(info):
            if k in all_properties:
                results[k] = info.pop(k)
        for key in ("method", "config_type", "group"):
            if meta[key][i] is not None:
                info[key] = meta[key][i]
        atoms.info.update(info)
        for name, (flat, eoffs, valid) in extra.items():
            if not valid[i]:
                continue
            arr = flat[eoffs[i] : eoffs[i + 1]].copy()
            if arr.dtype == object and len(arr) and isinstance(arr[0], np.ndarray):
                arr = np.stack(arr)  # k strings per atom, k differing between rows
            if name == "move_mask":
                _set_move_mask(atoms, arr)
            elif name in all_properties:
                results[name] = arr
            else:
                atoms.arrays[name] = arr
        if energy[i] is not None:
            results["energy"] = energy[i]
        if fvalid[i]:
            results["forces"] = forces[foffs[i] : foffs[i + 1]].copy()
        if svalid[i]:
            results["stress"] = stress[i].copy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out
