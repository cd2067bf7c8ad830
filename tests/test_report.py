"""Analysis views and the HTML report, on a store of EMT Cu cells curated in three batches, a
selection ledger, a hand-written loop record and a small linear model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase.build import bulk

import pesdata
import pesdata.cli._report  # noqa: F401 - registers the command (until the lead imports it)
from pesdata.analysis import summary as S
from pesdata.errors import InputError, OutputError

from .conftest import CU_ACSF_SMALL_CONFIG, emt_cells

PNG = b"\x89PNG\r\n\x1a\n"

LOOP = {
    "name": "demo", "version": 4, "created": "2026-01-01T00:00:00+00:00", "config": {},
    "status": "finished",
    "iterations": [  # deliberately out of order: the history sorts by iteration
        {"iteration": 1, "version": 3, "tag": "iter-1", "n_structures": 7, "explored": 40,
         "accurate": 0.5, "candidate": 0.4, "failed": 0.1, "selected": 3,
         "energy_rmse": 7.5, "force_rmse": 0.21},
        {"iteration": 0, "version": 2, "tag": "iter-0", "n_structures": 3,
         "energy_rmse": 12.0, "force_rmse": None},
        {"iteration": 2, "version": 4, "tag": "iter-2", "n_structures": 10, "explored": 40,
         "accurate": 0.8, "candidate": 0.2, "failed": 0.0, "selected": 3,
         "energy_rmse": 4.0, "force_rmse": 0.12},
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Store (versions 2-4: bulk, small cells + one unlabelled cell, untyped), a ledger, a
    loop record, a linear model, an efficiency file; and the report written from them."""
    d = tmp_path_factory.mktemp("report")
    cells = emt_cells(3, seed=1) + emt_cells(3, seed=2, size=(2, 2, 1), rattle=0.1) \
        + emt_cells(3, seed=3, rattle=0.1)
    store = pesdata.open_store(d / "store", create=True)
    store.curate(cells[:3], method="EMT", config_type="bulk")
    store.tag("first")
    unlabelled = bulk("Cu", "fcc", a=3.7, cubic=True)
    store.curate(cells[3:6] + [unlabelled], method="EMT", config_type="small")
    store.curate(cells[6:], method="EMT")
    vacancies = emt_cells(3, seed=6, rattle=0.05)
    for a in vacancies:
        a.calc = None  # no labels: select needs none
        del a[0]  # a vacancy: novel next to the bulk cells
    ase.io.write(d / "cand.extxyz", emt_cells(3, seed=5, rattle=0.05) + vacancies)
    from pesdata.select import select

    select(store, [str(d / "cand.extxyz")], budget=2, name="sel1")
    store.artefacts.save("loop", "demo", LOOP)
    from pesdata.train import train

    train(store, d / "model", model="linear", descriptor=CU_ACSF_SMALL_CONFIG)
    curves = [{"strategy": s, "seed": seed, "n_labels": [10, 20, 40],
               "energy_rmse": [f * 20, f * 11, None if (s, seed) == ("random", 1) else f * 6],
               "force_rmse": [f * 0.3, f * 0.2, f * 0.1]}
              for s, f in (("pesdata", 0.7), ("random", 1.0)) for seed in range(2)]
    (d / "eff.json").write_text(json.dumps({"curves": curves}))
    from pesdata.analysis import write_report

    index = write_report(store, d / "out", model=d / "model", efficiency=d / "eff.json")
    return {"dir": d, "store": store, "cells": cells, "index": index}


# -- pandas views --------------------------------------------------------------------------


def test_version_summary_equals_an_independent_pandas_computation(world):
    store = world["store"]
    got = S.version_summary(store)
    assert list(got.columns) == list(S.SUMMARY_COLUMNS)
    df = store.read().to_pandas()
    for by in ("method", "config_type", "formula"):
        key = df[by].fillna("(none)")
        ref = df.groupby(key).agg(
            n_structures=("id", "size"), n_atoms=("n_atoms", "sum"),
            n_labelled=("energy", "count"),
            energy_per_atom_mean=("energy_per_atom", "mean"),
            energy_per_atom_std=("energy_per_atom", lambda x: x.std(ddof=0)),
            energy_per_atom_min=("energy_per_atom", "min"),
            energy_per_atom_max=("energy_per_atom", "max"),
            fmax_mean=("fmax", "mean"), fmax_median=("fmax", "median"),
            fmax_max=("fmax", "max"))
        mine = got[got["by"] == by].set_index("value").drop(columns="by")
        assert sorted(mine.index) == sorted(ref.index)
        pd.testing.assert_frame_equal(mine.loc[ref.index], ref, check_names=False,
                                      check_dtype=False, rtol=1e-12)
    assert set(got.loc[got["by"] == "config_type", "value"]) == {"bulk", "small", "(none)"}
    # the unlabelled cell counts as a structure, never as a zero energy
    row = got[got["by"] == "all"].iloc[0]
    n_atoms = 3 * 32 + (3 * 16 + 4) + 3 * 32
    assert (row["n_structures"], row["n_labelled"], row["n_atoms"]) == (10, 9, n_atoms)
    # and the numbers are EMT's own, from the atoms curated
    epa = [a.get_potential_energy() / len(a) for a in world["cells"]]
    fmax = [np.linalg.norm(a.get_forces(), axis=1).max() for a in world["cells"]]
    assert row["energy_per_atom_mean"] == pytest.approx(np.mean(epa), rel=1e-9)
    assert row["energy_per_atom_max"] == pytest.approx(np.max(epa), rel=1e-9)
    assert row["fmax_max"] == pytest.approx(np.max(fmax), rel=1e-6)
    old = S.version_summary(store, "first")
    assert old.attrs["version"] == 2
    assert old.loc[old["by"] == "all", "n_structures"].item() == 3


def test_versions_agree_with_log_and_diff(world):
    store = world["store"]
    v = S.versions(store)
    assert list(v.columns) == list(S.VERSION_COLUMNS)
    log = store.log()
    assert v["version"].tolist() == log["version"].tolist() == [1, 2, 3, 4]
    assert v["n_structures"].tolist() == log["n_structures"].tolist()
    for a, b in ((2, 3), (3, 4)):
        diff = store.diff(a, b)
        row = v[v["version"] == b].iloc[0]
        assert (row["added"], row["removed"]) == (len(diff["added"]), len(diff["removed"]))
    assert v["added"].tolist() == [0, 3, 4, 3]
    assert v.loc[v["version"] == 2, "tags"].item() == "first"


def test_ledgers_and_selections_restate_the_ledger(world):
    store = world["store"]
    led = S.ledgers(store)
    own = store.ledger("sel1")
    assert led["ledger"].unique().tolist() == ["sel1"]
    assert "fingerprint" not in led and "fingerprint" in S.ledgers(store, arrays=True)
    assert led["id"].tolist() == own["id"].tolist()
    assert led["decision"].tolist() == own["decision"].tolist()
    sel = S.selections(store)
    counts = own["decision"].value_counts()
    row = sel.iloc[0]
    assert row["n_candidates"] == 6 and row["budget"] == 2 and row["reference_version"] == 4
    assert row["selected"] == counts["selected"] == 2
    assert row["dropped_by_budget"] == counts["dropped_by_budget"] == 1
    assert sum(row[d] for d in counts.index) == 6


def test_loop_history_follows_the_schema(world, store):
    from pesdata.store._artefacts import load_schema

    keys = list(load_schema("loop")["properties"]["iterations"]["items"]["properties"])
    h = S.loop_history(world["store"])
    assert list(h.columns) == keys
    assert h["iteration"].tolist() == [0, 1, 2]
    assert h["energy_rmse"].tolist() == [12.0, 7.5, 4.0]
    assert np.isnan(h["force_rmse"][0]) and h["force_rmse"][2] == 0.12
    assert h.attrs == {"loop": "demo", "status": "finished"}
    empty = S.loop_history(store)  # a new store: no loop record
    assert list(empty.columns) == keys and len(empty) == 0
    with pytest.raises(LookupError):
        S.loop_history(world["store"], "nope")


def test_efficiency_curves_and_bad_files(world, tmp_path):
    c = S.efficiency_curves(world["dir"] / "eff.json")
    assert list(c.columns) == list(S.EFFICIENCY_COLUMNS) and len(c) == 12
    assert c["energy_rmse"].isna().sum() == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"curves": [{"strategy": "x", "n_labels": [1, 2],
                                           "force_rmse": [0.1]}]}))
    with pytest.raises(InputError, match=r"curves\[0\].*force_rmse"):
        S.efficiency_curves(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        S.efficiency_curves(bad)


def test_descriptor_map_is_sklearn_pca_of_the_fingerprints(world):
    from sklearn.decomposition import PCA

    from pesdata.analysis.maps import _ledger_space, descriptor_map
    from pesdata.descriptors import load_descriptors
    from pesdata.select._base import Environments
    from pesdata.select.fingerprint import structure_fingerprints

    store = world["store"]
    m = descriptor_map(store, ledger="sel1")
    stored, cand = m[m["kind"] == "stored"], m[m["kind"] == "candidate"]
    assert list(m.columns) == ["kind", "id", "version_added", "decision", "pc1", "pc2"]
    assert stored["id"].tolist() == store.read().ids
    assert stored["version_added"].tolist() == store.read().to_pandas()["version_added"].tolist()
    assert cand["id"].tolist() == store.ledger("sel1")["id"].tolist()
    desc, center, scale, _ = _ledger_space(store, "sel1")
    env = Environments.from_cache(load_descriptors(store, desc))
    fp = structure_fingerprints(env, desc.species, center=center, scale=scale)
    pca = PCA(2).fit(fp)
    ref = pca.transform(fp)
    np.testing.assert_allclose(m.attrs["explained"], pca.explained_variance_ratio_, rtol=1e-8)
    for k, col in enumerate(("pc1", "pc2")):  # the same axes up to sign
        sign = np.sign(ref[:, k] @ stored[col].to_numpy())
        np.testing.assert_allclose(stored[col], sign * ref[:, k], atol=1e-8)
        led = np.stack(store.ledger("sel1")["fingerprint"].to_list()).astype(float)
        np.testing.assert_allclose(cand[col], sign * pca.transform(led)[:, k], atol=1e-5)


# -- the report ----------------------------------------------------------------------------


def _referenced(index: Path) -> list[str]:
    text = index.read_text()
    return re.findall(r'(?:src|href)="([^"#][^"]*)"', text)


def test_report_writes_every_file_it_references(world):
    index = world["index"]
    root = index.parent
    manifest = json.loads((root / "report.json").read_text())
    assert manifest["version"] == 4 and manifest["skipped"] == {}
    assert set(manifest["images"]) == {"distributions", "composition", "map", "learning",
                                       "parity", "efficiency"}
    refs = _referenced(index)
    assert sorted(refs) == sorted(manifest["images"].values())
    for name in refs:  # relative paths to real, non-trivial PNGs, nothing else
        assert not name.startswith(("/", "http:", "https:", "file:"))
        data = (root / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000
    assert {p.name for p in root.iterdir()} == {"index.html", "report.json", *refs}
    text = index.read_text()
    assert "Not drawn" not in text and "sel1" in text and "iter-2" in text
    assert "1 point(s) left out (non-finite)" in text  # the null RMSE of the efficiency file


def test_report_parity_figures_match_evaluate(world):
    from pesdata.train import evaluate

    store = world["store"]
    ref = evaluate(world["dir"] / "model", f"{store.uri}@4")
    text = world["index"].read_text()
    line = re.search(r"Parity: energy MAE ([\d.]+) / RMSE ([\d.]+) meV/atom, force MAE "
                     r"([\d.]+) / RMSE ([\d.]+) eV/Å on (\d+) structures", text)
    assert line, text
    got = [float(x) for x in line.groups()]
    want = [ref["energy_mae"], ref["energy_rmse"], ref["force_mae"], ref["force_rmse"]]
    np.testing.assert_allclose(got[:4], want, rtol=5e-3)  # 3 significant digits
    assert got[4] == ref["n_structures"] == 9


def test_report_of_an_empty_version_draws_nothing_and_says_why(world, tmp_path):
    from pesdata.analysis import write_report

    index = write_report(world["store"], tmp_path / "r", version=1)
    manifest = json.loads((index.parent / "report.json").read_text())
    assert {"distributions", "composition", "map", "parity", "efficiency"} <= \
        set(manifest["skipped"])
    assert list(manifest["images"]) == ["learning"]  # the loop record is the store's
    assert sorted(p.name for p in index.parent.glob("*.png")) == ["learning_curve.png"]
    text = index.read_text()
    assert text.count("Not drawn") == len(manifest["skipped"])
    assert all(s in _referenced(index) for s in ("learning_curve.png",))


def test_report_replaces_a_report_and_refuses_anything_else(world, tmp_path):
    from pesdata.analysis import write_report

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a pesdata report"):
        write_report(world["store"], other)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    out = tmp_path / "r"
    write_report(world["store"], out, version=2)
    (out / "stale.png").write_bytes(PNG)
    write_report(world["store"], out, version="first")  # replaced whole: stale file gone
    assert not (out / "stale.png").exists()


def test_cli_report_json_lists_the_files(world, tmp_path):
    from typer.testing import CliRunner

    from pesdata.cli import app

    out = tmp_path / "r"
    res = CliRunner().invoke(app, ["report", str(world["store"].uri), "--out", str(out),
                                   "--version", "3", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["version"] == 3 and doc["index"] == str(out / "index.html")
    assert sorted(doc["files"]) == sorted(str(p) for p in out.iterdir())
    assert set(doc["skipped"]) == {"parity", "efficiency"}
    res = CliRunner().invoke(app, ["report", str(world["store"].uri), "--out", str(out),
                                   "--efficiency", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "missing.json" in res.output


def test_help_does_not_import_matplotlib():
    code = ("import sys\nimport pesdata.cli._report\nimport pesdata.analysis\n"
            "from pesdata.__main__ import main\n"
            "try:\n    main(['report', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('matplotlib', 'torch', 'sklearn') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
