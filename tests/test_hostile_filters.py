"""Filters and column names from the command line are checked, never evaluated (issue 19).

The options that take a column or a name pesdata looks up — ``split --group-by`` and
``--stratify-by``, ``export --to`` and ``--e0``, ``select --diversity``, ``curate --*-key`` —
and the Python API's Lance filters and column lists get hostile values: Python code that
would create a marker file if it were evaluated, SQL-ish tautologies, unknown columns, quotes,
backticks, NUL, 5000 characters. Each is refused with a one-line ParameterError quoting the
value and the allowed names (or, for a key to look up in the input files, simply not found),
and the marker file never appears.
"""

from __future__ import annotations

import ase.io
import pytest
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.errors import ParameterError

from .conftest import emt

SPLIT_COLUMNS = "group, config_type, source, method, formula, composition"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = tmp_path_factory.mktemp("filters")
    cells = emt(6, 3)
    for i, a in enumerate(cells):
        a.info["config_type"] = "hot" if i % 2 else "cold"
    ase.io.write(root / "cells.xyz", cells, format="extxyz")
    pesdata.open_store(root / "store", create=True).curate(str(root / "cells.xyz"), method="EMT")
    return root


def _hostile(marker) -> list[str]:
    """Values that would create ``marker`` if evaluated, and other hostile names."""
    return [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        f"1; __import__('pathlib').Path({str(marker)!r}).touch()",
        "id = 'x' OR 1=1",
        "group; DROP TABLE structures",
        "energy",  # a real column, but not one to split by
        "gr`oup",
        'gr"oup',
        "gr'oup",
        "gro\0up",
        "x" * 5000,
    ]


def _one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("option", ["--group-by", "--stratify-by"])
def test_split_columns_are_checked_never_evaluated(seeded, tmp_path, option):
    marker = tmp_path / "PWNED"
    store = seeded / "store"
    for value in _hostile(marker):
        result = CliRunner().invoke(app, ["split", str(store), "--name", "s", option, value])
        line = _one_line_error(result)
        assert line.startswith(f"error: cannot split by {repr(value)[:60]}"), line
        assert line.endswith(f"use one of {SPLIT_COLUMNS}") and len(line) < 400, line
        assert not marker.exists()
    assert pesdata.open_store(store).artefacts.list("split") == []


def test_named_choices_are_checked_never_evaluated(seeded, tmp_path):
    marker = tmp_path / "PWNED"
    store = str(seeded / "store")
    evil = _hostile(marker)[0]
    cases = [
        (["export", store, str(tmp_path / "out"), "--to", evil], "known: aselmdb, deepmd"),
        (["export", store, str(tmp_path / "out"), "--to", "mace", "--e0", evil],
         "must be one of ['isolated', 'average', 'none']"),
        (["select", store, "--candidates", str(seeded / "cells.xyz"), "--no-novelty",
          "--budget", "2", "--diversity", evil], "known: direct, fps, kmeans"),
    ]
    for args, allowed in cases:
        line = _one_line_error(CliRunner().invoke(app, args))
        assert repr(evil) in line and allowed in line, line
        assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_label_keys_are_looked_up_never_evaluated(seeded, tmp_path):
    marker = tmp_path / "PWNED"
    evil = _hostile(marker)[0]
    result = CliRunner().invoke(app, [
        "curate", str(tmp_path / "s"), str(seeded / "cells.xyz"), "--method", "EMT", "--json",
        "--energy-key", evil, "--forces-key", evil, "--stress-key", evil, "--virial-key", evil,
    ])
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    # the named keys are not in the file: no labels (a named key wins over the calculator's)
    snap = pesdata.open_store(tmp_path / "s").read()
    assert snap.count() == 6 and snap.count(filter="energy IS NULL") == 6


def test_api_filters_and_columns_are_checked_never_evaluated(seeded, tmp_path):
    marker = tmp_path / "PWNED"
    snap = pesdata.open_store(seeded / "store").read()
    for value in _hostile(marker)[:2] + ["nope > 3", "`id` = 1"]:
        with pytest.raises(ParameterError, match="bad column or filter|holds ';'") as err:
            snap.count(filter=value)
        assert "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="No field named nope. Valid fields are id, "):
        snap.count(filter="nope > 3")
    for name in ["nope", "id`", 'id"', "id\0", _hostile(marker)[0]]:
        with pytest.raises(ParameterError, match=r"unknown column .*; columns: id, "):
            snap.table(columns=[name])
    assert not marker.exists()
    # a tautology is a filter like any other: it selects, it never writes
    assert snap.count(filter="id = 'x' OR 1=1") == 6
    assert len(pesdata.open_store(seeded / "store").table.dataset().versions()) == 2


def test_api_filter_with_a_second_statement_is_refused(seeded):
    """Lance ignores what follows ';' (this counted 0); a ';' inside a literal is fine."""
    snap = pesdata.open_store(seeded / "store").read()
    for value in ["n_atoms < 0; n_atoms > 0", "id = 'x'; DROP TABLE structures"]:
        with pytest.raises(ParameterError, match="holds ';'"):
            snap.count(filter=value)
        with pytest.raises(ParameterError, match="holds ';'"):
            snap.table(filter=value)
    assert snap.count(filter="source = 'a;b'") == 0
