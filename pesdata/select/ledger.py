"""The selection ledger: one row per candidate frame, its columns declared once, here.

A ledger is kept in the store as two files under ``artefacts/selection/``: ``<name>.parquet``
(the rows, with the Arrow schema :func:`ledger_schema` builds from :data:`COLUMNS`) and
``<name>.json`` (the summary: reference version, seed, thresholds, counts; validated against
``schemas/selection.json``). Every number a decision used is in the row, so ``select
--rescore`` can apply new thresholds or a new budget without recomputing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

__all__ = ["COLUMNS", "DECISIONS", "LedgerColumn", "column_names", "ledger_schema"]

# Final decisions. A qualifying frame is ``selected`` or ``dropped_by_budget``; with a budget of 0
# (score only: nothing is picked) it keeps what made it qualify, ``novel`` or ``candidate``.
# ``accurate``: neither novel nor an error candidate (familiar, and accurate where a model judged).
DECISIONS = ("accurate", "candidate", "novel", "failed", "duplicate", "selected",
             "dropped_by_budget")


@dataclass(frozen=True)
class LedgerColumn:
    """One ledger column: name, Arrow type, unit and a one-line description."""

    name: str
    type: pa.DataType
    doc: str
    unit: str = ""


_F = pa.float64()
_S = pa.string()

COLUMNS: tuple[LedgerColumn, ...] = (
    # who the candidate is
    LedgerColumn("id", _S, "candidate id: the structure id its geometry and method give"),
    LedgerColumn("geometry_hash", _S, "canonical geometry hash (as in the structure table)"),
    LedgerColumn("source", _S, "where it came from: file#frame or store@version#row"),
    LedgerColumn("n_atoms", pa.int32(), "number of atoms"),
    LedgerColumn("formula", _S, "reduced-order chemical formula (Hill)"),
    LedgerColumn("config_type", _S, "config_type info value, if any"),
    LedgerColumn("group", _S, "group info value (trajectory, source run), if any"),
    # validity, before any criterion
    LedgerColumn("invalid", _S, "why the frame cannot be used (NaN/inf, overlap, degenerate "
                 "cell); null when valid"),
    LedgerColumn("duplicate_of", _S, "id of the stored structure or earlier candidate with the "
                 "same geometry; null when unique"),
    # novelty
    LedgerColumn("novelty", _F, "frame novelty relative to its threshold: the max over atoms "
                 "(or top-k mean) of distance / threshold of the atom's element; > 1 is novel"),
    LedgerColumn("novelty_distance", _F, "descriptor-space distance of the atom that set "
                 "the novelty"),
    LedgerColumn("novelty_threshold", _F, "threshold of that atom's element (descriptor-space "
                 "distance; null: element without a calibrated threshold)"),
    LedgerColumn("novelty_element", _S, "element of the atom that set the novelty"),
    LedgerColumn("novelty_atom", pa.int32(), "index (in the frame) of the atom that set it"),
    LedgerColumn("atom_distances", pa.list_(pa.float32()), "per-atom distance to the nearest "
                 "reference environment of the same element (inf: element not in reference)"),
    LedgerColumn("atom_numbers", pa.list_(pa.int16()), "atomic number of each atom"),
    LedgerColumn("novelty_verdict", _S, "novel | familiar | failed (null: not scored)"),
    # error / committee
    LedgerColumn("energy_error", _F, "|E_model − E_label| per atom", "eV/atom"),
    LedgerColumn("force_error", _F, "largest per-atom |F_model − F_label|", "eV/Å"),
    LedgerColumn("energy_std", _F, "committee standard deviation of the energy per atom",
                 "eV/atom"),
    LedgerColumn("force_std", _F, "largest per-atom committee force spread", "eV/Å"),
    LedgerColumn("trust", _S, "which trust window applied (default, a config_type or a "
                 "formula)"),
    LedgerColumn("e_lo", _F, "energy trust window lower bound applied", "eV/atom"),
    LedgerColumn("e_hi", _F, "energy trust window upper bound applied", "eV/atom"),
    LedgerColumn("f_lo", _F, "force trust window lower bound applied", "eV/Å"),
    LedgerColumn("f_hi", _F, "force trust window upper bound applied", "eV/Å"),
    LedgerColumn("error_verdict", _S, "accurate | candidate | failed (null: not scored)"),
    # provenance
    LedgerColumn("model_hash", _S, "SHA-256 of the model or committee weights, if one was used"),
    LedgerColumn("reference_version", pa.int64(), "store version the reference was read from"),
    LedgerColumn("seed", pa.int64(), "seed of the selection"),
    # diversity and the outcome
    LedgerColumn("fingerprint", pa.list_(pa.float32()), "per-structure fingerprint used for "
                 "diversity"),
    LedgerColumn("priority", _F, "how clear a case the frame is (used to order the budget)"),
    LedgerColumn("decision", _S, "one of " + ", ".join(DECISIONS)),
    LedgerColumn("reason", _S, "why, in words"),
    LedgerColumn("rank", pa.int32(), "pick order among the selected (0 first); null otherwise"),
)


def column_names() -> list[str]:
    """The ledger's column names, in order."""
    return [c.name for c in COLUMNS]


def ledger_schema() -> pa.Schema:
    """The Arrow schema of a ledger, with units and descriptions in the field metadata."""
    return pa.schema([
        pa.field(c.name, c.type, metadata={"doc": c.doc, "unit": c.unit}) for c in COLUMNS
    ])


KIND = "selection"  # artefact kind: schemas/selection.json validates the summary


def to_table(df):
    """The ledger DataFrame as an Arrow table of :func:`ledger_schema` (missing columns null).

    Parameters
    ----------
    df : pandas.DataFrame
        Ledger rows; columns outside :data:`COLUMNS` are refused.

    Returns
    -------
    pyarrow.Table
    """
    from ..errors import SchemaError

    extra = sorted(set(df.columns) - set(column_names()))
    if extra:
        raise SchemaError(f"ledger has undeclared column(s) {extra}; declare them in "
                          "pesdata/select/ledger.py COLUMNS")
    schema = ledger_schema()
    arrays = []
    for f in schema:
        if f.name in df.columns:
            keep_nan = pa.types.is_floating(f.type)  # NaN in a float column is a value
            values = [None if _missing(v, keep_nan) else _plain(v) for v in df[f.name].tolist()]
            arrays.append(pa.array(values, type=f.type))
        else:
            arrays.append(pa.nulls(len(df), type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _missing(v, keep_nan: bool) -> bool:
    """None, or a scalar NaN where the column's type cannot hold NaN (pandas' 'no value')."""
    if v is None or v is pd.NA:
        return True
    return not keep_nan and isinstance(v, float) and v != v


def _plain(v):
    """numpy arrays as lists (pyarrow takes those for list columns)."""
    return v.tolist() if hasattr(v, "tolist") and getattr(v, "ndim", 0) else v


def check_name(store, name: str) -> None:
    """ParameterError unless ``name`` is a plain file name no kept ledger has yet."""
    import os

    from ..errors import ParameterError

    path = store.artefacts._path(KIND, name)  # ParameterError for an unsafe name
    if os.path.exists(path):
        raise ParameterError(f"a selection named {name!r} exists; choose another --name")


def save_ledger(store, name: str, df, summary: dict) -> dict:
    """Keep a ledger in ``store``: ``artefacts/selection/<name>.parquet`` then ``<name>.json``.

    The Parquet file is written first (atomically, never replacing one), the JSON summary last
    (validated against ``schemas/selection.json``, exclusive), so a ledger whose summary exists is
    complete; a kill in between leaves an orphan Parquet file that the next save of that name
    replaces.

    Parameters
    ----------
    store : pesdata.Store
        A local store.
    name : str
        Ledger (selection) name: a plain file name.
    df : pandas.DataFrame
        The rows.
    summary : dict
        The summary; must name ``version`` (the reference version) and validate.

    Returns
    -------
    dict
        ``{"parquet": path, "summary": path}``.

    Raises
    ------
    ArtefactError
        A ledger of that name exists, or the summary does not validate.
    """
    import os

    import pyarrow.parquet as pq

    from ..atomic import atomic_path
    from ..errors import ArtefactError
    from ..store import validate_artefact

    arts = store.artefacts
    json_path = arts._path(KIND, name)  # validates the name
    if os.path.exists(json_path):
        raise ArtefactError(f"{KIND} artefact {name!r} exists; choose another name")
    validate_artefact(KIND, summary, where=name)
    table = to_table(df)
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    parquet = json_path[:-5] + ".parquet"
    with atomic_path(parquet) as tmp:  # an orphan from a killed save is replaced
        pq.write_table(table, tmp)
    arts.save(KIND, name, summary)
    return {"parquet": parquet, "summary": json_path}


def load_ledger(store, name: str):
    """A kept ledger: ``(DataFrame, summary dict)``.

    Raises
    ------
    ArtefactNotFound
        No ledger ``name`` (its summary is missing).
    StoreCorruptError
        The summary exists but the Parquet file is missing or unreadable.
    """
    import pyarrow.parquet as pq

    from ..errors import StoreCorruptError

    summary = store.artefacts.load(KIND, name)
    parquet = store.artefacts._path(KIND, name)[:-5] + ".parquet"
    try:
        table = pq.read_table(parquet)
    except (OSError, pa.ArrowException) as exc:
        raise StoreCorruptError(f"{parquet}: the rows of ledger {name!r} are missing or "
                                f"unreadable ({exc})") from exc
    if not {"id", "decision", "reason"} <= set(table.column_names):
        raise StoreCorruptError(f"{parquet}: not a selection ledger (no id/decision/reason)")
    schema = ledger_schema()
    for name in column_names():  # a ledger kept before a column was declared: null there
        if name not in table.column_names:
            table = table.append_column(schema.field(name), pa.nulls(len(table),
                                                                     schema.field(name).type))
    table = table.select(column_names())
    ints = {pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
    return table.to_pandas(types_mapper=ints.get), summary
