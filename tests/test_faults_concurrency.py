"""Four concurrent writers and a reader (issue 19, "Faults").

Two curates and two label imports run at once in spawned processes, with frames of their own
and frames they share (a file both curates read, structures both queues hold), while a fifth
process reads the latest version's arrays and the log in a loop. Afterwards: every distinct
row written is in the latest version (the same set as the four run one after another), no
row twice, the reader never failed and saw only whole versions, and the store verifies.
"""

from __future__ import annotations

import ase.io
import pandas as pd

import pesdata

from .conftest import emt_cells
from .faults_helpers import DATA, check_store, copy_store, finish, release, spawn, wait_ready

CURATE = """\
import sys, pesdata
store = pesdata.open_store(sys.argv[1])
print("READY", flush=True)
sys.stdin.readline()  # all writers start together
store.curate(sys.argv[2:], method="PBE")
"""

IMPORT = """\
import sys, pesdata
from pesdata.label import import_results
store = pesdata.open_store(sys.argv[1])
print("READY", flush=True)
sys.stdin.readline()
import_results(store, sys.argv[2])
"""

READER = """\
import os, sys, pesdata
store = pesdata.open_store(sys.argv[1])
stop, allowed = sys.argv[2], set(int(n) for n in sys.argv[3].split(","))
print("READY", flush=True)
reads = 0
while True:
    last = os.path.exists(stop)  # one more read after the writers are done
    log = store.log()
    snap = store.read()
    arrays = snap.to_arrays()
    ids = snap.ids
    assert arrays["offsets"][-1] == arrays["positions"].shape[0] == arrays["forces"].shape[0]
    assert len(ids) == len(set(ids)) == len(arrays["energy"]), "duplicate ids in a version"
    bad = set(log["n_structures"]) - allowed
    assert not bad, f"a version holds {bad} rows: not a sum of whole writes"
    reads += 1
    if last:
        break
print(reads, len(ids), flush=True)
"""


def _queue(store, path, cells, selection):
    from pesdata.frames import Frame
    from pesdata.label import label_queue, write_queue

    for i, a in enumerate(cells):
        a.info.update(pesdata_id=Frame.from_atoms(a).id, pesdata_source=f"{selection}#{i}")
    ledger = pd.DataFrame({"id": [a.info["pesdata_id"] for a in cells],
                           "decision": "selected"})
    write_queue(path, cells, ledger, store=str(store.uri), reference_version=store.version,
                selection=selection)
    assert label_queue(path, "emt").labelled == len(cells)


def _setup(root):
    """The store (6 EMT cells), two curate inputs sharing one file, two labelled queues
    sharing 4 structures."""
    store = pesdata.open_store(root / "store", create=True)
    store.curate(emt_cells(6, seed=1))
    shared = root / "shared.extxyz"
    ase.io.write(shared, ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":10"))
    curates = [[DATA / "mlearn" / "Si_test.extxyz", shared],
               [DATA / "mlearn" / "Cu_test.extxyz", shared]]
    both = emt_cells(4, seed=30)
    _queue(store, root / "q1", emt_cells(10, seed=31) + [a.copy() for a in both], "q1")
    _queue(store, root / "q2", emt_cells(10, seed=32) + [a.copy() for a in both], "q2")
    return store, curates, [root / "q1", root / "q2"]


def _sequential(root, curates, queues):
    """The four writes one after another: the ids the store must end with."""
    from pesdata.label import import_results

    store = pesdata.open_store(root)
    sizes = {len(store.read())}
    for files in curates:
        store.curate(files, method="PBE")
        sizes.add(len(store.read()))
    for q in queues:
        import_results(store, q, other_store=True)
        sizes.add(len(store.read()))
    return set(store.read().ids)


def _allowed_sizes(n0: int) -> set[int]:
    """Row counts a version may hold: the old rows plus the union of any subset of the four
    writes (curate A: 25 Si; curate B: 31 Cu + 10 of A's Si; each queue 10 own + 4 shared)."""
    from itertools import combinations

    writes = [{f"si{k}" for k in range(25)},
              {f"cu{k}" for k in range(31)} | {f"si{k}" for k in range(10)},
              {f"x{k}" for k in range(10)} | {f"y{k}" for k in range(4)},
              {f"z{k}" for k in range(10)} | {f"y{k}" for k in range(4)}]
    return {n0 + len(set().union(*subset)) for r in range(5)
            for subset in combinations(writes, r)}


def test_four_writers_and_a_reader(tmp_path):
    store, curates, queues = _setup(tmp_path)
    ref_root = copy_store(tmp_path / "store", tmp_path / "ref")
    ref_queues = [copy_store(q, tmp_path / f"ref-q{k}") for k, q in enumerate(queues)]
    expected = _sequential(ref_root, curates, ref_queues)
    n0 = len(store.read())
    assert len(expected) == n0 + 25 + 31 + 24  # 10 Si frames and 4 cells are shared
    allowed = _allowed_sizes(n0) | {0}  # version 1 is the empty store
    stop = tmp_path / "stop"
    reader = spawn(READER, store.root, stop, ",".join(map(str, sorted(allowed))))
    writers = [spawn(CURATE, store.root, *files, gate=True) for files in curates]
    writers += [spawn(IMPORT, store.root, q, gate=True) for q in queues]
    for proc in [reader, *writers]:
        wait_ready(proc)
    for proc in writers:
        release(proc)
    for proc in writers:
        finish(proc)
    stop.touch()
    reads, n_last = map(int, finish(reader).split())
    assert reads >= 2 and n_last == len(expected)
    final = pesdata.open_store(store.root)
    ids = final.read().ids
    assert len(ids) == len(set(ids))
    assert set(ids) == expected  # no lost rows, none extra
    assert final.version == pesdata.open_store(ref_root).version  # one version per write
    assert set(final.log()["n_structures"]) <= allowed
    check_store(store.root)
