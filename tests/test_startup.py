"""Start-up of the command line: heavy libraries stay out of commands that do not need them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import DATA

HEAVY = ("torch", "sklearn", "zarr", "faiss", "matplotlib", "vesin", "dask", "distributed")


def _modules_after(argv: list[str], cwd) -> tuple[int, set[str], str]:
    """Run ``pesdata ARGV`` in a fresh interpreter; return exit code, loaded modules, stderr."""
    code = (
        "import sys, json, atexit\n"
        "from pesdata.__main__ import main\n"
        "atexit.register(lambda: sys.__stderr__.write('MODULES=' + json.dumps(sorted("
        "m.split('.')[0] for m in sys.modules)) + '\\n'))\n"
        f"main({argv!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES=")]
    assert line, proc.stderr
    return proc.returncode, set(json.loads(line[-1][8:])), proc.stderr


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "store"
    rc, _, err = _modules_after(
        ["curate", str(path), str(DATA / "mlearn" / "Si_test.extxyz"), "--method", "PBE"],
        cwd=path.parent,
    )
    assert rc == 0, err
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["info", "{store}"],
        ["log", "{store}"],
        ["diff", "{store}", "1", "2"],
        ["tag", "{store}", "t1"],
        ["export", "{store}", "{tmp}/out.xyz"],
        ["split", "{store}", "--name", "h", "--strategy", "holdout"],
        ["select", "--help"],
        ["label", "--help"],
        ["label", "export", "--help"],
        ["loop", "--help"],
        ["report", "--help"],
        ["demo", "--help"],
        ["explore", "--help"],
        ["verify", "--help"],
        ["gc", "--help"],
        ["verify", "{store}"],
        ["gc", "{store}", "--dry-run"],
    ],
    ids=lambda a: "-".join(x.lstrip("-") for x in a if not x.startswith("{")),
)
def test_store_commands_do_not_import_heavy_libraries(argv, small_store, tmp_path):
    argv = [a.format(store=small_store, tmp=tmp_path) for a in argv]
    rc, modules, err = _modules_after(argv, tmp_path)
    assert rc == 0, err
    # split wraps scikit-learn's splitters (DESIGN §7), so it alone may load sklearn
    heavy = set(HEAVY) - ({"sklearn"} if argv[0] == "split" else set())
    assert not modules & heavy, f"{argv[0]} imported {sorted(modules & heavy)}"


def test_curate_does_not_import_torch(tmp_path):
    rc, modules, err = _modules_after(
        ["curate", str(tmp_path / "s"), str(DATA / "mlearn" / "Si_test.extxyz"), "--method", "PBE"],
        tmp_path,
    )
    assert rc == 0, err
    assert "torch" not in modules and not modules & set(HEAVY)


def test_explore_with_lj_does_not_import_heavy_libraries(tmp_path):
    from ase import Atoms
    from ase.io import write

    write(tmp_path / "lj3.xyz", Atoms("Ar3", positions=[[0, 0, 0], [1.1, 0, 0], [0.5, 1.0, 0]]))
    rc, modules, err = _modules_after(
        ["explore", "lj3.xyz", "-c", "lj", "--steps", "1", "--max-evaluations", "300",
         "--out", "o.extxyz"], tmp_path)
    assert rc == 0, err
    assert (tmp_path / "o.extxyz").is_file()
    assert not modules & set(HEAVY), f"explore imported {sorted(modules & set(HEAVY))}"


def test_help_does_not_import_the_store():
    rc, modules, err = _modules_after(["--help"], None)
    assert rc == 0, err
    assert not modules & {"lance", "pandas", "pyarrow", "torch"}


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    """A KeyboardInterrupt while the CLI is still importing: exit 130, no traceback."""
    code = (
        "import builtins\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'typer':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "from pesdata.__main__ import main\n"
        "main(['--help'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 130
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "pesdata: interrupted"


def test_a_recorded_ctrl_c_stops_the_commit_and_exits_130(tmp_path, monkeypatch):
    """A Ctrl-C that Python lost (recorded by the CLI's handler) stops curate before it commits."""
    import pesdata
    from pesdata import _interrupt
    from pesdata.__main__ import main

    monkeypatch.setattr(_interrupt, "_REQUESTED", type(_interrupt._REQUESTED)())
    store = tmp_path / "s"
    pesdata.open_store(store, create=True)
    _interrupt.request()
    with pytest.raises(SystemExit) as exc:
        main(["curate", str(store), str(DATA / "mlearn" / "Si_test.extxyz"), "--method", "PBE"])
    assert exc.value.code == 130
    assert len(pesdata.open_store(store).read()) == 0  # nothing committed
    with pytest.raises(KeyboardInterrupt):  # and every atomic replacement stops too
        from pesdata.atomic import atomic_write

        with atomic_write(tmp_path / "x.txt") as fh:
            fh.write("x")
    assert not (tmp_path / "x.txt").exists()


def test_sigint_during_curate_exits_130_and_commits_nothing(tmp_path):
    """A real SIGINT while curate reads: exit 130, one line, the store unchanged."""
    import signal
    import time

    store = tmp_path / "s"
    rc, _, err = _modules_after(["curate", str(store), str(DATA / "mlearn" / "Si_test.extxyz"),
                                 "--method", "PBE"], tmp_path)
    assert rc == 0, err
    big = tmp_path / "big.xyz"
    text = (DATA / "mlearn" / "Cu_train_acedata.xyz").read_text()
    big.write_text(text * 8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pesdata", "curate", str(store), str(big), "--method", "PBE",
         "--forces-key", "force"], stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not list((store / "_pesdata" / "tmp").glob("spool-*")):  # ingest has begun
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    import pesdata

    assert pesdata.open_store(store).version == 2  # the first curate's version, nothing more
