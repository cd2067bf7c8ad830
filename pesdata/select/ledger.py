"""The selection ledger: one row per candidate frame, its columns declared once, here.

A ledger is kept in the store as two files under ``artefacts/selection/``: ``<name>.parquet``
(the rows, with the Arrow schema :func:`ledger_schema` builds from :data:`COLUMNS`) and
``<name>.json`` (the summary: reference version, seed, thresholds, counts; validated against
``schemas/selection.json``). Every number a decision used is in the row, so ``select
--rescore`` can apply new thresholds or a new budget without recomputing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["COLUMNS", "DECISIONS", "LedgerColumn", "column_names", "ledger_schema"]

# Final decisions. ``novel`` / ``candidate`` are the decisions of frames that qualified when no
# selection ran on them (scoring only); the policy turns every qualifying frame into ``selected``
# or ``dropped_by_budget``.
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
