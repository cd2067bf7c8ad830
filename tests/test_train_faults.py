"""Hostile input and faults around training and evaluation (issue 14 §5, blocks D8, D10, D11):
model directories that are not models, special files as parity output, non-finite
hyperparameters, invalid frames and NaN predictions in evaluate, a damaged descriptor cache."""

import math
import os
import shutil

import ase.io
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.descriptors import describe
from pesdata.errors import (
    OutputError,
    ParameterError,
    StoreCorruptError,
    ValidationError,
)
from pesdata.train import (
    Committee,
    HDNNPotential,
    LinearPotential,
    StructureDataset,
    evaluate,
    load_model,
    predict_metrics,
    save_model,
    train,
)

from .conftest import CU_ACSF_CONFIG, CU_ACSF_SMALL_CONFIG, DATA, emt

DESC = pesdata.descriptors.from_config(CU_ACSF_CONFIG)


@pytest.fixture(scope="module")
def si(tmp_path_factory):
    """The mlearn Si test set (25 frames) and a linear model trained on it."""
    base = tmp_path_factory.mktemp("faults")
    st = pesdata.open_store(base / "s", create=True)
    st.curate(DATA / "mlearn" / "Si_test.extxyz", method="PBE")
    train(st, base / "m_lin", model="linear")
    return st, base / "m_lin"


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_train_out_refuses_a_directory_that_only_looks_like_a_model(si, tmp_path):
    """Block D8: a `{}` model_card.json beside a thesis is not a model; nothing is deleted."""
    st, _ = si
    d = tmp_path / "notamodel"
    (d / "sub").mkdir(parents=True)
    (d / "model_card.json").write_text("{}")
    (d / "thesis.tex").write_text("thesis")
    (d / "sub" / "data.bin").write_bytes(b"d")
    before = _tree(d)
    with pytest.raises(OutputError, match="not a pesdata model directory"):
        train(st, d, model="linear")
    r = CliRunner().invoke(app, ["train", st.uri, "--out", str(d), "--model", "linear"])
    assert r.exit_code == 2 and "not a pesdata model directory" in r.stderr
    assert _tree(d) == before and (d / "thesis.tex").read_text() == "thesis"
    # only the card and weights: a card that fails the schema is still no model
    for name in ("thesis.tex", "sub/data.bin", "sub"):
        (d / name).unlink() if (d / name).is_file() else (d / name).rmdir()
    (d / "model.pt").write_bytes(b"w")
    with pytest.raises(OutputError, match="not a valid model card"):
        train(st, d, model="linear")
    assert (d / "model_card.json").read_text() == "{}"


def test_train_out_replaces_a_real_model_but_not_one_with_extra_files(si, tmp_path):
    st, model_dir = si
    m = tmp_path / "m"
    shutil.copytree(model_dir, m)
    card = train(st, m, model="linear", params={"alpha": 1e-3})  # a model: replaced whole
    assert _tree(m) == ["model.pt", "model_card.json"] and card["params"]["alpha"] == 1e-3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    (m / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="'notes.txt', which save_model does not write"):
        train(st, m, model="linear")
    assert (m / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(st, empty, model="linear")["kind"] == "linear"
    link = tmp_path / "link"
    link.symlink_to(empty, target_is_directory=True)
    with pytest.raises(OutputError, match="symbolic link"):
        train(st, link, model="linear")


def test_parity_output_special_files_are_refused_before_any_work(si, tmp_path):
    """Blocks D9/D10 for evaluate --parity: FIFO, symlink, directory refused, nothing left."""
    st, model_dir = si
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # the model path does not exist: the parity path is refused before the model is read
    with pytest.raises(OutputError, match="FIFO"):
        evaluate(tmp_path / "no-model", st.uri, parity=str(fifo))
    real = tmp_path / "real.parquet"
    real.write_text("keep")
    link = tmp_path / "link.parquet"
    link.symlink_to(real)
    with pytest.raises(OutputError, match="symbolic link"):
        evaluate(model_dir, st.uri, parity=str(link))
    assert link.is_symlink() and real.read_text() == "keep"
    pdir = tmp_path / "pdir"
    pdir.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    r = CliRunner().invoke(app, ["evaluate", st.uri, "--model", str(model_dir),
                                 "--parity", str(pdir)])
    assert r.exit_code == 2 and "is a directory" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not any(pdir.iterdir())
    assert os.path.exists(fifo) and not os.path.isfile(fifo)
    out = tmp_path / "p.parquet"
    res = evaluate(model_dir, st.uri, parity=str(out))
    assert out.is_file() and res["n_structures"] == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "p.parquet"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"force_weight": math.nan}, "force_weight must be finite and ≥ 0, got nan"),
     ({"force_weight": math.inf}, "force_weight must be finite and ≥ 0, got inf"),
     ({"energy_weight": -1.0}, "energy_weight must be finite and ≥ 0, got -1.0"),
     ({"lr": math.nan}, "lr must be finite and > 0, got nan"),
     ({"lr": math.inf}, "lr must be finite and > 0, got inf"),
     ({"lr_min": math.nan}, "lr_min must be finite"),
     ({"epochs": math.inf}, "epochs must be a positive integer, got inf"),
     ({"epochs": 2.5}, "epochs must be a positive integer, got 2.5"),
     ({"patience": math.nan}, "patience must be a positive integer, got nan"),
     ({"lr_patience": -1}, "lr_patience must be an integer ≥ 0, got -1"),
     ({"ema_decay": math.nan}, "ema_decay must be a finite number in"),
     ({"valid_fraction": math.inf}, "valid_fraction must be a finite number in"),
     ({"max_seconds": math.nan}, "max_seconds must be finite and positive, got nan"),
     ({"seed": True}, "seed must be an integer ≥ 0, got True"),
     ({"hidden": (8, math.nan)}, "hidden width must be a positive integer, got nan")],
)
def test_non_finite_hdnn_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        HDNNPotential(DESC, **kwargs)
    with pytest.raises(ParameterError, match=message):
        Committee(DESC, n_members=2, **kwargs)


def test_non_finite_linear_and_committee_parameters_are_refused():
    for kwargs, message in [({"alpha": math.nan}, "alpha must be finite and ≥ 0, got nan"),
                            ({"alpha": -1.0}, "alpha must be finite"),
                            ({"force_weight": math.nan}, "force_weight must be finite")]:
        with pytest.raises(ParameterError, match=message):
            LinearPotential(DESC, **kwargs)
    for n in (1, 0, math.nan, 2.5):
        with pytest.raises(ParameterError, match="n_members must be at least 2"):
            Committee(DESC, n_members=n)


def test_cli_refuses_non_finite_and_out_of_range_options(si, tmp_path):
    """Block D11: --force-weight nan used to land NaN in the card and the --json output."""
    st, _ = si
    runner = CliRunner()
    cases = [(["--force-weight", "nan"], "force_weight must be finite and ≥ 0, got nan"),
             (["--force-weight", "-1"], "force_weight must be finite and ≥ 0, got -1.0"),
             (["--epochs", "0"], "epochs must be a positive integer, got 0"),
             (["--model", "committee", "--members", "1"], "n_members must be at least 2"),
             (["--seed", "-3"], "seed must be an integer ≥ 0, got -3"),
             (["--members", "2"], "the hdnn model takes no n_members")]
    for k, (args, message) in enumerate(cases):
        out = tmp_path / f"m{k}"
        r = runner.invoke(app, ["train", st.uri, "--out", str(out), "--json", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.stderr and r.stdout == "" and not out.exists()
    r = runner.invoke(app, ["cv", st.uri, "--split", "x", "--force-weight", "inf"])
    assert r.exit_code != 0


def _write(path, frames):
    ase.io.write(path, frames, format="extxyz")
    return path


def test_evaluate_file_runs_the_curate_validators(si, tmp_path):
    st, model_dir = si
    frames = ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":3")
    frames[1].positions[2, 0] = np.nan  # a NaN position: the finite validator's field
    bad = _write(tmp_path / "bad.xyz", frames)
    with pytest.raises(ValidationError,
                       match=r"1 of 3 frame\(s\) invalid.*bad.xyz: frame 1: field 'positions'"):
        evaluate(model_dir, str(bad))
    r = CliRunner().invoke(app, ["evaluate", str(bad), "--model", str(model_dir), "--json"])
    assert r.exit_code != 0 and "frame 1" in r.stderr and r.stdout == ""
    frames = ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":3")
    frames[2].positions[1] = frames[2].positions[0] + 0.05  # two atoms on top of each other
    close = _write(tmp_path / "close.xyz", frames)
    with pytest.raises(ValidationError, match="close.xyz: frame 2: field 'positions'"):
        evaluate(model_dir, str(close))
    good = _write(tmp_path / "good.xyz", ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":3"))
    res = evaluate(model_dir, str(good))
    assert res["n_structures"] == 3 and all(math.isfinite(res[k]) for k in
                                            ("energy_mae", "energy_rmse", "force_mae"))


def test_evaluate_file_with_atoms_a_million_angstrom_apart(si, tmp_path):
    """Block D2 through evaluate: a clear error naming the frame, not a SIGFPE or a huge MAE.

    Depends on curate's validators refusing absurd coordinates (another part of issue 14).
    """
    import subprocess
    import sys

    _, model_dir = si
    far = tmp_path / "far.xyz"
    far.write_text('2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-10.0 pbc="F F F"\n'
                   "Si 1000000 0 0 0 0 0\nSi 0 0 0 0 0 0\n")
    proc = subprocess.run([sys.executable, "-m", "pesdata.cli", "evaluate", str(far), "--model",
                           str(model_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode not in (0, 136, -8), proc.stderr
    assert "far.xyz: frame 0" in proc.stderr and "Traceback" not in proc.stderr


def test_a_nan_prediction_is_an_error_naming_the_frame(si, tmp_path):
    st, model_dir = si
    model, card = load_model(model_dir)
    model.coef_ = model.coef_.copy()
    model.coef_[0] = np.nan
    save_model(model, tmp_path / "nan", version=card["version"])
    frames = _write(tmp_path / "ok.xyz", ase.io.read(DATA / "mlearn" / "Si_test.extxyz", ":2"))
    with pytest.raises(ValidationError,
                       match=r"structure 0 \(.*ok.xyz#0\): the model's predicted energy is not"):
        evaluate(tmp_path / "nan", str(frames))
    r = CliRunner().invoke(app, ["evaluate", st.uri, "--model", str(tmp_path / "nan"), "--json"])
    assert r.exit_code != 0 and "not finite" in r.stderr and "NaN" not in r.stdout


class _NaNForces:
    """A model stub whose energies are finite and whose force on atom 2 (y) is NaN."""

    def predict(self, images, forces=False):
        f = [np.zeros((len(a), 3)) for a in images]
        f[1][2, 1] = np.nan
        return np.full(len(images), -1.0), f


def test_non_finite_predicted_forces_quote_the_force_not_the_energy():
    images = emt(2, 4)
    images[1].info["source"] = "cu.xyz#7"
    with pytest.raises(ValidationError) as info:
        predict_metrics(_NaNForces(), images)
    assert str(info.value) == ("structure 1 (cu.xyz#7): the model's predicted forces are not "
                               "finite (atom 2, y: nan eV/Å); no metrics computed")


def test_a_damaged_descriptor_cache_is_an_error_not_a_silent_recompute(tmp_path):
    """Depends on load_descriptors raising ArtefactNotFound for a miss (descriptors part)."""
    st = pesdata.open_store(tmp_path / "s", create=True)
    st.curate(emt(4, 10), method="EMT")
    desc = pesdata.descriptors.from_config(CU_ACSF_SMALL_CONFIG)
    fresh = StructureDataset.from_store(st, desc, dtype=torch.float64)  # no cache: computed
    describe(st, desc)
    cached = StructureDataset.from_store(st, desc, dtype=torch.float64)
    assert torch.allclose(cached.g, fresh.g, rtol=0, atol=1e-12)
    root = next(p for p in (tmp_path / "s" / "arrays").iterdir() if p.is_dir())
    for seg in [p for p in root.iterdir() if p.name.startswith("seg-")]:
        shutil.rmtree(seg)  # the index still names it
    with pytest.raises(StoreCorruptError, match="segment"):
        StructureDataset.from_store(st, desc, dtype=torch.float64)
