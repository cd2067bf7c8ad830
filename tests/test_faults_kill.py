"""SIGKILL at random moments during curate, describe, select, label import and the loop
(issue 19, "Faults").

Each writer runs in a spawned interpreter and is killed after a delay drawn (seeded) within
the duration of an uninterrupted reference run of the same work. Afterwards the store passes
the check (``pesdata.store.verify``), no version is half-visible (every version after the
last one before the kill holds the old rows or the old plus all the new ones), and the same
command run again completes with the counts of the uninterrupted run.

Trials per writer: ``PESDATA_FAULT_TRIALS`` (default 3; the loop, ~15 s a run, 1). The slow
set is ``PESDATA_FAULT_TRIALS=20 pytest tests/test_faults_kill.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import pesdata

from .conftest import emt_cells
from .faults_helpers import (
    DATA,
    Timed,
    check_store,
    copy_store,
    kill_after,
    rng,
    spawn,
    timed,
    trials,
    versions_are_whole,
)

SI = DATA / "mlearn"
ACSF = {"descriptor": "acsf", "species": ["Si"], "r_cut": 4.0,
        "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.05, 0.0]], "g4_params": [[0.01, 1, 1]]}


def _outcome(killed: list[bool]) -> None:
    assert any(killed), "no kill landed before the work finished: the trials proved nothing"


# -- curate -------------------------------------------------------------------------------------

CURATE = """\
import sys, pesdata
store = pesdata.open_store(sys.argv[1])
print("READY", flush=True)
store.curate(sys.argv[2:], method="PBE")
"""


@pytest.fixture(scope="module")
def curate_case(tmp_path_factory):
    """A store holding Cu_test (31 frames) and three Si files to curate (264 distinct frames
    and 10 repeated ones), with an uninterrupted reference run."""
    root = tmp_path_factory.mktemp("curate")
    base = root / "base"
    store = pesdata.open_store(base, create=True)
    store.curate(SI / "Cu_test.extxyz", method="PBE")
    again = root / "repeat.extxyz"
    ase.io.write(again, ase.io.read(SI / "Si_test.extxyz", ":10"))
    files = [SI / "Si_training.extxyz", SI / "Si_test.extxyz", again]
    ref = copy_store(base, root / "ref")
    t0 = time.perf_counter()
    report = pesdata.open_store(ref).curate(files, method="PBE")
    seconds = time.perf_counter() - t0
    assert report.added == 239 and report.duplicates == 10  # what the files hold
    return base, files, report, Timed(seconds)


def test_curate_killed_at_random_moments(curate_case, tmp_path):
    base, files, ref, timed = curate_case
    store0 = pesdata.open_store(base)
    before, n0 = store0.version, len(store0.read())
    killed = []
    for trial in range(trials()):
        path = copy_store(base, tmp_path / f"s{trial}")
        killed.append(kill_after(spawn(CURATE, path, *files), timed.delay(rng("curate", trial))))
        check_store(path)
        versions_are_whole(path, before, n0, n0 + ref.added)
        report = pesdata.open_store(path).curate(files, method="PBE")
        assert report.added + report.duplicates == ref.added + ref.duplicates
        assert versions_are_whole(path, before, n0, n0 + ref.added) == n0 + ref.added
        check_store(path)
        assert not list((path / "_pesdata" / "tmp").glob("spool-*"))  # the killed spool went
    _outcome(killed)


# -- describe -----------------------------------------------------------------------------------

DESCRIBE = """\
import json, sys, pesdata
from pesdata.descriptors import describe, from_config
store = pesdata.open_store(sys.argv[1])
descriptor = from_config(json.loads(sys.argv[2]))
print("READY", flush=True)
describe(store, descriptor, batch_size=4)
"""
N_DESCRIBED, BATCH = 80, 4


def _cached_ids(store, descriptor) -> set[str]:
    """Ids the descriptor cache's index files name (read here, not through pesdata)."""
    index = Path(store.root) / "arrays" / descriptor.config_hash / "index"
    out: set[str] = set()
    for f in index.glob("*.parquet") if index.is_dir() else []:
        out.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return out


@pytest.fixture(scope="module")
def describe_case(tmp_path_factory):
    """A store of 80 Si frames and an uninterrupted describe's arrays."""
    from pesdata.descriptors import describe, from_config, load_descriptors

    root = tmp_path_factory.mktemp("describe")
    base = root / "base"
    frames = root / "si80.extxyz"
    ase.io.write(frames, ase.io.read(SI / "Si_training.extxyz", f":{N_DESCRIBED}"))
    pesdata.open_store(base, create=True).curate(frames, method="PBE")
    ref = pesdata.open_store(copy_store(base, root / "ref"))
    descriptor = from_config(ACSF)
    t0 = time.perf_counter()
    out = describe(ref, descriptor, batch_size=BATCH)
    seconds = time.perf_counter() - t0
    assert out["computed"] == N_DESCRIBED
    return base, load_descriptors(ref, descriptor), Timed(seconds)


def test_describe_killed_at_random_moments(describe_case, tmp_path):
    from pesdata.descriptors import describe, from_config, load_descriptors

    base, expected, timed = describe_case
    descriptor = from_config(ACSF)
    killed = []
    for trial in range(trials()):
        path = copy_store(base, tmp_path / f"s{trial}")
        killed.append(kill_after(spawn(DESCRIBE, path, json.dumps(ACSF)),
                                 timed.delay(rng("describe", trial))))
        check_store(path)
        store = pesdata.open_store(path)
        assert store.version == 2  # describe never writes the table
        cached = _cached_ids(store, descriptor)
        assert cached <= set(store.read().ids)
        out = describe(store, descriptor, batch_size=BATCH)
        assert out["computed"] == N_DESCRIBED - len(cached)  # only what is missing
        assert out["cached"] == len(cached)
        got = load_descriptors(store, descriptor)
        assert got["ids"] == expected["ids"]
        np.testing.assert_array_equal(got["numbers"], expected["numbers"])
        np.testing.assert_allclose(got["features"], expected["features"], rtol=1e-12,
                                   atol=1e-12)
        check_store(path)
    _outcome(killed)


# -- select -------------------------------------------------------------------------------------

SELECT = """\
import json, sys, pesdata
from pesdata.select import select
store = pesdata.open_store(sys.argv[1])
print("READY", flush=True)
select(store, [sys.argv[2]], descriptor=json.loads(sys.argv[4]), name="round1",
       out=sys.argv[3], budget=5, method="PBE")
"""


@pytest.fixture(scope="module")
def select_case(tmp_path_factory):
    """A store of 214 Si frames (reference described) and the ledger of an uninterrupted
    selection of 5 of the 25 Si_test frames."""
    from pesdata.descriptors import describe, from_config
    from pesdata.select import select

    root = tmp_path_factory.mktemp("select")
    base = root / "base"
    store = pesdata.open_store(base, create=True)
    store.curate(SI / "Si_training.extxyz", method="PBE")
    describe(store, from_config(ACSF))
    ref = pesdata.open_store(copy_store(base, root / "ref"))
    t0 = time.perf_counter()
    sel = select(ref, [SI / "Si_test.extxyz"], descriptor=ACSF, name="round1",
                 out=root / "ref-queue", budget=5, method="PBE")
    seconds = time.perf_counter() - t0
    return base, sel, Timed(seconds)


def _ledger_state(path: Path, queue: Path) -> str:
    """``none``, ``whole`` (summary + rows + queue) or ``queue-only`` (killed in between)."""
    summary = path / "artefacts" / "selection" / "round1.json"
    if summary.exists():
        assert queue.is_dir() and (queue / "manifest.json").is_file()
        return "whole"
    return "queue-only" if queue.exists() else "none"


def test_select_killed_at_random_moments(select_case, tmp_path):
    from pesdata.select import load_ledger, select

    base, ref, timed = select_case
    killed = []
    for trial in range(trials()):
        path = copy_store(base, tmp_path / f"s{trial}")
        queue = tmp_path / f"q{trial}"
        killed.append(kill_after(spawn(SELECT, path, SI / "Si_test.extxyz", queue,
                                       json.dumps(ACSF)), timed.delay(rng("select", trial))))
        check_store(path)
        store = pesdata.open_store(path)
        state = _ledger_state(path, queue)
        if state != "whole":  # a re-run replaces a queue orphaned before its ledger
            select(store, [SI / "Si_test.extxyz"], descriptor=ACSF, name="round1", out=queue,
                   budget=5, method="PBE")
        df, summary = load_ledger(store, "round1")
        pd.testing.assert_series_equal(df["decision"], ref.ledger["decision"].reset_index(
            drop=True), check_names=False)
        assert summary["counts"] == ref.summary["counts"]
        from pesdata.label import read_queue

        assert read_queue(queue).ids == list(ref.selected["id"])
        check_store(path)
    _outcome(killed)


KILL_BEFORE_LEDGER = SELECT.replace(
    'print("READY", flush=True)',
    'import os, signal, pesdata.select.ledger as L\n'
    'L.save_ledger = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n'
    'print("READY", flush=True)')


def test_select_rerun_after_a_kill_between_queue_and_ledger(select_case, tmp_path):
    from pesdata.select import select

    base, ref, _ = select_case
    path = copy_store(base, tmp_path / "s")
    queue = tmp_path / "q"
    proc = spawn(KILL_BEFORE_LEDGER, path, SI / "Si_test.extxyz", queue, json.dumps(ACSF))
    proc.wait(timeout=120)
    assert proc.returncode == -9 and _ledger_state(path, queue) == "queue-only"
    check_store(path)
    sel = select(pesdata.open_store(path), [SI / "Si_test.extxyz"], descriptor=ACSF,
                 name="round1", out=queue, budget=5, method="PBE")
    assert sel.counts == ref.counts
    from pesdata.label import read_queue

    assert read_queue(queue).ids == list(ref.selected["id"])


def test_select_never_replaces_a_queue_it_did_not_write(select_case, tmp_path):
    """Another selection's queue, or one whose ledger exists, is still refused."""
    from pesdata.errors import OutputError
    from pesdata.select import select

    base, _, _ = select_case
    path = copy_store(base, tmp_path / "s")
    queue = tmp_path / "q"
    proc = spawn(KILL_BEFORE_LEDGER, path, SI / "Si_test.extxyz", queue, json.dumps(ACSF))
    proc.wait(timeout=120)
    assert proc.returncode == -9
    before = sorted(p.name for p in queue.rglob("*"))
    with pytest.raises(OutputError, match="exists and is not empty"):
        select(pesdata.open_store(path), [SI / "Si_test.extxyz"], descriptor=ACSF,
               name="another", out=queue, budget=5, method="PBE")
    assert sorted(p.name for p in queue.rglob("*")) == before


# -- label import -------------------------------------------------------------------------------

IMPORT = """\
import sys, pesdata
from pesdata.label import import_results
store = pesdata.open_store(sys.argv[1])
print("READY", flush=True)
import_results(store, sys.argv[2])
"""
N_QUEUED = 24


def _queued(path: Path, queue: Path) -> None:
    """Write a queue of EMT cells selected from the store at ``path`` and label it (EMT)."""
    from pesdata.frames import Frame
    from pesdata.label import label_queue, write_queue

    store = pesdata.open_store(path)
    cands = emt_cells(N_QUEUED, seed=7)
    for i, a in enumerate(cands):
        a.info.update(pesdata_id=Frame.from_atoms(a).id, pesdata_source=f"cands#{i}")
    ledger = pd.DataFrame({"id": [a.info["pesdata_id"] for a in cands],
                           "decision": "selected"})
    write_queue(queue, cands, ledger, store=str(store.uri), reference_version=store.version,
                selection="round1")
    assert label_queue(queue, "emt").labelled == N_QUEUED


@pytest.fixture(scope="module")
def import_case(tmp_path_factory):
    from pesdata.label import import_results

    root = tmp_path_factory.mktemp("import")
    base = root / "base"
    pesdata.open_store(base, create=True).curate(emt_cells(6, seed=1))
    ref = copy_store(base, root / "ref")
    _queued(ref, root / "ref-queue")
    t0 = time.perf_counter()
    report = import_results(pesdata.open_store(ref), root / "ref-queue")
    seconds = time.perf_counter() - t0
    assert report.added == N_QUEUED
    return base, Timed(seconds)


def test_label_import_killed_at_random_moments(import_case, tmp_path):
    from pesdata.label import import_results, read_queue

    base, timed = import_case
    killed = []
    for trial in range(trials()):
        path = copy_store(base, tmp_path / f"s{trial}")
        queue = tmp_path / f"q{trial}"
        _queued(path, queue)
        store = pesdata.open_store(path)
        before, n0 = store.version, len(store.read())
        killed.append(kill_after(spawn(IMPORT, path, queue), timed.delay(rng("import", trial))))
        check_store(path)
        versions_are_whole(path, before, n0, n0 + N_QUEUED)
        report = import_results(pesdata.open_store(path), queue)
        assert report.added + report.duplicates == N_QUEUED and not report.missing
        assert versions_are_whole(path, before, n0, n0 + N_QUEUED) == n0 + N_QUEUED
        assert read_queue(queue).status == "imported"
        check_store(path)
    _outcome(killed)


# -- the loop -----------------------------------------------------------------------------------

LOOP = """\
import sys
from pesdata.loop import run_loop
import pesdata.train, pesdata.select, pesdata.explore, pesdata.label  # imports before READY
print("READY", flush=True)
run_loop(sys.argv[1], echo=lambda s: None)
"""

LOOP_CONFIG = """\
name: tiny
store: store
workdir: work
test: test.extxyz
initial: {files: [initial.extxyz], method: EMT}
model:
  n_members: 2
  epochs: 4
  descriptor: {descriptor: acsf, species: [Cu], r_cut: 4.0, g4_params: [],
               g2_params: [[0.5, 2.5], [1.0, 3.0], [0.05, 0.0]]}
  params: {hidden: [8], force_weight: 0.1}
explore:
  kind: md
  seeds: [seeds.extxyz]
  params: {temperatures: [300, 1200], steps: 10, interval: 5}
select: {budget: 2}
label: {calculator: emt, method: EMT}
iterations: 1
"""


def _loop_dir(root: Path) -> Path:
    from ase.build import bulk

    root.mkdir(parents=True, exist_ok=True)
    ase.io.write(root / "initial.extxyz", emt_cells(6, seed=1))
    ase.io.write(root / "test.extxyz", emt_cells(3, seed=2, rattle=0.15))
    ase.io.write(root / "seeds.extxyz", [bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)])
    (root / "tiny.yaml").write_text(LOOP_CONFIG)
    return root / "tiny.yaml"


def _check_loop(root: Path, df: pd.DataFrame) -> None:
    store = pesdata.open_store(root / "store")
    check_store(root / "store")
    assert list(df["iteration"]) == [0, 1]
    assert {"iter-0", "iter-1"} <= set(store.tags())
    ids = store.read().ids
    assert len(ids) == len(set(ids))
    assert len(ids) == 6 + int(df["added"].iloc[1:].sum())  # the record counts every row
    assert df["added"].iloc[1] == df["selected"].iloc[1]
    assert store.artefacts.load("loop", "tiny")["status"] == "finished"


@pytest.fixture(scope="module")
def loop_case(tmp_path_factory):
    from pesdata.loop import history

    root = tmp_path_factory.mktemp("loop") / "ref"
    config = _loop_dir(root)
    duration = timed(spawn(LOOP, config, cwd=root))  # the loop's own time, after imports
    _check_loop(root, history(pesdata.open_store(root / "store"), "tiny"))
    return duration


def test_loop_killed_at_random_moments(loop_case, tmp_path):
    from pesdata.loop import run_loop

    killed = []
    for trial in range(trials(default=1)):
        root = tmp_path / f"t{trial}"
        config = _loop_dir(root)
        proc = spawn(LOOP, config, cwd=root)
        # within the first 60 %: the loop's run time varies most with the machine's load
        killed.append(kill_after(proc, loop_case.delay(rng("loop", trial), hi=0.6)))
        if pesdata.store.store_exists(root / "store"):
            check_store(root / "store")
        _check_loop(root, run_loop(config, echo=lambda s: None))
    _outcome(killed)


def _kill_loop_at(root: Path, config: Path, patch: str) -> None:
    """Run the loop in a child that SIGKILLs itself where ``patch`` says."""
    code = LOOP.replace('print("READY", flush=True)', patch + '\nprint("READY", flush=True)')
    proc = spawn(code, config, cwd=root)
    out, errs = proc.communicate(timeout=300)
    assert proc.returncode == -9, errs


BETWEEN_QUEUE_AND_LEDGER = (
    "import os, signal, pesdata.select.ledger as L\n"
    "L.save_ledger = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)")
AFTER_IMPORT_COMMIT = (
    "import os, signal, pesdata.label.queue as Q\n"
    "original = Q.Queue.update\n"
    "def update(self, **changes):\n"
    "    if 'imports' in changes:  # label import committed; the queue is not told yet\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return original(self, **changes)\n"
    "Q.Queue.update = update")


def test_loop_killed_at_its_two_fragile_points_resumes_with_the_right_counts(tmp_path):
    """Killed inside select after the queue is written but before the ledger, the resumed
    loop selects again (it used to refuse its own queue directory); killed after label
    import committed but before the queue recorded it, the resumed loop still counts the rows
    the iteration added (it used to count 0)."""
    from pesdata.loop import run_loop

    config = _loop_dir(tmp_path)
    _kill_loop_at(tmp_path, config, BETWEEN_QUEUE_AND_LEDGER)
    queue = tmp_path / "work" / "iter-1" / "queue"
    assert (queue / "manifest.json").is_file()
    assert not pesdata.open_store(tmp_path / "store").artefacts.list("selection")
    check_store(tmp_path / "store")
    _kill_loop_at(tmp_path, config, AFTER_IMPORT_COMMIT)
    store = pesdata.open_store(tmp_path / "store")
    assert len(store.read()) > 6 and json.loads((queue / "manifest.json").read_text())[
        "status"] != "imported"  # committed, not recorded
    check_store(tmp_path / "store")
    _check_loop(tmp_path, run_loop(config, echo=lambda s: None))
