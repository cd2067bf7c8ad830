"""Dask integration: scheduler specs and a streaming, order-keeping map over Dask.

pesdata's heavy steps (curate's parsing + validation + hashing, describe's descriptor
segments, select's candidate descriptors, novelty and committee scores) run as Dask tasks when
given ``scheduler=``:

* ``None`` — the serial path in the calling process (the default);
* ``"synchronous"`` — Dask's single-threaded scheduler (debugging; same code path as the
  others);
* ``"threads"`` / ``"processes"`` — Dask's local schedulers over one pool kept for the whole
  run; process pools use the ``spawn`` start method (Lance is not fork-safe, DESIGN §4);
* ``"tcp://HOST:PORT"`` — a running ``dask.distributed`` scheduler; tasks are its futures.

:func:`stream_map` yields results in input order with a bounded number of tasks in flight, so
memory stays flat however many tasks there are. Workers never write the Lance table: the
caller, one writer, commits. ``dask`` and ``distributed`` are imported only when a scheduler is
used.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import ParameterError

__all__ = ["SCHEDULERS", "CONNECT_TIMEOUT", "check_scheduler", "check_workers", "pooled",
           "shared_pool", "stream_map"]

SCHEDULERS = ("synchronous", "threads", "processes")
#: Seconds :func:`stream_map` waits for a ``tcp://`` scheduler to answer.
CONNECT_TIMEOUT = 10.0

_TCP = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))"
                  r":(?P<port>[0-9]{1,5})/?$")


def check_scheduler(spec) -> str | None:
    """Normalise a scheduler spec.

    Parameters
    ----------
    spec : None or str
        ``None`` (serial), ``synchronous``, ``threads``, ``processes`` or a
        ``tcp://HOST:PORT`` address of a ``dask.distributed`` scheduler.

    Returns
    -------
    str or None
        The spec, lower-cased for the local names, ``tcp://host:port`` for an address.

    Raises
    ------
    ParameterError
        Anything else, quoting the value and the choices.
    """
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise ParameterError(f"scheduler must be one of {', '.join(SCHEDULERS)} or "
                             f"tcp://HOST:PORT, got {spec!r:.200}")
    text = spec.strip()
    if text.lower() in SCHEDULERS:
        return text.lower()
    m = _TCP.match(text)
    if m is not None:
        port = int(m.group("port"))
        if 1 <= port <= 65535:
            return f"tcp://{m.group('host')}:{port}"
        raise ParameterError(f"scheduler {spec!r:.200}: port must be 1..65535, got {port}")
    raise ParameterError(f"scheduler must be one of {', '.join(SCHEDULERS)} or "
                         f"tcp://HOST:PORT, got {spec!r:.200}")


def check_workers(workers) -> int | None:
    """``None`` (Dask's default: one per core) or a positive number of local workers."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers!r:.200}")
    return workers


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def stream_map(
    func: Callable[[Any], Any],
    items: Iterable,
    *,
    scheduler: str | None,
    workers: int | None = None,
    window: int | None = None,
) -> Iterator:
    """``func(item)`` for each of ``items``, in input order, as Dask tasks.

    At most ``window`` tasks (default 2 × workers) are in flight or finished but not yet
    consumed; ``items`` is consumed lazily, so neither inputs nor results pile up.

    Parameters
    ----------
    func : callable
        A module-level (picklable) function of one argument.
    items : iterable
        Task inputs (picklable for ``processes`` and ``tcp://``).
    scheduler : str or None
        As :func:`check_scheduler` accepts; ``None`` runs ``func`` here, one item at a time.
    workers : int, optional
        Local workers (threads or processes; default one per core). Ignored for ``tcp://``.
    window : int, optional
        Most tasks in flight.

    Yields
    ------
    object
        The results, in the order of ``items``.

    Raises
    ------
    PesdataError
        What a task raised (the original exception is re-raised, not a Dask type).
    ParameterError
        A bad scheduler spec, or a ``tcp://`` scheduler that does not answer within
        :data:`CONNECT_TIMEOUT` seconds.
    """
    spec = check_scheduler(scheduler)
    workers = check_workers(workers)
    if spec is None:
        for item in items:
            yield func(item)
        return
    if spec.startswith("tcp://"):
        yield from _distributed(func, items, spec, window)
        return
    n = workers or (1 if spec == "synchronous" else _default_workers())
    window = window or 2 * n
    yield from _local(func, items, spec, n, window)


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of at most ``size`` of ``items`` (consumed lazily); only the last may
    be shorter."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _caught(func, x) -> tuple[bool, Any]:
    """``(True, func(x))``, or ``(False, the exception)`` it raised (a task's error travels back
    as a value and is raised by :func:`_unwrap` in input order)."""
    try:
        return True, func(x)
    except Exception as exc:  # noqa: BLE001 - re-raised by _unwrap, unchanged
        return False, exc


def _unwrap(results) -> Iterator:
    for ok, value in results:
        if not ok:
            raise value
        yield value


_SCOPES = threading.local()  # per thread: (scheduler, workers) → the pool of an open scope


def _shared() -> dict[tuple[str, int], Any]:
    """This thread's open :func:`shared_pool` scopes (another thread never sees them)."""
    pools = getattr(_SCOPES, "pools", None)
    if pools is None:
        pools = _SCOPES.pools = {}
    return pools


def _new_pool(spec: str, n: int):
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if spec == "processes":
        import multiprocessing

        # Lance is not fork-safe: spawn, whatever dask's config says
        return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(n, thread_name_prefix="pesdata-dask")


@contextlib.contextmanager
def shared_pool(scheduler: str | None, workers: int | None = None) -> Iterator[None]:
    """Keep one local pool for every :func:`stream_map` call made inside the block.

    A command that makes several passes (``select``: describe the reference and the
    candidates, the reference's statistics, gathers and searches) otherwise spawns a fresh
    process pool per pass, and each new worker imports pesdata, torch and faiss again (a few
    seconds a pass). Calls with another scheduler or worker count, ``synchronous``, ``None``
    and ``tcp://`` are unaffected; a nested scope with the same pool is a no-op. The scope
    belongs to the thread that opens it (other threads keep their own pools), a pool broken
    by a dead worker is not reused, and the pool is shut down when the block ends.

    Parameters
    ----------
    scheduler, workers :
        As for :func:`stream_map`.
    """
    spec, n = check_scheduler(scheduler), check_workers(workers)
    if spec not in ("threads", "processes"):
        yield
        return
    key = (spec, n or _default_workers())
    pools = _shared()
    if key in pools:
        yield
        return
    pools[key] = pool = _new_pool(*key)
    try:
        yield
    finally:
        try:
            if pools.get(key) is pool:
                del pools[key]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def pooled(func: Callable) -> Callable:
    """Decorate a function with ``scheduler`` and ``workers`` keywords so that the whole call
    runs inside :func:`shared_pool` (one pool for all its passes)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with shared_pool(kwargs.get("scheduler"), kwargs.get("workers")):
            return func(*args, **kwargs)

    return wrapper


def _local(func, items, spec: str, n: int, window: int) -> Iterator:
    """Windows of ``dask.delayed`` tasks over one pool; the next window computes while the
    caller consumes the current one (so at most two windows of results exist)."""
    from concurrent.futures import ThreadPoolExecutor

    import dask

    if spec == "synchronous":
        for chunk in batches(items, window):
            yield from dask.compute(*[dask.delayed(func, pure=False)(x) for x in chunk],
                                    scheduler="synchronous")
        return
    pool = _shared().get((spec, n))
    owned = pool is None or getattr(pool, "_broken", False)  # a dead worker broke it: not reused
    if owned:
        pool = _new_pool(spec, n)
    half = max(1, window // 2)

    def compute(chunk):
        # each task returns its error instead of raising it, so the error raised is the first
        # in input order (as in the serial run), not the first to happen
        tasks = [dask.delayed(_caught, pure=False)(func, x) for x in chunk]
        # chunksize=1: dask's processes scheduler otherwise sends up to 6 ready tasks to one
        # worker as a batch, so a window of 2 tasks ran on one worker while the other idled
        return dask.compute(*tasks, scheduler=spec, pool=pool, num_workers=n,
                            optimize_graph=False, chunksize=1)

    driver = ThreadPoolExecutor(1, thread_name_prefix="pesdata-dask-driver")
    try:
        pending = None
        for chunk in batches(items, half):
            fut = driver.submit(compute, chunk)
            if pending is not None:
                yield from _unwrap(pending.result())
            pending = fut
        if pending is not None:
            yield from _unwrap(pending.result())
    finally:
        driver.shutdown(wait=True, cancel_futures=True)
        if owned:
            pool.shutdown(wait=True, cancel_futures=True)


def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` for ``tcp://HOST:PORT``; a clear error when none answers
    within ``timeout`` seconds (default :data:`CONNECT_TIMEOUT`)."""
    from distributed import Client

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ParameterError(
            f"scheduler {address}: no Dask scheduler answered within {timeout:g} s "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def _distributed(func, items, address: str, window: int | None) -> Iterator:
    client = connect(address)
    try:
        if window is None:
            n = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
            window = 2 * max(1, n)
        inflight: deque = deque()
        it = iter(items)
        for item in it:
            inflight.append(client.submit(func, item, pure=False))
            if len(inflight) >= window:
                break
        while inflight:
            fut = inflight.popleft()
            try:
                result = fut.result()
            finally:
                fut.release()
            for item in it:
                inflight.append(client.submit(func, item, pure=False))
                break
            yield result
    finally:
        for fut in list(locals().get("inflight", ())):
            fut.cancel()
        client.close()
