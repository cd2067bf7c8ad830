"""The active-learning loop end to end on EMT Cu with a tiny budget: iterations commit tagged
versions and a record; a killed run resumes without redoing work or duplicating rows; queue mode
stops for labels and continues after `label import`; a bad config names its key."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import ase.io
import pytest
from ase.build import bulk

import pesdata
from pesdata.errors import InputError
from pesdata.loop import LoopStopped, history, load_config, run_loop

from .conftest import emt_cells

CONFIG = """\
name: {name}
store: store
workdir: work-{name}
test: test.extxyz
initial: {{files: [initial.extxyz], method: EMT}}
model:
  n_members: 2
  epochs: 4
  descriptor: {{descriptor: acsf, species: [Cu], r_cut: 4.0, g4_params: [],
               g2_params: [[0.5, 2.5], [1.0, 3.0], [0.05, 0.0]]}}
  params: {{hidden: [8], force_weight: 0.1}}
explore:
  kind: md
  seeds: [seeds.extxyz]
  params: {{temperatures: [300, 1200], steps: {steps}, interval: 5}}
select: {{budget: 2}}
label: {{calculator: {calculator}, method: EMT}}
iterations: 2
"""


def _setup(root, name, calculator="emt", steps=10):
    ase.io.write(root / "initial.extxyz", emt_cells(6, seed=1))
    ase.io.write(root / "test.extxyz", emt_cells(3, seed=2, rattle=0.15))
    seeds = [bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)]
    ase.io.write(root / "seeds.extxyz", seeds)
    path = root / f"{name}.yaml"
    path.write_text(CONFIG.format(name=name, calculator=calculator, steps=steps))
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    config = _setup(root, "tiny")
    df = run_loop(config, echo=lambda s: None)
    return root, config, df


def test_loop_runs_and_records_every_iteration(ran):
    root, config, df = ran
    store = pesdata.open_store(root / "store")
    assert list(df["iteration"]) == [0, 1, 2]
    assert {"iter-0", "iter-1", "iter-2"} <= set(store.tags())
    for row in df.to_dict("records")[1:]:
        assert row["explored"] == 2 * 2  # one seed × 2 temperatures × 10/5 frames
        assert row["selected"] <= 2 and row["added"] == row["selected"]
        assert row["energy_rmse"] > 0 and row["force_rmse"] > 0
        assert store.tags()[row["tag"]] == row["version"]
        assert 0 <= row["accurate"] + row["candidate"] + row["failed"] <= 1 + 1e-9
    assert df["n_structures"].iloc[-1] == 6 + df["added"].iloc[1:].sum()
    assert store.artefacts.load("loop", "tiny")["status"] == "finished"
    pd_history = history(store)
    assert list(pd_history["version"]) == list(df["version"])
    ids = store.read().ids
    assert len(ids) == len(set(ids))
    # the imported rows say which selection picked them
    table = store.read().to_pandas()
    assert (table["version_added"] > 2).sum() == df["added"].iloc[1:].sum()


def test_rerun_of_a_finished_loop_does_nothing(ran):
    root, config, df = ran
    store = pesdata.open_store(root / "store")
    version = store.version
    again = run_loop(config, echo=lambda s: None)
    assert store.version == version
    assert again.equals(df)


def test_killed_loop_resumes_without_redoing_or_duplicating(tmp_path):
    config = _setup(tmp_path, "killed", steps=20)
    proc = subprocess.Popen([sys.executable, "-m", "pesdata", "loop", str(config)],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    work = tmp_path / "work-killed" / "iter-1"
    deadline = time.monotonic() + 240
    while not (work / "candidates.extxyz").is_file():  # killed in the middle of iteration 1
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    model_time = (work / "model" / "model_card.json").stat().st_mtime
    candidates = (work / "candidates.extxyz").read_bytes()
    df = run_loop(config, echo=lambda s: None)
    assert list(df["iteration"]) == [0, 1, 2]
    assert (work / "model" / "model_card.json").stat().st_mtime == model_time  # not retrained
    assert (work / "candidates.extxyz").read_bytes() == candidates  # not explored again
    store = pesdata.open_store(tmp_path / "store")
    ids = store.read().ids
    assert len(ids) == len(set(ids))
    assert len(ids) == 6 + df["added"].iloc[1:].sum()


def test_queue_mode_waits_for_labels_then_continues(tmp_path):
    config = _setup(tmp_path, "queued", calculator="queue")
    with pytest.raises(LoopStopped, match="label import"):
        run_loop(config, echo=lambda s: None)
    store = pesdata.open_store(tmp_path / "store")
    record = store.artefacts.load("loop", "queued")
    assert record["status"] == "waiting_for_labels"
    export = tmp_path / "work-queued" / "iter-1" / "export.extxyz"
    frames = ase.io.read(export, ":")
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    for a in frames:  # the "external code"
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
    ase.io.write(tmp_path / "labelled.extxyz", frames)
    from pesdata.label import import_results

    before = store.version
    import_results(store, tmp_path / "work-queued" / "iter-1" / "queue",
                   [tmp_path / "labelled.extxyz"], method="EMT")
    assert store.version == before + 1
    with pytest.raises(LoopStopped):  # iteration 2 waits in its turn
        run_loop(config, echo=lambda s: None)
    df = history(store, "queued")
    assert list(df["iteration"]) == [0, 1]
    assert df["labelled"].iloc[1] == len(frames)


@pytest.mark.parametrize(("text", "field"), [
    ("name: x\nstore: s\nbogus: 1\n", "bogus"),
    ("name: x\nstore: s\nselect: {budget: -1}\n", "select/budget"),
    ("name: x\nstore: s\nlabel: {workers: 0}\n", "label/workers"),
    ("store: s\n", "name"),
])
def test_bad_config_names_the_key(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_config(path)
    assert field in str(exc.value) and "bad.yaml" in str(exc.value)


def test_cli_loop_prints_the_table(ran):
    from typer.testing import CliRunner

    from pesdata.cli import app

    root, config, df = ran
    r = CliRunner().invoke(app, ["loop", str(config), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["iteration"] for row in rows] == [0, 1, 2]


def test_stop_rules():
    from pesdata.loop import _Loop

    loop = _Loop.__new__(_Loop)
    rows = [{"iteration": 0}, {"iteration": 1, "accurate": 0.5, "force_rmse": 0.20},
            {"iteration": 2, "accurate": 0.6, "force_rmse": 0.15},
            {"iteration": 3, "accurate": 0.7, "force_rmse": 0.16},
            {"iteration": 4, "accurate": 0.8, "force_rmse": 0.17}]
    loop.record = {"iterations": rows[:3]}
    loop.cfg = {"stop": {"accurate_share": 0.9, "patience": 2}}
    assert loop.stop_reason() is None  # improving, not accurate enough
    loop.record = {"iterations": rows}
    assert "not improved for 2 iterations" in loop.stop_reason()
    loop.cfg = {"stop": {"accurate_share": 0.8, "patience": None}}
    assert "80%" in loop.stop_reason()
    loop.cfg = {"stop": {"accurate_share": None, "patience": 3}}
    assert loop.stop_reason() is None  # 0.15 (iteration 2) is within the last 3
