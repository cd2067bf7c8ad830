"""`select` with a model, a committee and trust windows, end to end on EMT Cu: the EMT known
answer through the whole policy, `--model`/`--committee`/`--trust`/`--f-lo` on the command line,
and `rescore` with new error thresholds writing a queue."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase import units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.descriptors import from_config
from pesdata.select import rescore, select
from pesdata.train import Committee, HDNNPotential, save_model

# radial terms only, as in the criterion tests: the force backward pass stays cheap
DESC = {"descriptor": "acsf", "species": ["Cu"], "r_cut": 4.5, "g4_params": [],
        "g2_params": [[0.5, 2.5], [1.0, 3.0], [0.3, 4.0], [0.05, 0.0]]}
runner = CliRunner()


def _label(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
    return atoms


def _md(temperature: float, n: int, seed: int, every: int = 15) -> list:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.rattle(0.02, seed=seed)
    atoms.calc = EMT()
    dyn = Langevin(atoms, 4 * units.fs, temperature_K=temperature, friction=0.05, fixcm=False,
                   rng=np.random.default_rng(seed))
    dyn.run(60)
    out = []
    for _ in range(n):
        dyn.run(every)
        frame = _label(atoms)
        frame.info["config_type"] = f"md{temperature:.0f}"
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def cu(tmp_path_factory):
    root = tmp_path_factory.mktemp("selmodels")
    store = pesdata.open_store(root / "store", create=True)
    reference = _md(300, 16, seed=1)
    store.curate(reference, method="EMT")
    familiar = _md(300, 6, seed=2)
    hot = _md(1500, 3, seed=3, every=40)
    vac = []
    for k, atoms in enumerate(_md(300, 2, seed=4)):
        del atoms[[k, 9]]
        atoms = _label(atoms)
        atoms.info["config_type"] = "vacancy"
        vac.append(atoms)
    slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0, periodic=True)
    slab.rattle(0.05, seed=5)
    slab = _label(slab)
    slab.info["config_type"] = "slab"
    novel = [*hot, *vac, slab]
    ase.io.write(root / "cands.extxyz", familiar + novel)
    unlabelled = [a.copy() for a in familiar + novel]
    for a in unlabelled:
        a.calc = None
    ase.io.write(root / "unlabelled.extxyz", unlabelled)
    model = HDNNPotential(from_config(DESC), dtype="float64", hidden=(8,), epochs=3,
                          force_weight=0.1).fit(reference[:6])
    save_model(model, root / "model")
    com = Committee(from_config(DESC), n_members=3, dtype="float64", hidden=(8,), epochs=15,
                    force_weight=0.1).fit(reference)
    save_model(com, root / "committee")
    return {"root": root, "store": store, "n_familiar": len(familiar), "n_novel": len(novel)}


def _rows(sel) -> np.ndarray:
    return sel.selected["source"].str.rsplit("#", n=1).str[1].astype(int).to_numpy()


def test_emt_known_answer_through_select(cu):
    """Budget = number of novel frames: ≥ 0.9 of the picks are novel (issue 15)."""
    sel = select(cu["store"], [cu["root"] / "unlabelled.extxyz"], budget=cu["n_novel"],
                 name="emt-known")
    assert len(sel.selected) == cu["n_novel"]
    assert np.mean(_rows(sel) >= cu["n_familiar"]) >= 0.9


def test_model_error_on_the_command_line(cu):
    store = str(cu["root"] / "store")
    card = json.loads((cu["root"] / "model" / "model_card.json").read_text())
    r = runner.invoke(app, ["select", store, "-c", str(cu["root"] / "cands.extxyz"), "--model",
                            str(cu["root"] / "model"), "--no-novelty", "--f-lo", "0.05",
                            "--f-hi", "100", "--name", "by-model", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["counts"].get("selected", 0) >= 1
    assert all(s["error"] and s["error"]["force_error"] >= 0.05 for s in doc["selected"])
    ledger, summary = pesdata.select.load_ledger(cu["store"], "by-model")
    assert summary["model_hash"] == card["weights_sha256"]
    assert (ledger["model_hash"] == card["weights_sha256"]).all()
    assert (ledger["f_lo"].astype(float) == 0.05).all()
    assert (ledger["f_hi"].astype(float) == 100).all()
    r = runner.invoke(app, ["select", store, "-c", str(cu["root"] / "unlabelled.extxyz"),
                            "--model", str(cu["root"] / "model"), "--name", "nolabels"])
    assert r.exit_code == 2 and "committee" in r.output


def test_committee_with_a_trust_file(cu):
    trust = cu["root"] / "trust.yaml"
    trust.write_text("default: {f_lo: 0.08, f_hi: 5.0}\n"
                     "config_type:\n  slab: {e_lo: 1.0, f_lo: 10.0, f_hi: 20.0}\n")
    r = runner.invoke(app, ["select", str(cu["root"] / "store"), "-c",
                            str(cu["root"] / "unlabelled.extxyz"), "--committee",
                            str(cu["root"] / "committee"), "--trust", str(trust), "--no-novelty",
                            "--name", "by-committee", "--json"])
    assert r.exit_code == 0, r.output
    led = cu["store"].ledger("by-committee")
    slab = led[led["config_type"] == "slab"].iloc[0]
    assert slab["trust"] == "config_type=slab" and float(slab["f_lo"]) == 10.0
    assert slab["error_verdict"] == "accurate"  # its window is wide open
    other = led[led["config_type"] != "slab"]
    assert (other["f_lo"].astype(float) == 0.08).all()
    spread = other["force_std"].astype(float)
    e_spread, e_lo = other["energy_std"].astype(float), other["e_lo"].astype(float)
    inside = (spread >= 0.08) | (e_spread >= e_lo)
    expect = np.where(spread >= 5.0, "failed", np.where(inside, "candidate", "accurate"))
    assert list(other["error_verdict"]) == list(expect)


def test_rescore_error_thresholds_and_write_a_queue(cu, tmp_path):
    sel = select(cu["store"], [cu["root"] / "cands.extxyz"], model=cu["root"] / "model",
                 novelty=False, name="err-orig", trust={"default": {"f_lo": 0.05,
                                                                   "f_hi": None}})
    n = sel.counts.get("selected", 0)
    errors = sel.ledger["force_error"].astype(float)
    cut = float(np.median(errors))
    again = rescore(cu["store"], "err-orig", name="err-cut", out=tmp_path / "q",
                    error_thresholds={"f_lo": cut, "e_lo": 1e3, "e_hi": None})
    assert again.counts.get("selected", 0) == int(np.sum(errors >= cut)) <= n
    queue = pesdata.label.queue.read_queue(tmp_path / "q")
    assert queue.ids == list(again.selected["id"])
    assert queue.selection == "err-cut"


def test_rescore_with_a_new_trust_file(cu):
    led = cu["store"].ledger("by-committee")  # made by test_committee_with_a_trust_file
    trust = cu["root"] / "trust2.json"
    trust.write_text(json.dumps({"default": {"e_lo": 10.0, "f_lo": 4.0, "f_hi": 5.0},
                                 "formula": {"Cu": {"e_lo": 10.0, "f_lo": 0.01}}}))
    again = rescore(cu["store"], "by-committee", trust=trust, name="by-committee-2")
    assert set(again.ledger["trust"]) == {"formula=Cu"}
    spread = again.ledger["force_std"].astype(float)
    assert list(again.ledger["error_verdict"]) == list(
        np.where(spread >= 5.0, "failed", np.where(spread >= 0.01, "candidate", "accurate")))
    assert len(led) == len(again.ledger)


def test_committee_scores_on_a_scheduler_equal_serial(cu, monkeypatch):
    """Error/committee scores run as Dask tasks over chunks of candidates (threads here, 3
    frames per task): the ledger equals the serial one."""
    from pesdata.select import _select

    serial = select(cu["store"], [cu["root"] / "unlabelled.extxyz"], novelty=False,
                    committee=cu["root"] / "committee", name="com-serial")
    monkeypatch.setattr(_select, "SCORE_CHUNK", 3)
    tasks = select(cu["store"], [cu["root"] / "unlabelled.extxyz"], novelty=False,
                   committee=cu["root"] / "committee", name="com-threads",
                   scheduler="threads", workers=2)
    assert len(serial.ledger) > 3
    cols = ["id", "decision", "energy_std", "force_std", "error_verdict"]
    assert tasks.ledger[cols].to_dict("list") == serial.ledger[cols].to_dict("list")
