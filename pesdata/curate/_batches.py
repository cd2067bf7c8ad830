"""Frames in batches: per-frame validation (shared with select and evaluate), batching, and the
Dask tasks that parse, hash and validate whole input files for a parallel curate."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from ..frames import Frame
from ..io import read_frames
from ..parallel import batches
from ._validators import Issue

__all__ = ["iter_batches", "validate_batch"]


def _read_and_check(task: tuple) -> tuple[list[Frame], list[list[Issue]]]:
    """A Dask task: parse, hash and validate every frame of one file."""
    path, keys, meta, batch_size, frame_checks = task
    frames: list[Frame] = []
    checked: list[list[Issue]] = []
    for batch in iter_batches(read_frames(path, keys=keys, **meta), batch_size):
        frames.extend(batch)
        checked.extend(validate_batch(batch, frame_checks))
    return frames, checked


def _parallel_batches(inputs, keys, meta, batch_size, frame_checks, parallel, current):
    """The (frames, issues) batches of the serial path, computed as one Dask task per file.

    Results come back in input order and are cut into the same ``batch_size`` batches as the
    serial path's, so classification (and so the report and the committed rows) is identical.
    """
    from ..parallel import stream_map

    scheduler, workers = parallel
    # paths as given (they become the frames' sources, as in the serial run): dask.distributed
    # workers must see the same file system from the same working directory
    tasks = ((p, keys, meta, batch_size, frame_checks) for p in inputs)
    results = stream_map(_read_and_check, tasks, scheduler=scheduler, workers=workers)
    with contextlib.closing(results):  # an error in the caller shuts the pool down at once
        yield from _rebatch(inputs, results, batch_size, current)


def _rebatch(inputs, results, batch_size: int, current: dict):
    """Cut the per-file results into the serial path's batches."""
    frames: list[Frame] = []
    checked: list[list[Issue]] = []
    for path, (f, c) in zip(inputs, results, strict=True):
        current["path"] = path
        frames.extend(f)
        checked.extend(c)
        while len(frames) >= batch_size:
            yield frames[:batch_size], checked[:batch_size]
            del frames[:batch_size], checked[:batch_size]
    if frames:
        yield frames, checked


_GEOMETRY_FIELDS = ("positions", "cell", "pbc")


def validate_batch(frames: list[Frame], checks) -> list[list[Issue]]:
    """Errors of the per-frame validators for each of ``frames``.

    Validators run in order. Shape problems stop the later checks for that frame (they assume
    the shapes are right); once positions or cell are rejected (non-finite, degenerate cell,
    absurd coordinates), validators that need a sound geometry (``needs_geometry``, e.g. the
    overlap search) are skipped for the frame. A validator with a ``check_batch`` method
    (the overlap search) gets all the frames still to check at once.

    Parameters
    ----------
    frames : list of Frame
        One batch.
    checks : sequence of validators
        Per-frame validators (each with ``name`` and ``check(frame) -> list[Issue]``).

    Returns
    -------
    list of list of Issue
        The error-severity issues of each frame, in order; empty for a valid frame.
    """
    issues: list[list[Issue]] = [[] for _ in frames]
    stopped = [False] * len(frames)
    for check in checks:
        todo = [
            k for k in range(len(frames))
            if not stopped[k] and not (
                getattr(check, "needs_geometry", False)
                and any(i.severity == "error" and i.field in _GEOMETRY_FIELDS for i in issues[k])
            )
        ]
        if hasattr(check, "check_batch"):
            found = check.check_batch([frames[k] for k in todo])
        else:
            found = [check.check(frames[k]) for k in todo]
        for k, new in zip(todo, found, strict=True):
            issues[k].extend(new)
            if issues[k] and check.name == "shape":
                stopped[k] = True  # later checks assume the shapes are right
    return [[i for i in found if i.severity == "error"] for found in issues]


def iter_batches(items: Iterable, size: int) -> Iterable[list]:
    """Yield lists of at most ``size`` items.

    Parameters
    ----------
    items : iterable
        Anything, consumed lazily.
    size : int
        Largest batch.

    Yields
    ------
    list
        Consecutive batches; only the last may be shorter.
    """
    return batches(items, size)
