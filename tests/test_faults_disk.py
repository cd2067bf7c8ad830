"""A read-only store and a full disk (issue 19, "Faults").

Read-only: a read-only bind mount of the store (root ignores file permissions; needs
CAP_SYS_ADMIN), else ``chmod -R a-w`` (a user other than root), else skipped. Full disk: a
2 MB tmpfs where mounting is allowed, and everywhere an ``ENOSPC`` injected at the lowest
level each writer reaches from Python: the curate spool, the Lance commit and fragment write,
the Zarr segment write, an artefact's fsync, the ledger's Parquet file.

Every case checks that the store is intact (verify ok, the same versions and rows, no
temporary file left behind); the one-line ``StoreReadOnly`` / ``DiskFull`` error naming the
store or file is checked separately.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import pesdata
from pesdata.errors import DiskFull, PesdataError, StoreReadOnly

from .conftest import emt_cells
from .faults_helpers import DATA, check_store, leftover_temporaries

SI = DATA / "mlearn"
ACSF = {"descriptor": "acsf", "species": ["Si"], "r_cut": 4.0,
        "g2_params": [[0.5, 2.5], [1.0, 3.0]], "g4_params": []}


def _state(path) -> list:
    """What must not change: every version's number and row count, the tags."""
    store = pesdata.open_store(path)
    log = store.log()
    return [list(log["version"]), list(log["n_structures"]), store.tags()]


def _intact(path, before) -> None:
    assert _state(path) == before
    check_store(path)
    assert not leftover_temporaries(path), leftover_temporaries(path)


def _one_line(exc: BaseException, *words) -> None:
    text = str(exc)
    assert "\n" not in text and isinstance(exc, PesdataError), repr(exc)
    for w in words:
        assert str(w) in text, (w, text)


# -- read-only ----------------------------------------------------------------------------------


def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(path: Path):
    """Make ``path`` read-only for this process (see the module docstring)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
        return
    if shutil.which("mount") is None or not _mount("--bind", str(path), str(path)):
        pytest.skip("running as root (permissions are ignored) and bind mounts are not allowed")
    try:
        if not _mount("-o", "remount,ro,bind", str(path)):
            pytest.skip("running as root and a read-only remount is not allowed")
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """A store of 25 Si frames, tagged and described once."""
    from pesdata.descriptors import describe, from_config

    path = tmp_path_factory.mktemp("disk") / "store"
    store = pesdata.open_store(path, create=True)
    store.curate(SI / "Si_test.extxyz", method="PBE")
    store.tag("first")
    describe(store, from_config(ACSF))
    return path


@pytest.fixture
def ro_store(base_store, tmp_path):
    """A copy of :func:`base_store` and its state."""
    path = shutil.copytree(base_store, tmp_path / "store")
    return path, _state(path)


def _curate(store):
    store.curate(SI / "Cu_test.extxyz", method="PBE")


def _label_import(store):
    import pandas as pd

    from pesdata.frames import Frame
    from pesdata.label import import_results, label_queue, write_queue

    cells = emt_cells(2, seed=5)
    for a in cells:
        a.info["pesdata_id"] = Frame.from_atoms(a).id
    queue = Path(store.root).parent / "queue"
    write_queue(queue, cells, pd.DataFrame({"id": [a.info["pesdata_id"] for a in cells]}),
                store=str(store.uri), reference_version=2, selection="r1")
    label_queue(queue, "emt")
    with read_only(Path(store.root)):
        import_results(store, queue)


def _tag(store):
    store.tag("second")


def _describe(store):
    from pesdata.descriptors import describe, from_config

    describe(store, from_config({**ACSF, "g2_params": [[0.3, 2.0]]}))  # a new config


def _artefact(store):
    store.artefacts.save("curate_report", "extra", {**store.artefacts.load(
        "curate_report", store.artefacts.list("curate_report")[0]), "message": "again"})


WRITES = {"curate": _curate, "label import": _label_import, "tag": _tag,
          "describe": _describe, "artefact": _artefact}


@pytest.mark.parametrize("what", list(WRITES))
def test_a_read_only_store_is_left_intact(ro_store, what):
    path, before = ro_store
    store = pesdata.open_store(path)
    if what == "label import":
        with pytest.raises(OSError):  # PermissionError or a bare OSError, never success
            WRITES[what](store)
    else:
        with read_only(path), pytest.raises(OSError):
            WRITES[what](store)
    _intact(path, before)


@pytest.mark.parametrize("what", list(WRITES))
def test_a_read_only_store_is_a_one_line_error_naming_it(ro_store, what):
    path, _ = ro_store
    store = pesdata.open_store(path)
    if what == "label import":
        with pytest.raises(StoreReadOnly) as err:
            WRITES[what](store)
    else:
        with read_only(path), pytest.raises(StoreReadOnly) as err:
            WRITES[what](store)
    _one_line(err.value, path)
    assert "read-only file system" in str(err.value) or "permission denied" in str(err.value)


# -- a full disk: a real tmpfs ------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs holding a store of 25 Si frames (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs",
                                                   str(disk)):
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        path = disk / "store"
        pesdata.open_store(path, create=True).curate(SI / "Si_test.extxyz", method="PBE")
        yield path, _state(path)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _big_curate(path):
    pesdata.open_store(path).curate(SI / "Cu_train_acedata.xyz", method="PBE",
                                    forces_key="force")  # 27,416 atoms: more than 2 MB


def test_a_full_tmpfs_leaves_the_store_intact(tiny_disk):
    path, before = tiny_disk
    with pytest.raises(OSError):
        _big_curate(path)
    _intact(path, before)
    pesdata.open_store(path).curate(SI / "Cu_test.extxyz", method="PBE")  # room for a small one
    check_store(path)


def test_a_full_tmpfs_is_a_one_line_disk_full_error(tiny_disk):
    path, _ = tiny_disk
    with pytest.raises(DiskFull) as err:
        _big_curate(path)
    _one_line(err.value, path, "no space left on device")


# -- a full disk: ENOSPC injected at each writer ------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _lance_enospc(*args, **kwargs):  # how Lance reports it: text with Rust's errno
    raise OSError("LanceError(IO): Generic LocalFileSystem error: Unable to write: No space "
                  "left on device (os error 28), rust/lance-io/src/object_writer.rs:1:1")


def _inject(monkeypatch, point: str) -> None:
    import lance
    import zarr

    from pesdata.curate import _spool
    from pesdata.store import _table

    if point == "spool":
        monkeypatch.setattr(_spool.Spool, "append", _enospc)
    elif point == "lance commit":
        monkeypatch.setattr(lance.LanceDataset, "commit", staticmethod(_lance_enospc))
    elif point == "lance fragments":
        monkeypatch.setattr(_table, "write_fragments", _lance_enospc)
    elif point == "zarr segment":
        original = zarr.storage.LocalStore.set

        async def set_(self, key, value):  # the group is made; its first segment fails
            if key.startswith("seg-"):
                _enospc()
            return await original(self, key, value)

        monkeypatch.setattr(zarr.storage.LocalStore, "set", set_)
    elif point == "artefact":
        import pesdata.atomic

        monkeypatch.setattr(pesdata.atomic.os, "fsync", _enospc)
    elif point == "ledger":
        import pyarrow.parquet as pq

        monkeypatch.setattr(pq, "write_table", _enospc)


def _run(path, point: str):
    store = pesdata.open_store(path)
    if point in ("spool", "lance commit", "lance fragments"):
        store.curate(SI / "Cu_test.extxyz", method="PBE")
    elif point == "zarr segment":
        _describe(store)
    elif point == "artefact":
        _artefact(store)
    elif point == "ledger":
        from pesdata.select import select

        select(store, [SI / "Si_training.extxyz"], descriptor=ACSF, name="full", budget=2,
               method="PBE")


POINTS = ["spool", "lance commit", "lance fragments", "zarr segment", "artefact", "ledger"]


@pytest.mark.parametrize("point", POINTS)
def test_enospc_in_a_writer_leaves_the_store_intact(ro_store, monkeypatch, point):
    path, before = ro_store
    with monkeypatch.context() as m:
        _inject(m, point)
        with pytest.raises(OSError):
            _run(path, point)
    _intact(path, before)
    store = pesdata.open_store(path)
    assert "full" not in store.artefacts.list("selection")
    _run(path, point)  # with room again, the same write goes through
    check_store(path)


@pytest.mark.parametrize("point", POINTS)
def test_enospc_in_a_writer_is_a_one_line_disk_full_error(ro_store, monkeypatch, point):
    path, _ = ro_store
    _inject(monkeypatch, point)
    with pytest.raises(DiskFull) as err:
        _run(path, point)
    _one_line(err.value, path, "no space left on device")


@pytest.mark.parametrize(("error", "cls", "words"), [
    (OSError(errno.ENOSPC, "No space left on device"), DiskFull, "no space left on device"),
    (OSError(errno.EROFS, "Read-only file system"), StoreReadOnly, "read-only file system"),
    (PermissionError(errno.EACCES, "Permission denied"), StoreReadOnly, "permission denied"),
    (OSError("LanceError(IO): Unable to create dir /s/_refs/tags: Read-only file system "
             "(os error 30), rust/lance/src/dataset/refs.rs:162:28"), StoreReadOnly,
     "read-only file system"),
    (OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),
     DiskFull, "no space left on device"),
    (RuntimeError("LanceError(IO): write failed: Disk quota exceeded (os error 122)"), DiskFull,
     "no space left on device"),
])
def test_os_errors_become_one_line_pesdata_errors_naming_the_path(error, cls, words):
    from pesdata.errors import from_os_error

    new = from_os_error(error, "/data/store")
    assert type(new) is cls and isinstance(new, OSError)
    _one_line(new, "/data/store", words)


def test_other_os_errors_are_left_alone():
    from pesdata.errors import from_os_error

    assert from_os_error(OSError(errno.ENOENT, "No such file or directory"), "/s") is None
    assert from_os_error(OSError(errno.EACCES, "Permission denied"), "/s", denied=False) is None
    assert from_os_error(DiskFull("/s: no space left on device"), "/s") is None
    assert from_os_error(ValueError("os error 28 is not in this text"), "/s") is None
