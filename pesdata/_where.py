"""How messages name a structure: its index and, when known, where it came from."""

from __future__ import annotations

__all__ = ["structure_name"]


def structure_name(atoms, k: int) -> str:
    """``"structure k (source)"``: how an error message names structure ``k`` of a list.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure; ``atoms.info["source"]`` (``file#frame`` or a store id, as
        :func:`pesdata.train.read_target` and :func:`pesdata.train.train` set it) is quoted
        when present, else the chemical formula.
    k : int
        Its 0-based position in the list the caller was given.

    Returns
    -------
    str
        E.g. ``"structure 3 (cu.xyz#7)"`` or ``"structure 3 (Cu4)"``.
    """
    info = getattr(atoms, "info", None)
    source = info.get("source") if isinstance(info, dict) else None
    if not source and hasattr(atoms, "get_chemical_formula"):
        source = atoms.get_chemical_formula()
    text = str(source) if source else ""
    if len(text) > 200:
        text = text[:197] + "..."
    return f"structure {k} ({text})" if text else f"structure {k}"
