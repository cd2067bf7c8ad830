"""`pesdata select` and the labelling round trip through the command line, on EMT Cu:
select → label export → label run --calculator emt → label import."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app

from .conftest import emt_cells

runner = CliRunner()


def run(*argv):
    result = runner.invoke(app, [str(a) for a in argv])
    return result


@pytest.fixture(scope="module")
def cu(tmp_path_factory):
    root = tmp_path_factory.mktemp("selcli")
    store = pesdata.open_store(root / "store", create=True)
    store.curate(emt_cells(24, seed=1), method="EMT")
    familiar = [a.copy() for a in emt_cells(6, seed=2)]
    hot = []
    for k in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.25, seed=50 + k)
        a.info["config_type"] = "hot"
        a.arrays["site"] = np.arange(len(a))
        hot.append(a)
    for a in familiar:
        a.calc = None
        a.info["config_type"] = "md300"
        a.arrays["site"] = np.arange(len(a))
    path = root / "cands.extxyz"
    ase.io.write(path, familiar + hot)
    return {"root": root, "store": store, "cands": path}


def test_select_json_and_table(cu):
    r = run("select", cu["root"] / "store", "--candidates", cu["cands"], "--budget", 2,
            "--name", "cli-json", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n_candidates"] == 10 and len(doc["selected"]) == 2
    assert sum(doc["counts"].values()) == 10
    assert all("#" in s["source"] for s in doc["selected"])
    r = run("select", cu["root"] / "store", "-c", cu["cands"], "--budget", 2, "--name", "cli-tab")
    assert r.exit_code == 0, r.output
    assert "selected" in r.stdout and "hot" in r.stdout
    r = run("select", cu["root"] / "store", "--rescore", "cli-tab", "--budget", 1, "--name",
            "cli-re", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["selected"]) == 1


def test_select_errors_are_one_line(cu):
    r = run("select", cu["root"] / "store", "--budget", 2)
    assert r.exit_code == 2 and "candidates" in r.output
    r = run("select", cu["root"] / "store", "-c", cu["root"] / "missing.extxyz")
    assert r.exit_code == 2 and "missing.extxyz" in r.output
    r = run("select", cu["root"] / "store", "-c", cu["cands"], "--diversity", "nope")
    assert r.exit_code == 2 and "nope" in r.output
    r = run("select", cu["root"] / "store", "--rescore", "cli-json", "-c", cu["cands"])
    assert r.exit_code == 2 and "--candidates" in r.output


def test_round_trip_select_label_import(cu, tmp_path):
    store = cu["store"]
    before = store.version
    queue = tmp_path / "queue"
    r = run("select", cu["root"] / "store", "-c", cu["cands"], "--budget", 3, "--out", queue,
            "--name", "round", "--method", "EMT", "--json")
    assert r.exit_code == 0, r.output
    picked = [s["id"] for s in json.loads(r.stdout)["selected"]]
    assert len(picked) == 3
    r = run("label", "export", queue, tmp_path / "vasp", "--format", "vasp")
    assert r.exit_code == 0, r.output
    r = run("label", "run", queue, "--calculator", "emt")
    assert r.exit_code == 0, r.output
    r = run("label", "import", cu["root"] / "store", "--queue", queue, "--method", "EMT")
    assert r.exit_code == 0, r.output
    assert store.version > before
    new = store.read().table(columns=["id"]).column(0).to_pylist()
    old = store.read(before).table(columns=["id"]).column(0).to_pylist()
    added = sorted(set(new) - set(old))
    assert added == sorted(picked)
    frames = {a.info.get("pesdata_id", None) or i: a for i, a in zip(
        store.read().ids, store.read().to_atoms(), strict=True)}
    for i in picked:
        a = frames[i]
        assert a.info.get("selection") == "round"
        assert a.info.get("config_type") in ("hot", "md300")
        assert "site" in a.arrays
    v = store.version
    r = run("label", "import", cu["root"] / "store", "--queue", queue, "--method", "EMT")
    assert r.exit_code == 0, r.output
    assert len(store.read()) == len(new) and store.version == v  # nothing committed
    stranger = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    from ase.calculators.emt import EMT

    stranger.calc = EMT()
    stranger.get_potential_energy()
    ase.io.write(tmp_path / "stranger.extxyz", stranger)
    r = run("label", "import", cu["root"] / "store", "--queue", queue,
            tmp_path / "stranger.extxyz", "--method", "EMT")
    assert r.exit_code != 0 and "stranger.extxyz" in r.output
    assert len(store.read()) == len(new)
