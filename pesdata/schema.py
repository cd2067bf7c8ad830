"""The property registry: the single source of the structure table's Arrow schema.

Each column of the structure table is one :class:`Property` (name, dtype, unit, shape, whether it
is per atom or per structure, nullable or not). :func:`structure_schema` builds the Arrow schema
from the registry and :func:`schema_document` the language-neutral JSON document checked in as
``schemas/structure.json`` (regenerate it with ``make schemas``; a test fails when it is stale).

Per-atom arrays that ASE carried beyond the registered ones (``magmoms``, ``charges``, site
labels, ...) get one column each, named ``arr_<name>``, created on first use in their own kind
(:func:`array_field`): float64, int64, bool or string (ASE's ``S`` columns, stored as Arrow
string lists), one value or a fixed number ``k`` of values per atom.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .errors import SchemaError

__all__ = [
    "ARRAY_PREFIX",
    "PROPERTIES",
    "Property",
    "ARRAY_KINDS",
    "array_column",
    "array_field",
    "array_kind",
    "column_kind",
    "schema_document",
    "structure_schema",
]

ARRAY_PREFIX = "arr_"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Property:
    """One column of the structure table.

    Parameters
    ----------
    name : str
        Column name.
    dtype : str
        Element dtype: ``string``, ``int16``, ``int32``, ``float64`` or ``bool``.
    shape : tuple of int
        Shape of one value *per atom* (``per_atom=True``) or per structure; ``()`` for scalars.
    per_atom : bool
        True when the column holds one value of ``shape`` for every atom.
    unit : str
        Physical unit ("" when dimensionless).
    nullable : bool
        Whether the value may be missing (labels are; geometry is not).
    doc : str
        One-line description.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    per_atom: bool = False
    unit: str = ""
    nullable: bool = False
    doc: str = ""

    def arrow_type(self) -> pa.DataType:
        """The Arrow type of this column."""
        t = _ARROW[self.dtype]
        if self.shape:
            size = int(np.prod(self.shape))
            t = pa.list_(t, size)
        if self.per_atom:
            t = pa.list_(t)
        return t

    def field(self) -> pa.Field:
        """The Arrow field of this column, with unit and doc in its metadata."""
        meta = {"unit": self.unit, "doc": self.doc, "per_atom": str(self.per_atom).lower()}
        return pa.field(self.name, self.arrow_type(), nullable=self.nullable, metadata=meta)


_ARROW = {
    "string": pa.string(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
}

PROPERTIES: tuple[Property, ...] = (
    Property("id", "string", doc="content hash of geometry_hash + method (hex); primary key"),
    Property(
        "geometry_hash",
        "string",
        doc="hash of numbers, positions (rounded to 1e-6 Å), cell (rounded to 1e-6 Å) and pbc",
    ),
    Property("numbers", "int16", per_atom=True, doc="atomic numbers"),
    Property("positions", "float64", (3,), per_atom=True, unit="Å", doc="Cartesian positions"),
    Property("cell", "float64", (3, 3), unit="Å", doc="cell, row vectors, row-major"),
    Property("pbc", "bool", (3,), doc="periodic boundary conditions"),
    Property("n_atoms", "int32", doc="number of atoms"),
    Property("formula", "string", doc="chemical formula (Hill order, ASE)"),
    Property("energy", "float64", unit="eV", nullable=True, doc="total energy"),
    Property(
        "forces", "float64", (3,), per_atom=True, unit="eV/Å", nullable=True, doc="atomic forces"
    ),
    Property(
        "stress",
        "float64",
        (6,),
        unit="eV/Å^3",
        nullable=True,
        doc="stress, Voigt order xx yy zz yz xz xy, ASE sign convention",
    ),
    Property("method", "string", doc="level of theory / calculator, e.g. 'PBE/PAW 520eV', 'EMT'"),
    Property("config_type", "string", nullable=True, doc="kind of structure"),
    Property("group", "string", nullable=True, doc="trajectory / group, for leak-free splits"),
    Property("source", "string", doc="where the frame came from: file#frame"),
    Property("info", "string", doc="other per-frame keys ASE carried, as a JSON object"),
)



def structure_schema(extra_arrays: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """Arrow schema of the structure table.

    Parameters
    ----------
    extra_arrays : dict, optional
        Extra per-atom array columns (``arr_<name>`` → Arrow type) to append.

    Returns
    -------
    pyarrow.Schema
    """
    fields = [p.field() for p in PROPERTIES]
    for name, typ in (extra_arrays or {}).items():
        fields.append(pa.field(name, typ, nullable=True, metadata={"per_atom": "true"}))
    return pa.schema(fields, metadata={"pesdata_schema_version": str(SCHEMA_VERSION)})


def array_column(name: str) -> str:
    """Column name of the extra per-atom array ``name``."""
    return ARRAY_PREFIX + name


#: Kinds of extra per-atom arrays and the Arrow type each is stored as.
ARRAY_KINDS: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def array_kind(name: str, values: np.ndarray, source: str = "") -> tuple[str, int | None]:
    """Kind (``float``, ``int``, ``bool``, ``string``) and width of an extra per-atom array.

    Parameters
    ----------
    name : str
        The ASE array name (for messages).
    values : numpy.ndarray
        One structure's array, shape ``(n_atoms,)`` (width None) or ``(n_atoms, k)`` (width k).
        Strings may be ``<U`` or, as ASE's extxyz reader gives them, ``object`` arrays of ``str``.
    source : str, optional
        The frame's source (``file#frame``), named in errors.

    Raises
    ------
    SchemaError
        The dtype or shape cannot be stored.
    """
    values = np.asarray(values)
    where = f"{source}: " if source else ""
    kind = values.dtype.kind
    if kind == "f":
        out = "float"
    elif kind in "iu":
        out = "int"
    elif kind == "b":
        out = "bool"
    elif kind in "US":
        out = "string"
    elif kind == "O" and all(isinstance(v, str) for v in values.flat):
        out = "string"
    else:
        detail = "" if kind != "O" else " (objects other than str)"
        raise SchemaError(
            f"{where}per-atom array '{name}' has unsupported dtype {values.dtype}{detail}; "
            "supported: float, int, bool, string"
        )
    if values.ndim == 1:
        return out, None
    if values.ndim == 2:
        return out, int(values.shape[1])
    raise SchemaError(
        f"{where}per-atom array '{name}' has shape {values.shape}; "
        "expected (n_atoms,) or (n_atoms, k)"
    )


def column_kind(field: pa.Field) -> tuple[str, int | None]:
    """Kind and width of an ``arr_*`` column, the inverse of :func:`array_field`.

    The width is None for one value per atom, ``k`` for ``k`` values, and -1 for a string
    column of several values per atom whose ``k`` is not recorded (any ``k`` fits it).

    Raises
    ------
    SchemaError
        The column is not a per-atom list of a supported kind.
    """
    vtype = field.type.value_type if pa.types.is_list(field.type) else None
    width = None
    if vtype is not None and pa.types.is_fixed_size_list(vtype):
        width, vtype = vtype.list_size, vtype.value_type
    elif vtype is not None and pa.types.is_list(vtype) and pa.types.is_string(vtype.value_type):
        # k strings per atom (see array_field); -1 when the metadata naming k was lost
        width = int((field.metadata or {}).get(b"width", -1))
        vtype = vtype.value_type
    if vtype is None:
        kind = None
    elif pa.types.is_floating(vtype):
        kind = "float"
    elif pa.types.is_integer(vtype):
        kind = "int"
    elif pa.types.is_boolean(vtype):
        kind = "bool"
    elif pa.types.is_string(vtype) or pa.types.is_large_string(vtype):
        kind = "string"
    else:
        kind = None
    if kind is None:
        raise SchemaError(f"column '{field.name}' has type {field.type}, not a per-atom array")
    return kind, width


def array_field(name: str, kind: str | np.ndarray, width: int | None = None) -> pa.Field:
    """Arrow field of the extra per-atom array ``name``.

    Parameters
    ----------
    name : str
        The ASE array name (without prefix).
    kind : str or numpy.ndarray
        ``float``, ``int``, ``bool`` or ``string`` (see :func:`array_kind`), or a sample
        array (one structure's, shape ``(n_atoms,)`` or ``(n_atoms, k)``) to take kind and
        width from.
    width : int, optional
        Values per atom when more than one (the ``k`` of ``(n_atoms, k)``).
    """
    if not isinstance(kind, str):
        kind, width = array_kind(name, kind)
    t = ARRAY_KINDS[kind]
    meta = {"per_atom": "true"}
    if width is not None and kind == "string":
        # Lance cannot store fixed-size lists of strings: one variable list per atom, the
        # width kept in the field's metadata
        t = pa.list_(t)
        meta["width"] = str(width)
    elif width is not None:
        t = pa.list_(t, width)
    return pa.field(array_column(name), pa.list_(t), nullable=True, metadata=meta)


def schema_document() -> dict:
    """The language-neutral JSON description of the structure table (``schemas/structure.json``)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pesdata structure table",
        "description": (
            "One row per frame. Generated from pesdata/schema.py; do not edit by hand. "
            f"Extra per-atom arrays are columns named '{ARRAY_PREFIX}<name>'."
        ),
        "schema_version": SCHEMA_VERSION,
        "columns": [
            {
                "name": p.name,
                "dtype": p.dtype,
                "shape": (["n_atoms"] if p.per_atom else []) + list(p.shape),
                "per_atom": p.per_atom,
                "unit": p.unit,
                "nullable": p.nullable,
                "arrow_type": str(p.arrow_type()),
                "doc": p.doc,
            }
            for p in PROPERTIES
        ],
    }


if __name__ == "__main__":  # pragma: no cover - regenerates schemas/structure.json
    print(json.dumps(schema_document(), indent=2, ensure_ascii=False))
