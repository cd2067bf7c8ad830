"""Crash safety and concurrent writers, in real subprocesses."""

import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

import pesdata

from .conftest import DATA

CU = DATA / "mlearn" / "Cu_train_acedata.xyz"  # 262 frames, 27,416 atoms
CURATE = (
    "import sys, pesdata; pesdata.open_store(sys.argv[1], create=True)"
    ".curate(sys.argv[2:], method='PBE', forces_key='force')"
)


def _curate_proc(store, *files):
    return subprocess.Popen(
        [sys.executable, "-c", CURATE, str(store), *map(str, files)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _check_readable(store_path):
    st = pesdata.open_store(store_path)
    snap = st.read()
    arrays = snap.to_arrays()  # reads every row of every column we depend on
    assert arrays["positions"].shape[0] == arrays["offsets"][-1]
    assert len(set(snap.ids)) == len(snap)
    return st, len(snap)


def test_sigkill_at_random_moments_leaves_previous_version(tmp_path):
    base = tmp_path / "base"
    st = pesdata.open_store(base, create=True)
    st.curate(DATA / "mlearn" / "Si_test.extxyz", method="PBE")
    n0 = len(st.read())
    rng = random.Random(1234)
    outcomes = []
    for k in range(6):
        path = tmp_path / f"s{k}"
        shutil.copytree(base, path)
        proc = _curate_proc(path, CU)
        time.sleep(rng.uniform(0.5, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        st, n = _check_readable(path)
        assert n in (n0, n0 + 262), n  # old version, or the whole new one: never a part
        outcomes.append(n == n0)
        rerun = _curate_proc(path, CU)
        assert rerun.wait(timeout=120) == 0, rerun.stderr.read().decode()
        st, n = _check_readable(path)
        assert n == n0 + 262
        assert not list((path / "_pesdata" / "tmp").glob("spool-*"))  # orphans cleaned
    assert any(outcomes), "no kill landed before the commit; the test proved nothing"


def test_two_writers_at_once_both_land(tmp_path):
    path = tmp_path / "s"
    pesdata.open_store(path, create=True)
    a = _curate_proc(path, DATA / "mlearn" / "Si_test.extxyz")
    b = _curate_proc(path, DATA / "mlearn" / "Cu_test.extxyz")
    assert a.wait(timeout=120) == 0, a.stderr.read().decode()
    assert b.wait(timeout=120) == 0, b.stderr.read().decode()
    st, n = _check_readable(path)
    assert n == 25 + 31
    assert st.version == 3
    formulas = st.read().to_pandas()["formula"]
    assert formulas.str.startswith("Si").sum() == 25 and formulas.str.startswith("Cu").sum() == 31
    e = st.read().to_arrays()["energy"]
    assert np.isfinite(e).all()
