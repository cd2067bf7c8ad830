"""Dask scheduling (pesdata.parallel): curate, describe and select on Dask give exactly the
serial results, on the local schedulers and on a dask.distributed LocalCluster (loopback)."""

from __future__ import annotations

import socket

import ase.io
import numpy as np
import pytest

import pesdata
from pesdata.curate import curate
from pesdata.descriptors import describe, from_config, load_descriptors
from pesdata.errors import InputError, ParameterError, PesdataError
from pesdata.parallel import check_scheduler, stream_map

from .conftest import CU_ACSF_SMALL_CONFIG, DATA

LOCAL = ("synchronous", "threads", "processes")


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker dask.distributed cluster on the loopback interface (worker processes)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as lc:
        yield lc.scheduler_address


@pytest.fixture(params=["synchronous", "threads",
                        pytest.param("processes", marks=pytest.mark.slow), "cluster"])
def scheduler(request):
    if request.param == "cluster":
        return request.getfixturevalue("cluster")
    return request.param


# -- scheduler specs and the streaming map -----------------------------------------------------


@pytest.mark.parametrize("spec, want", [
    (None, None), ("threads", "threads"), (" Processes ", "processes"),
    ("synchronous", "synchronous"), ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("tcp://scheduler.example.org:1", "tcp://scheduler.example.org:1"),
])
def test_check_scheduler_accepts(spec, want):
    assert check_scheduler(spec) == want


@pytest.mark.parametrize("spec", ["thread", "tcp://host", "tcp://host:0", "tcp://host:65536",
                                  "tcp://:8786", "http://host:8786", "tcp://a b:1", 3, ""])
def test_check_scheduler_refuses_quoting_the_value(spec):
    with pytest.raises(ParameterError, match="scheduler") as info:
        check_scheduler(spec)
    assert repr(spec)[:20] in str(info.value) or str(spec) in str(info.value)


def _square_or_fail(x: int) -> int:
    if x == 7:
        raise InputError("cannot parse", path=f"file{x}.xyz", frame=0)
    return x * x


def test_stream_map_keeps_order_and_bounds_the_window(scheduler):
    consumed = []

    def items():
        for k in range(30):
            consumed.append(k)
            yield k + 10  # 7 never appears

    out = []
    for r in stream_map(_square_or_fail, items(), scheduler=scheduler, workers=2, window=4):
        out.append(r)
        # inputs are read lazily: never more than a window (+ one look-ahead) ahead
        assert len(consumed) <= len(out) + 4 + 1
    assert out == [(k + 10) ** 2 for k in range(30)]


def _worker_after_a_nap(x: int) -> tuple[int, int]:
    import os
    import threading
    import time

    time.sleep(0.5)
    return os.getpid(), threading.get_ident()


@pytest.mark.parametrize("spec", ["processes", "threads"])
def test_stream_map_spreads_a_window_over_the_workers(spec):
    """Each task of a window runs on its own worker (dask's processes scheduler batched up to
    6 ready tasks onto one worker: two workers ran as one)."""
    out = list(stream_map(_worker_after_a_nap, range(4), scheduler=spec, workers=2))
    workers = {pid if spec == "processes" else tid for pid, tid in out}
    assert len(workers) == 2


def test_shared_pool_keeps_one_pool_for_every_pass():
    """Inside shared_pool, stream_map calls reuse one pool's workers (no fresh spawn per
    pass); outside, each call spawns and shuts down its own."""
    from pesdata import parallel

    def pids():
        return {pid for pid, _ in stream_map(_worker_after_a_nap, range(4),
                                             scheduler="processes", workers=2)}

    with parallel.shared_pool("processes", 2):
        with parallel.shared_pool("processes", 2):  # nested: the same pool
            first = pids()
        second = pids()
        assert list(stream_map(abs, [-1, -2], scheduler="threads", workers=2)) == [1, 2]
        assert set(parallel._shared()) == {("processes", 2)}
    assert len(first) == 2 and second == first
    assert not parallel._shared()
    assert pids().isdisjoint(first)  # the scope's workers are gone; a call spawns its own
    with parallel.shared_pool(None), parallel.shared_pool("synchronous"):
        assert not parallel._shared()
    with pytest.raises(ParameterError):
        with parallel.shared_pool("nonsense"):
            pass


def test_shared_pool_belongs_to_its_thread():
    """Another thread's scope is neither used nor shut down by this one's."""
    import threading

    from pesdata import parallel

    inside, release, out = threading.Event(), threading.Event(), {}

    def other():
        with parallel.shared_pool("threads", 2):
            out["pool"] = parallel._shared()[("threads", 2)]
            inside.set()
            release.wait(10)
            out["after"] = list(stream_map(abs, [-3], scheduler="threads", workers=2))

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    assert not parallel._shared()  # not this thread's scope
    with parallel.shared_pool("threads", 2):
        assert parallel._shared()[("threads", 2)] is not out["pool"]
    release.set()
    t.join(10)
    assert out["after"] == [3]  # its pool outlived this thread's scope


def _fail_late_or_early(x: int) -> int:
    import time

    if x == 0:  # the first input fails last
        time.sleep(0.5)
        raise InputError("first", path="file0.xyz", frame=0)
    if x == 1:
        raise InputError("second", path="file1.xyz", frame=0)
    return x


@pytest.mark.parametrize("spec", ["processes", "threads"])
def test_stream_map_raises_the_first_error_in_input_order(spec):
    """As the serial run would: file0's error, although file1's task failed first."""
    with pytest.raises(InputError, match=r"file0\.xyz"):
        list(stream_map(_fail_late_or_early, range(4), scheduler=spec, workers=2))


def test_stream_map_raises_the_task_error(scheduler):
    with pytest.raises(InputError, match=r"file7\.xyz: frame 0: cannot parse"):
        list(stream_map(_square_or_fail, range(10), scheduler=scheduler, workers=2))


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    from pesdata import parallel

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", 2.0)
    with pytest.raises(ParameterError, match=rf"tcp://127.0.0.1:{port}: no Dask scheduler"):
        list(stream_map(abs, range(3), scheduler=f"tcp://127.0.0.1:{port}"))


# -- curate -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """mlearn Si training frames over 3 files: duplicates across files, a label conflict, an
    unlabelled copy superseded later, one invalid (NaN position) frame."""
    d = tmp_path_factory.mktemp("inputs")
    frames = ase.io.read(DATA / "mlearn" / "Si_training.extxyz", ":")
    a, b = frames[:90], frames[90:]
    c = [f.copy() for f in frames[10:40]]
    for src, dst in zip(frames[10:40], c, strict=True):
        dst.calc = src.calc
    conflict = frames[5].copy()
    conflict.calc = type(frames[5].calc)(conflict, energy=frames[5].get_potential_energy() + 1.0,
                                         forces=frames[5].get_forces())
    bad = frames[3].copy()
    bad.positions[0, 0] = np.nan
    unlabelled = frames[150].copy()  # no calculator: an unlabelled copy, before b's labelled one
    paths = [d / "a.extxyz", d / "u.extxyz", d / "b.extxyz", d / "c.extxyz"]
    ase.io.write(paths[0], a)
    ase.io.write(paths[1], [unlabelled])
    ase.io.write(paths[2], b)
    ase.io.write(paths[3], [*c, conflict, bad])
    return [str(p) for p in paths]


def _curated(tmp_path, name, files, **kw):
    st = pesdata.open_store(tmp_path / name, create=True)
    rep = curate(st, files, method="PBE", quarantine=True, batch_size=32, **kw)
    table = st.read().table(columns=["id", "source", "energy", "forces"]).to_pydict()
    doc = rep.to_dict()
    doc.pop("created")
    return doc, table


@pytest.fixture(scope="module")
def serial_curate(inputs, tmp_path_factory):
    return _curated(tmp_path_factory.mktemp("serial"), "s", inputs)


def test_curate_equals_serial(inputs, serial_curate, scheduler, tmp_path):
    doc, table = _curated(tmp_path, "p", inputs, scheduler=scheduler, workers=2)
    want_doc, want_table = serial_curate
    assert want_doc["read"] == 214 + 1 + 30 + 2
    assert len(want_doc["rejected"]) == 1 and len(want_doc["conflicts"]) == 1
    assert want_doc["duplicates"] == 30 + 1 + 1
    assert doc == want_doc
    assert table == want_table


def test_curate_task_error_names_the_file(inputs, tmp_path, scheduler):
    broken = tmp_path / "broken.extxyz"
    broken.write_text("2\nProperties=species:S:1:pos:R:3\nSi 0 0 0\nSi 1 1\n")
    st = pesdata.open_store(tmp_path / "st", create=True)
    with pytest.raises(InputError, match="broken.extxyz"):
        curate(st, [inputs[0], str(broken)], method="PBE", scheduler=scheduler, workers=2)
    assert len(st.read()) == 0  # nothing written


def test_curate_bad_scheduler(inputs, store):
    with pytest.raises(ParameterError, match="'nope'"):
        curate(store, inputs[:1], scheduler="nope")


# -- describe ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cu_store(tmp_path_factory):
    st = pesdata.open_store(tmp_path_factory.mktemp("cu") / "store", create=True)
    curate(st, [str(DATA / "mlearn" / "Cu_test.extxyz")], method="PBE")
    return st


@pytest.fixture(scope="module")
def serial_describe(cu_store, tmp_path_factory):
    import shutil

    desc = from_config(CU_ACSF_SMALL_CONFIG)
    serial_dir = tmp_path_factory.mktemp("serial-describe") / "store"
    shutil.copytree(cu_store.root, serial_dir)
    serial = pesdata.open_store(serial_dir)
    describe(serial, desc, batch_size=7)
    return load_descriptors(serial, desc)


def test_describe_equals_serial(cu_store, serial_describe, tmp_path, scheduler):
    import shutil

    desc = from_config(CU_ACSF_SMALL_CONFIG)
    copy = tmp_path / "store"
    shutil.copytree(cu_store.root, copy)
    st = pesdata.open_store(copy)
    out = describe(st, desc, batch_size=7, scheduler=scheduler, workers=2)
    assert out["computed"] == 31 and out["cached"] == 0
    assert out["n_atoms"] == 3178
    got = load_descriptors(st, desc)
    assert np.array_equal(got["features"], serial_describe["features"])
    assert got["ids"] == serial_describe["ids"]
    again = describe(st, desc, scheduler=scheduler, workers=2)
    assert again["computed"] == 0 and again["cached"] == 31


def test_describe_refuses_bad_scheduler_before_writing(cu_store):
    desc = from_config(CU_ACSF_SMALL_CONFIG)
    with pytest.raises(PesdataError, match="scheduler"):
        describe(cu_store, desc, scheduler="tcp://nowhere")


# -- select -----------------------------------------------------------------------------------


def _selection(st, scheduler):
    from pesdata.descriptors import _stream
    from pesdata.select import _select

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_stream, "CHUNK_VALUES", 2**16)  # the reference in ~10 novelty tasks
        return _select.select(st, [str(DATA / "mlearn" / "Si_test.extxyz")], budget=6, seed=3,
                              method="PBE", novelty_index_mb=0,  # novelty over the chunks
                              name="sel-" + "".join(c if c.isalnum() else "-"
                                                    for c in scheduler or "serial"),
                              scheduler=scheduler, workers=2)


@pytest.fixture(scope="module")
def si_serial(tmp_path_factory):
    """A Si store and its serial selection (which leaves the reference's descriptors cached)."""
    st = pesdata.open_store(tmp_path_factory.mktemp("si") / "store", create=True)
    curate(st, [str(DATA / "mlearn" / "Si_training.extxyz")], method="PBE")
    return st, _selection(st, None)


def test_select_equals_serial(si_serial, tmp_path, scheduler):
    import shutil

    si_store, want = si_serial
    copy = tmp_path / "store"
    shutil.copytree(si_store.root, copy)
    got = _selection(pesdata.open_store(copy), scheduler)
    assert list(got.selected["id"]) == list(want.selected["id"])
    assert len(want.selected) == 6
    cols = ["id", "decision", "rank", "reason", "novelty", "novelty_distance", "atom_distances"]
    assert got.ledger[cols].to_dict("list") == want.ledger[cols].to_dict("list")
    assert np.array_equal(np.stack(got.ledger["fingerprint"]), np.stack(want.ledger["fingerprint"]))
    assert got.summary["criteria"] == want.summary["criteria"]


# -- command line -----------------------------------------------------------------------------


def test_cli_scheduler_options(tmp_path, inputs, serial_curate):
    import json

    from typer.testing import CliRunner

    from pesdata.cli import app

    runner = CliRunner()
    st = tmp_path / "st"
    res = runner.invoke(app, ["curate", str(st), *inputs, "--method", "PBE", "--quarantine",
                              "--scheduler", "threads", "--workers", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["added"] == serial_curate[0]["added"]
    cfg = tmp_path / "acsf.json"
    cfg.write_text(json.dumps({**CU_ACSF_SMALL_CONFIG, "species": ["Si"]}))
    res = runner.invoke(app, ["describe", str(st), "-d", str(cfg), "--scheduler", "threads",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["computed"] == summary["added"]
    res = runner.invoke(app, ["describe", str(st), "-d", str(cfg), "--scheduler", "thread"])
    assert res.exit_code == 2 and "'thread'" in res.output
