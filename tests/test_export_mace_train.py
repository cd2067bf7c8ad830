"""A real trainer consumes an export: ``mace_run_train`` (mace-torch, from the test extra) trains a
tiny MACE for one epoch on a 20-frame split exported with ``--to mace`` and reports finite
errors; MACE's own log counts the labels it loaded, so a frame stored without forces is seen
without forces (weight 0), not as a zero-force target.

Nothing is installed at test time: ``mace_run_train`` is the venv's entry point
(``pyproject.toml``'s ``test`` extra holds ``mace-torch``). Marked slow (about 30 s on two
cores); ``make test`` runs the slow tests too (``pyproject.toml``: no marker is deselected).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import ase.io
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

import pesdata
from pesdata.split import make_split

from .conftest import emt_cells

pytestmark = pytest.mark.slow


def _entry_point() -> Path:
    exe = Path(sys.executable).with_name("mace_run_train")
    if not exe.exists():
        pytest.fail(f"{exe} not found: install the test extra (pip install -e '.[test]')")
    return exe


def test_mace_run_train_one_epoch_on_an_exported_split(tmp_path):
    exe = _entry_point()
    frames = emt_cells(20, seed=5, size=(2, 2, 1))  # 16-atom Cu cells: energy, forces, stress
    bare = frames[7]
    bare.calc = SinglePointCalculator(bare, energy=bare.calc.results["energy"])  # no forces
    store = pesdata.open_store(tmp_path / "st", create=True)
    assert store.curate(frames, method="EMT").added == 20
    make_split(store, "s", "holdout", test_size=0.2)
    out = tmp_path / "mace-in"
    manifest = store.export(out, to="mace", split="s", e0="average")
    e0_note = next(n for n in manifest["notes"] if n.startswith("E0s (eV, by atomic number)"))
    e0_arg = e0_note.split(": ", 1)[1]  # "{29: ...}": MACE's --E0s dict, as the notes give it
    train = ase.io.read(out / "train.xyz", ":")
    with_forces = sum("REF_forces" in a.arrays for a in train)
    with_stress = sum("REF_stress" in a.info for a in train)
    assert (len(train), manifest["parts"]["test"]["count"]) == (16, 4)
    assert with_forces == with_stress == 15  # the frame with energy only is in the train part

    cmd = [str(exe), "--name", "tiny", "--seed", "1", "--work_dir", str(tmp_path / "run"),
           "--train_file", str(out / "train.xyz"), "--valid_fraction", "0.1",
           "--test_file", str(out / "test.xyz"),
           "--energy_key", "REF_energy", "--forces_key", "REF_forces",
           "--stress_key", "REF_stress", "--E0s", e0_arg,
           "--model", "MACE", "--num_channels", "8", "--max_L", "0", "--r_max", "4.0",
           "--batch_size", "5", "--valid_batch_size", "5", "--max_num_epochs", "1",
           "--device", "cpu", "--default_dtype", "float64"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Training complete" in log

    # MACE read the labels the export wrote — and no forces for the frame that has none
    counts = re.search(r"Total Training set \[energy: (\d+), stress: (\d+),.*? forces: (\d+)",
                       log)
    assert counts, log[-4000:]
    assert [int(c) for c in counts.groups()] == [16, with_stress, with_forces]
    assert f"Atomic Energies used (z: eV) for head Default: {e0_arg}" in log

    # finite errors: the evaluation lines of results/*_train.txt and the test error table
    results = list((tmp_path / "run" / "results").glob("tiny_run-1_train.txt"))
    assert results, sorted(p.name for p in (tmp_path / "run").rglob("*"))
    evals = [json.loads(line) for line in results[0].read_text().splitlines() if line.strip()]
    evals = [r for r in evals if r.get("mode") == "eval"]
    assert len(evals) >= 2  # the initial evaluation and epoch 0
    for row in evals:
        for key in ("loss", "rmse_e_per_atom", "rmse_f"):
            assert math.isfinite(row[key]), row
    table = log[log.index("Error-table on TEST"):]
    row = re.search(r"\|\s*Default_Default\s*\|\s*([-+\w.]+)\s*\|\s*([-+\w.]+)\s*\|", table)
    assert row, table[:2000]
    assert all(math.isfinite(float(v)) for v in row.groups())
    assert (tmp_path / "run" / "tiny.model").is_file()
