"""``verify``'s checks of the descriptor caches (``arrays/<config_hash>/``): every index file
readable, every segment it names present, 2-D, as wide as the group's other segments, with all its
chunks on disk, every entry's rows inside its segment; ids no version holds and segments no index
names are warnings (gc's business)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from .verify import _digests, _first_line, _prefix, _problem

__all__ = ["check_descriptors"]


def _n_features(group: Path) -> int | None:
    """The group's descriptor width: the one most of its segments have (None: no segment).
    (Building the descriptor from its config would import torch; a width that disagrees with
    the config is caught by ``load_descriptors``.)"""
    widths: dict[int, int] = {}
    for seg in group.glob("seg-*"):
        shape = _segment_shape(seg)
        if shape is not None and len(shape) == 2:
            widths[shape[1]] = widths.get(shape[1], 0) + 1
    return max(widths, key=widths.get) if widths else None


def _check_chunks(group: Path, seg: str, problems: list) -> None:
    """A segment written whole must have every chunk on disk (zarr would read a missing one
    as its fill value without a word)."""
    import zarr

    try:
        arr = zarr.open_array(group / seg, mode="r")
        if arr.attrs.get("all_chunks_written") and arr.nchunks_initialized < arr.nchunks:
            problems.append(_problem(
                "segment_incomplete", group / seg,
                f"{arr.nchunks_initialized} of {arr.nchunks} chunks on disk"))
    except Exception as exc:  # noqa: BLE001 - any failure to open is the problem reported
        problems.append(_problem("segment_unreadable", group / seg, _first_line(exc)))


def check_descriptors(store, all_ids: np.ndarray | None, problems: list) -> None:
    from .gc import unindexed_segments

    base = Path(store.root) / "arrays"
    if not base.is_dir():
        return
    for group in sorted(p for p in base.iterdir() if p.is_dir()):
        _check_group(group, all_ids, problems)
        for seg in unindexed_segments(group):
            problems.append(_problem(
                "segment_unindexed", seg, f"{seg.name} has no index entry (an orphan of a "
                "killed describe, or one still running; gc removes old ones)", "warning"))


def _segment_shape(path: Path) -> tuple | None:
    try:
        meta = json.loads((path / "zarr.json").read_text())
        return tuple(meta["shape"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_group(group: Path, all_ids: np.ndarray | None, problems: list) -> None:
    import pyarrow.parquet as pq

    width = _n_features(group)
    for f in sorted((group / "index").glob("*.parquet")):
        if f.name.startswith("."):
            continue
        try:
            index = pq.read_table(f, columns=["id", "segment", "first_row", "n_atoms"])
        except (OSError, KeyError, pa.ArrowException) as exc:
            problems.append(_problem("index_unreadable", f, _first_line(exc)))
            continue
        shapes: dict[str, tuple | None] = {}
        for seg in sorted(set(index.column("segment").to_pylist())):
            shapes[seg] = _segment_shape(group / seg)
            if shapes[seg] is None:
                problems.append(_problem("segment_missing", group / seg,
                                         f"segment named by {f.name} is missing or unreadable"))
            elif len(shapes[seg]) != 2 or (width is not None and shapes[seg][1] != width):
                problems.append(_problem(
                    "segment_invalid", group / seg,
                    f"segment has shape {shapes[seg]}, expected (rows, {width})"))
            else:
                _check_chunks(group, seg, problems)
        segs = index.column("segment").to_pylist()
        first = index.column("first_row").to_numpy(zero_copy_only=False)
        n = index.column("n_atoms").to_numpy(zero_copy_only=False)
        bad = 0
        for k, seg in enumerate(segs):
            shape = shapes.get(seg)
            if shape and len(shape) == 2 and (first[k] < 0 or n[k] < 0
                                              or first[k] + n[k] > shape[0]):
                bad += 1
                if bad <= 3:
                    problems.append(_problem(
                        "index_out_of_range", f,
                        f"entry {k} gives rows {first[k]}..{first[k] + n[k]} of {seg}, "
                        f"which has {shape[0]} rows"))
        if all_ids is None:  # some version unreadable: no id is known to be unknown
            continue
        unknown = ~np.isin(_prefix(_digests(index.column("id"))), all_ids)
        if unknown.any():
            problems.append(_problem(
                "index_unknown_ids", f,
                f"{int(unknown.sum())} id(s) in no version of the store (their versions may "
                "have been removed by gc)", "warning"))


