"""Shared helpers of the fault tests (tests/test_faults_*.py): spawned writer processes killed
at random moments, a store check after the fact, and the trial count.

A writer runs in a fresh interpreter (``python -c``: Lance is not fork-safe, DESIGN §4). It
imports what it needs, prints ``READY`` and only then starts the work, so the kill delay —
drawn from a seeded generator within the work's measured duration — is real work time, not
interpreter start-up.

``PESDATA_FAULT_TRIALS`` sets the number of kill trials per writer (default 3; the slow set is
``PESDATA_FAULT_TRIALS=20``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import pesdata

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRIALS_ENV = "PESDATA_FAULT_TRIALS"
READY = "READY"


def trials(default: int = 3) -> int:
    """Kill trials per writer: ``$PESDATA_FAULT_TRIALS`` or ``default``."""
    value = os.environ.get(TRIALS_ENV, "")
    return max(1, int(value)) if value.strip() else default


def rng(name: str, trial: int) -> random.Random:
    """The seeded generator of one trial (same delays on every run)."""
    return random.Random(f"pesdata-faults/{name}/{trial}")


def spawn(code: str, *args, env: dict | None = None, cwd=None,
          gate: bool = False) -> subprocess.Popen:
    """Run ``code`` in a new interpreter; it must ``print('READY', flush=True)`` before work.

    With ``gate`` its stdin is a pipe: code that waits on ``sys.stdin.readline()`` after READY
    starts when :func:`release` writes a line (so several processes start together).
    """
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.PIPE if gate else subprocess.DEVNULL,
        text=True, env=full, cwd=cwd,
    )


def release(proc: subprocess.Popen) -> None:
    """Let a gated process (see :func:`spawn`) start its work."""
    proc.stdin.write("go\n")
    proc.stdin.flush()


def wait_ready(proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Block until the child printed READY (its imports are done)."""
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    while line and line.strip() != READY:
        assert time.monotonic() < deadline, "writer never got ready"
        line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise AssertionError(f"writer died before READY: {proc.stderr.read()}")


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after READY; True when it was still running."""
    wait_ready(proc)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    assert proc.returncode == 0, proc.stderr.read()
    return False


def finish(proc: subprocess.Popen, timeout: float = 300.0) -> str:
    """Wait for ``proc``; its stdout (after READY) on success, AssertionError otherwise."""
    out, errs = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, errs
    return out


def timed(proc: subprocess.Popen, timeout: float = 600.0) -> Timed:
    """Run a spawned process to the end; the seconds from READY to its exit."""
    wait_ready(proc)
    t0 = time.perf_counter()
    finish(proc, timeout)
    return Timed(time.perf_counter() - t0)


def copy_store(src: Path, dst: Path) -> Path:
    """A copy of a store directory (each trial gets its own)."""
    shutil.copytree(src, dst)
    return dst


@dataclass
class Timed:
    """Seconds a reference (uninterrupted) run took."""

    seconds: float

    def delay(self, r: random.Random, lo: float = 0.02, hi: float = 0.95) -> float:
        """A kill moment within the run: uniform in [lo, hi] × its duration."""
        return r.uniform(lo, hi) * self.seconds


# -- the store check after a fault ---------------------------------------------------------------


def _verify():
    try:
        from pesdata.store.verify import verify  # H1's pesdata.store.verify, once it lands
    except ImportError:
        return None
    return verify


def check_store(path) -> dict:
    """``pesdata.store.verify`` when it exists, else :func:`read_everything`; assert ok.

    Returns
    -------
    dict
        ``{"ok", "versions_checked", "problems"}``.
    """
    store = pesdata.open_store(path)
    verify = _verify()
    result = verify(store) if verify is not None else read_everything(store)
    assert result["ok"], result["problems"]
    assert result["versions_checked"] == len(store.log())
    return result


def read_everything(store) -> dict:
    """A stand-in for ``verify``: every version and every artefact is read back whole."""
    problems: list[str] = []
    log = store.log()
    for v in log["version"]:
        try:
            snap = store.read(int(v))
            arrays = snap.to_arrays()
            if arrays["positions"].shape[0] != arrays["offsets"][-1]:
                problems.append(f"version {v}: positions do not match n_atoms")
            ids = snap.ids
            if len(ids) != len(set(ids)):
                problems.append(f"version {v}: duplicate ids")
        except Exception as exc:  # noqa: BLE001 - every failure is a problem to list
            problems.append(f"version {v}: {type(exc).__name__}: {exc}")
    versions = set(int(v) for v in log["version"])
    for kind in ("curate_report", "loop", "selection", "model_card", "split"):
        for name in store.artefacts.list(kind):
            try:
                doc = store.artefacts.load(kind, name)
                if kind == "selection":
                    from pesdata.select import load_ledger

                    load_ledger(store, name)
                if int(doc["version"]) not in versions:
                    problems.append(f"{kind}/{name}: version {doc['version']} does not exist")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{kind}/{name}: {type(exc).__name__}: {exc}")
    arrays = Path(store.root) / "arrays"
    for group in sorted(arrays.glob("*")) if arrays.is_dir() else []:
        problems += _check_descriptor_group(group)
    return {"ok": not problems, "versions_checked": len(log), "problems": problems}


def _check_descriptor_group(group: Path) -> list[str]:
    """Every index entry of a descriptor group points at a complete segment."""
    import pyarrow.parquet as pq
    import zarr

    problems = []
    index = sorted((group / "index").glob("*.parquet"))
    if not index:
        return problems
    try:
        g = zarr.open_group(group, mode="r")
    except Exception as exc:  # noqa: BLE001
        return [f"{group}: {type(exc).__name__}: {exc}"]
    for f in index:
        try:
            t = pq.read_table(f).to_pydict()
            seg = g[t["segment"][0]]
            data = seg[:]
            end = max(a + n for a, n in zip(t["first_row"], t["n_atoms"], strict=True))
            if end > data.shape[0] or not np.isfinite(data).all():
                problems.append(f"{f}: segment shorter than its index or not finite")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{f}: {type(exc).__name__}: {exc}")
    return problems


def versions_are_whole(path, before: int, n_before: int, n_after: int) -> int:
    """Every version after ``before`` holds ``n_before`` or ``n_after`` rows (never a part).

    Returns
    -------
    int
        The latest version's row count.
    """
    store = pesdata.open_store(path)
    log = store.log()
    later = log[log["version"] > before]
    for v, n in zip(later["version"], later["n_structures"], strict=True):
        assert n in (n_before, n_after), f"version {v} holds {n} rows: a half-visible write"
        assert len(store.read(int(v))) == n
    return int(log["n_structures"].iloc[-1])


def leftover_temporaries(root) -> list[Path]:
    """Temporary files of pesdata's atomic writes and spools under ``root``."""
    root = Path(root)
    found = [p for p in root.rglob("*") if p.name.endswith(".tmp") and p.name.startswith(".")]
    tmp = root / "_pesdata" / "tmp"
    if tmp.is_dir():
        found += list(tmp.glob("spool-*"))
    return found
