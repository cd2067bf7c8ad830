"""The command line: JSON output shapes, one-line errors, nothing written on bad input."""

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app

from .conftest import emt_cells

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def run_json(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def files(tmp_path):
    cells = emt_cells(6)
    ase.io.write(tmp_path / "a.xyz", cells[:4], format="extxyz")
    ase.io.write(tmp_path / "b.xyz", cells[2:], format="extxyz")
    return tmp_path


def test_json_shapes_of_every_command(files, tmp_path):
    st = tmp_path / "store"
    out = run_json("curate", st, files / "a.xyz", "--method", "EMT", "--group", "md")
    assert {k: out[k] for k in ("version", "read", "added", "duplicates", "conflicts",
                                "rejected")} == {
        "version": 2, "read": 4, "added": 4, "duplicates": 0, "conflicts": 0, "rejected": 0
    }
    out = run_json("curate", st, files / "b.xyz", "--method", "EMT", "-m", "more")
    assert (out["version"], out["added"], out["duplicates"]) == (3, 2, 2)
    log = run_json("log", st)
    assert [e["version"] for e in log] == [1, 2, 3]
    assert set(log[0]) >= {"version", "message", "timestamp", "n_structures"}
    assert log[2]["message"] == "more" and log[2]["n_structures"] == 6
    info = run_json("info", st, "--version", "2")
    assert info["version"] == 2 and info["n_structures"] == 4 and info["n_atoms"] == 128
    assert info["elements"] == ["Cu"] and info["methods"] == {"EMT": 4}
    diff = run_json("diff", st, "2", "3")
    assert set(diff) == {"added", "removed", "relabelled"}
    assert len(diff["added"]) == 2 and diff["removed"] == diff["relabelled"] == []
    assert run_json("tag", st, "first", "--version", "2") == {"tag": "first", "version": 2}
    exp = run_json("export", st, tmp_path / "out.xyz", "--version", "first")
    assert exp["n_structures"] == 4 and len(ase.io.read(tmp_path / "out.xyz", ":")) == 4
    assert run_json("optimize", st)["version"] >= 3


def test_human_output_has_tables(files, tmp_path):
    result = run("curate", tmp_path / "s", files / "a.xyz", "--method", "EMT")
    assert result.exit_code == 0 and "curate → version 2" in result.stdout
    assert "duplicates" in result.stdout
    assert "Cu" in run("info", tmp_path / "s").stdout
    assert "create store" in run("log", tmp_path / "s").stdout


def _truncated(path, cells):
    ase.io.write(path, cells, format="extxyz")
    text = path.read_text().splitlines(keepends=True)
    path.write_text("".join(text[: len(text) - 10]))  # cut inside the last frame


def _wrong_length_forces(path, cells):
    bad = bulk("Cu", cubic=True)
    bad.calc = SinglePointCalculator(bad, energy=-1.0, forces=np.zeros((3, 3)))
    ase.io.write(path, [cells[0], bad], format="json")


def _nan_forces(path, cells):
    bad = cells[1].copy()
    f = cells[1].get_forces().copy()
    f[5, 2] = np.nan
    bad.calc = SinglePointCalculator(bad, energy=-1.0, forces=f)
    ase.io.write(path, [cells[0], bad], format="extxyz")


@pytest.mark.parametrize(
    ("name", "make", "expect"),
    [
        ("trunc.xyz", _truncated, ["trunc.xyz", "frame 2", "cannot parse"]),
        ("nan.xyz", _nan_forces, ["nan.xyz", "frame 1", "field 'forces'", "non-finite"]),
        ("wrong.json", _wrong_length_forces, ["wrong.json", "frame 1", "field 'forces'", "shape"]),
        ("empty.xyz", lambda p, c: p.write_text(""), ["empty.xyz", "empty"]),
        ("adir", lambda p, c: p.mkdir(), ["adir", "directory"]),
        ("data.unknownext", lambda p, c: p.write_text("hello\nworld\n"),
         ["data.unknownext", "format"]),
    ],
)
def test_malformed_input_one_line_error_and_nothing_written(tmp_path, name, make, expect):
    st = tmp_path / "store"
    cells = emt_cells(3)
    ase.io.write(tmp_path / "good.xyz", cells, format="extxyz")
    assert run("curate", st, tmp_path / "good.xyz", "--method", "EMT").exit_code == 0
    before = (pesdata.open_store(st).version, sorted(pesdata.open_store(st).read().ids))
    make(tmp_path / name, cells)
    result = run("curate", st, tmp_path / name, "--method", "EMT")
    assert result.exit_code != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in expect:
        assert word in lines[0]
    after = pesdata.open_store(st)
    assert (after.version, sorted(after.read().ids)) == before


def test_unknown_format_name_is_rejected(files, tmp_path):
    result = run("curate", tmp_path / "s", files / "a.xyz", "--format", "nope")
    assert result.exit_code == 2 and "unknown format 'nope'" in result.stderr


def test_bad_version_is_one_line_error(files, tmp_path):
    run("curate", tmp_path / "s", files / "a.xyz")
    result = run("info", tmp_path / "s", "--version", "42")
    assert result.exit_code == 1 and result.stderr.strip() == (
        "error: no version 42; versions are 1..2"
    )


def test_console_script_and_traceback_flag(tmp_path):
    exe = [sys.executable, "-m", "pesdata.cli"]
    proc = subprocess.run(
        [*exe, "info", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: no pesdata store at")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [*exe, "info", str(tmp_path / "missing"), "--traceback"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr
