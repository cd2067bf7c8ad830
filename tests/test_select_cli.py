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


def test_queue_that_cannot_be_written_keeps_nothing(cu, tmp_path):
    r = run("select", cu["root"] / "store", "-c", cu["cands"], "--budget", 2, "--out",
            tmp_path / "no-such-dir" / "q", "--name", "blocked")
    assert r.exit_code == 2 and "writable directory" in r.output
    assert "blocked" not in cu["store"].artefacts.list("selection")


def test_options_that_cannot_apply_are_refused(cu, tmp_path):
    r = run("select", cu["root"] / "store", "-c", cu["cands"], "--f-lo", 0.1, "--name", "x1")
    assert r.exit_code == 2 and "--model or" in r.output
    r = run("select", cu["root"] / "store", "--rescore", "cli-json", "--no-novelty")
    assert r.exit_code == 2 and "--no-novelty" in r.output
    r = run("select", cu["root"] / "store", "-c", cu["cands"], "--name", " ")
    assert r.exit_code == 2 and "name" in r.output


def test_nan_labels_fail_and_diversity_only_first_pick(cu, tmp_path):
    frames = ase.io.read(cu["cands"], ":3")
    bad = emt_cells(1, seed=9)[0]
    bad.calc.results["forces"][2, 0] = np.nan
    path = tmp_path / "c.extxyz"
    ase.io.write(path, [*frames, bad])
    r = run("select", cu["root"] / "store", "-c", path, "--name", "nanlab", "--json")
    assert r.exit_code == 0, r.output
    led = cu["store"].ledger("nanlab")
    last = led[led["source"].str.endswith("#3")].iloc[0]
    assert last["decision"] == "failed" and "NaN/inf forces label" in last["reason"]
    empty = pesdata.open_store(tmp_path / "empty", create=True)
    r = run("select", tmp_path / "empty", "-c", cu["cands"], "--budget", 3)
    assert r.exit_code == 2 and "--no-novelty" in r.output
    r = run("select", tmp_path / "empty", "-c", cu["cands"], "--budget", 3, "--no-novelty",
            "--name", "first", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["selected"]) == 3
    assert "diversity only" in empty.ledger("first")["reason"].iloc[0]


def test_import_guards_the_store_and_reports_rejections(cu, tmp_path):
    queue = tmp_path / "q"
    fresh = []
    for k in range(3):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.25, seed=500 + k)
        fresh.append(a)
    ase.io.write(tmp_path / "fresh.extxyz", fresh)
    r = run("select", cu["root"] / "store", "-c", tmp_path / "fresh.extxyz", "--budget", 2,
            "--out", queue, "--name", "guard", "--method", "EMT")
    assert r.exit_code == 0, r.output
    assert run("label", "run", queue, "--calculator", "emt").exit_code == 0
    other = pesdata.open_store(tmp_path / "other", create=True)
    r = run("label", "import", tmp_path / "other", "--queue", queue, "--method", "EMT")
    assert r.exit_code == 2 and "--other-store" in r.output and other.version == 1
    # a result with a NaN force, imported under --quarantine: reported, the queue stays open
    results = ase.io.read(queue / "frames.extxyz", ":")
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    for k, a in enumerate(results):
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces().copy()
        if k == 1:
            f[0, 0] = np.nan
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
    ase.io.write(tmp_path / "res.extxyz", results)
    r = run("label", "import", cu["root"] / "store", "--queue", queue, tmp_path / "res.extxyz",
            "--method", "EMT", "--quarantine", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert len(doc["rejected"]) == 1 and doc["rejected"][0]["id"] in doc["missing"]
    assert json.loads((queue / "manifest.json").read_text())["status"] != "imported"
