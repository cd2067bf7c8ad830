"""pesdata.atomic: all-or-nothing writes, and special files are never replaced."""

from __future__ import annotations

import os
import stat

import pytest

from pesdata.atomic import atomic_dir, atomic_path, atomic_write, check_output_path
from pesdata.errors import OutputError, ParameterError


def _leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_atomic_write_replaces_a_regular_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_write(target) as fh:
        fh.write("new")
        assert target.read_text() == "old"  # not visible before the end
    assert target.read_text() == "new"
    assert _leftovers(tmp_path, {"a.txt"}) == []


def test_a_failed_write_leaves_the_target_and_no_temp(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target, "wb") as fh:
        fh.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path, {"a.bin"}) == []


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    target = tmp_path / "sub" / "t.parquet"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and not tmp.exists()
        tmp.write_text("x")
    assert target.read_text() == "x"
    assert _leftovers(target.parent, {"t.parquet"}) == []


def test_fifo_symlink_and_directory_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real = tmp_path / "real.xyz"
    real.write_text("keep")
    link = tmp_path / "link.xyz"
    link.symlink_to(real)
    for path, word in ((fifo, "FIFO"), (link, "symbolic link"), (tmp_path, "directory")):
        with pytest.raises(OutputError, match=word), atomic_write(path) as fh:
            fh.write("x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    assert real.read_text() == "keep"
    assert _leftovers(tmp_path, {"fifo", "real.xyz", "link.xyz"}) == []
    assert isinstance(OutputError("x"), OSError)


def test_character_device_is_refused(tmp_path):
    dev = tmp_path / "fakenull"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    with pytest.raises(OutputError, match="character device"):
        check_output_path(dev)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_atomic_dir_swaps_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as stage:
        (stage / "new.txt").write_text("new")
        raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    with atomic_dir(target) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert _leftovers(tmp_path, {"model"}) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"), atomic_dir(tmp_path / "file"):
        pass


def test_a_bad_mode_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="mode must be 'w' or 'wb', not 'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    assert _leftovers(tmp_path, set()) == []


def test_exclusive_write_never_replaces(tmp_path):
    target = tmp_path / "a.json"
    with atomic_write(target, exclusive=True) as fh:
        fh.write("first")
    with pytest.raises(FileExistsError, match="exists"), atomic_write(target, exclusive=True):
        pytest.fail("the body must not run when the target exists")
    assert target.read_text() == "first"
    assert _leftovers(tmp_path, {"a.json"}) == []


def test_exclusive_writers_race_and_exactly_one_wins(tmp_path):
    """Both writers pass the early check and finish writing before either links into place."""
    import threading

    target = tmp_path / "a.json"
    ready = threading.Barrier(2, timeout=10)
    results: dict[int, str] = {}

    def write(k):
        try:
            with atomic_write(target, exclusive=True) as fh:
                fh.write(f"writer {k}")
                ready.wait()  # both have passed the early check and written
            results[k] = "won"
        except FileExistsError:
            results[k] = "lost"

    for _ in range(20):
        target.unlink(missing_ok=True)
        results.clear()
        threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results.values()) == ["lost", "won"]
        winner = next(k for k, r in results.items() if r == "won")
        assert target.read_text() == f"writer {winner}"
        assert _leftovers(tmp_path, {"a.json"}) == []  # the loser's temp file is gone


def test_exclusive_write_refuses_a_dangling_symlink(tmp_path):
    link = tmp_path / "l.json"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="symbolic link"), atomic_write(link, exclusive=True):
        pass
    assert not (tmp_path / "nowhere").exists()
