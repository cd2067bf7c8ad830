"""Training a linear model on a store, checkpoints, `pesdata train` and `pesdata evaluate`."""

import json
import os
import re
from pathlib import Path

import ase.io
import pyarrow.parquet as pq
import pytest
import torch
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.errors import ArtefactError, OutputError, ParameterError, SchemaError
from pesdata.split import load_split, make_split
from pesdata.train import (
    cross_validate,
    evaluate,
    load_model,
    predict_metrics,
    save_model,
    train,
)

from .conftest import CU_ACSF_SMALL_CONFIG as CONFIG
from .conftest import emt


@pytest.fixture(scope="module")
def emt_store(tmp_path_factory):
    st = pesdata.open_store(tmp_path_factory.mktemp("train") / "s", create=True)
    st.curate(emt(24, 5), method="EMT")
    return st


def test_train_on_split_saves_card_and_checkpoint(emt_store, tmp_path):
    make_split(emt_store, "ho", "holdout", test_size=0.25, seed=1)
    card = train(emt_store, tmp_path / "m", split="ho", descriptor=CONFIG, model="linear")
    assert card["kind"] == "linear" and card["split"] == "ho" and card["metrics_on"] == "test"
    assert card["n_train"] == 18 and card["metrics"]["n_structures"] == 6
    assert card["metrics"]["energy_mae"] < 20 and card["metrics"]["force_mae"] < 1.0
    model, card2 = load_model(tmp_path / "m")
    assert card2 == card and model.descriptor.config_hash == card["descriptor_hash"]
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert set(state) == {"coef", "scale"}
    copies = [n for n in emt_store.artefacts.list("model_card") if n.startswith("m-v")]
    kept = emt_store.artefacts.load("model_card", copies[-1])
    assert kept.pop("path") == str((tmp_path / "m").resolve()) and kept == card
    res = evaluate(tmp_path / "m", f"{emt_store.uri}@{emt_store.version}")
    expected, _ = predict_metrics(model, emt_store.read().to_atoms())  # the same 24 images
    assert res["n_structures"] == expected["n_structures"] == 24
    for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse"):
        assert res[key] == pytest.approx(expected[key], rel=1e-9)
    assert res["energy_mae"] > 0


def test_bad_checkpoints_are_clear_errors(emt_store, tmp_path):
    with pytest.raises(ArtefactError, match="not a pesdata model directory"):
        load_model(tmp_path)
    train(emt_store, tmp_path / "m", descriptor=CONFIG, model="linear")
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    card["descriptor"]["r_cut"] = 5.0  # the weights belong to another descriptor
    (tmp_path / "m" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ArtefactError, match="does not match"):
        load_model(tmp_path / "m")
    card["descriptor"]["r_cut"] = CONFIG["r_cut"]
    card["n_weights"] = -1  # fails schemas/model_card.json before any weight is read
    (tmp_path / "m" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ArtefactError, match=r"model_card.json: .*n_weights"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ArtefactError, match="cannot read"):
        load_model(tmp_path / "m")
    with pytest.raises(ParameterError, match="unknown model 'gap'"):
        train(emt_store, tmp_path / "x", model="gap")
    with pytest.raises(ParameterError, match="linear model takes no epochs"):
        train(emt_store, tmp_path / "x", model="linear", params={"epochs": 3})


def test_training_messages_name_the_structure_by_its_source(emt_store, tmp_path):
    with pytest.raises(SchemaError, match=r"^structure 0 \(<memory>#0\): atomic number\(s\) "
                                          r"\[29\] not in the descriptor's species \[47\]$"):
        train(emt_store, tmp_path / "m", descriptor={**CONFIG, "species": ["Ag"]},
              model="linear")
    assert not (tmp_path / "m").exists()


def test_cli_train_and_evaluate_json(emt_store, tmp_path):
    (tmp_path / "acsf.json").write_text(json.dumps(CONFIG))
    runner = CliRunner()
    r = runner.invoke(app, ["train", emt_store.uri, "--out", str(tmp_path / "m"),
                            "--descriptor", str(tmp_path / "acsf.json"), "--json",
                            "--model", "linear"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics_on"] == "train"
    test_file = tmp_path / "test.xyz"
    ase.io.write(test_file, emt(4, 11), format="extxyz")
    r = runner.invoke(app, ["evaluate", str(test_file), "--model", str(tmp_path / "m"),
                            "--json", "--parity", str(tmp_path / "p.parquet")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out) == {"n_structures", "energy_mae", "energy_rmse", "force_mae", "force_rmse"}
    assert out["n_structures"] == 4 and out["force_rmse"] >= out["force_mae"]
    parity = pq.read_table(tmp_path / "p.parquet")
    assert parity.num_rows == 4 and len(parity.column("forces_pred")[0].as_py()) == 32
    r = runner.invoke(app, ["evaluate", str(test_file), "--model", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "not a pesdata model directory" in r.stderr


def test_cli_train_hdnn_defaults_and_committee(emt_store, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", emt_store.uri, "--out", str(tmp_path / "h"),
                            "--epochs", "30", "--json"])
    assert r.exit_code == 0, r.output
    card = json.loads(r.stdout)
    assert card["kind"] == "hdnn" and card["descriptor"]["descriptor"] == "acsf"
    assert card["params"]["epochs"] == 30 and card["training"][0]["epochs"] <= 30
    assert card["metrics"]["force_mae"] is not None
    r = runner.invoke(app, ["train", emt_store.uri, "--out", str(tmp_path / "c"),
                            "--model", "committee", "--members", "2", "--epochs", "5",
                            "--descriptor", str(_config(tmp_path))])
    assert r.exit_code == 0, r.output
    assert "committee model on version" in r.stdout
    model, card = load_model(tmp_path / "c")
    assert len(model.members) == 2 and len(card["training"]) == 2
    r = runner.invoke(app, ["train", emt_store.uri, "--out", str(tmp_path / "x"),
                            "--members", "2"])
    assert r.exit_code != 0


def _config(tmp_path):
    path = tmp_path / "acsf.json"
    path.write_text(json.dumps(CONFIG))
    return path


def test_cv_reports_every_fold(emt_store, tmp_path):
    make_split(emt_store, "k3", "kfold", k=3, seed=0)
    df = cross_validate(emt_store, "k3", model="linear", descriptor=CONFIG)
    assert list(df["fold"]) == [0, 1, 2] and (df["n_test"] == 8).all()
    assert df.attrs["mean"]["energy_rmse"] == pytest.approx(df["energy_rmse"].mean())
    runner = CliRunner()
    r = runner.invoke(app, ["cv", emt_store.uri, "--split", "k3", "--epochs", "10",
                            "--descriptor", str(_config(tmp_path)), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["model"] == "hdnn" and len(out["folds"]) == 3
    assert set(out["mean"]) == {"energy_mae", "energy_rmse", "force_mae", "force_rmse"}
    assert out["folds"][0]["n_train"] == 16
    r = runner.invoke(app, ["cv", emt_store.uri, "--split", "k3", "--model", "linear"])
    assert r.exit_code == 0, r.output
    assert "mean ± std" in r.stdout
    assert re.search(r"│\s+0 │\s+16 │\s+8 │", r.stdout), r.stdout  # counts, not 16.0
    r = runner.invoke(app, ["cv", emt_store.uri, "--split", "nope"])
    assert r.exit_code != 0 and "nope" in r.stderr


def test_save_model_validates_the_card_before_writing(emt_store, tmp_path):
    train(emt_store, tmp_path / "m", descriptor=CONFIG, model="linear")
    model, _ = load_model(tmp_path / "m")
    with pytest.raises(ArtefactError, match="invalid at metrics_on"):
        save_model(model, tmp_path / "new", version=1, metrics_on="validation")
    assert not (tmp_path / "new").exists()


def test_model_directory_is_replaced_whole(emt_store, tmp_path, monkeypatch):
    first = train(emt_store, tmp_path / "m", descriptor=CONFIG, model="linear")
    other = train(emt_store, tmp_path / "o", descriptor=CONFIG, model="linear",
                  params={"alpha": 1.0})
    real_replace = os.replace

    def dies_on_the_swap(src, dst):  # the run is killed as the new directory moves in
        if Path(src).name.endswith(".tmp") and Path(dst) == tmp_path / "m":
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_on_the_swap)
    with pytest.raises(KeyboardInterrupt):
        train(emt_store, tmp_path / "m", descriptor=CONFIG, model="linear",
              params={"alpha": 1.0})
    monkeypatch.undo()
    _, card = load_model(tmp_path / "m")  # the previous model, whole
    assert card == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "o"]  # no staging left
    # weights from another run beside this card: the same size, caught by the hash
    (tmp_path / "m" / "model.pt").write_bytes((tmp_path / "o" / "model.pt").read_bytes())
    assert other["n_weights"] == first["n_weights"]
    with pytest.raises(ArtefactError, match="SHA-256"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.pt").write_bytes(b"")
    with pytest.raises(ArtefactError, match=r"cannot read the checkpoint \(\w+"):
        load_model(tmp_path / "m")


def test_bad_model_paths_fail_before_training(emt_store, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        train(emt_store, tmp_path / "file", descriptor=CONFIG, model="linear")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README").write_text("mine")
    with pytest.raises(OutputError, match="not a pesdata model directory"):
        train(emt_store, tmp_path / "notes", descriptor=CONFIG, model="linear")
    assert (tmp_path / "notes" / "README").read_text() == "mine"
    for out in ("file", "notes"):  # output paths that cannot be written: exit code 2
        r = CliRunner().invoke(app, ["train", emt_store.uri, "--out", str(tmp_path / out),
                                     "--model", "linear"])
        assert r.exit_code == 2 == OutputError.exit_code, r.output
        assert "choose another model path" in r.stderr
    assert (tmp_path / "file").read_text() == "x"
    card = train(emt_store, tmp_path / ".hidden", descriptor=CONFIG, model="linear")
    assert any(n.startswith("hidden-v") for n in emt_store.artefacts.list("model_card"))
    assert card["kind"] == "linear"
    with pytest.raises(ParameterError, match="fold 1 given without a split"):
        train(emt_store, tmp_path / "f", fold=1, model="linear")
    with pytest.raises(OutputError, match="its directory does not exist"):
        evaluate(tmp_path / ".hidden", emt_store.uri, parity=str(tmp_path / "no" / "p.parquet"))


def test_train_on_a_split_knows_the_elements_of_its_test_part(tmp_path):
    images = emt(6, 21)
    for atoms in emt(4, 22):  # Cu31Au cells, one group of their own: Au only in its test part
        atoms.numbers[0] = 79
        atoms.calc = EMT()
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        images.append(atoms)
    st = pesdata.open_store(tmp_path / "s", create=True)
    st.curate(images, method="EMT")
    make_split(st, "by-formula", "logo", group_by="composition")
    folds = load_split(st, "by-formula")["folds"]
    position = {i: k for k, i in enumerate(st.read().ids)}
    au_only_in_test = [k for k, f in enumerate(folds) if all(
        79 not in st.read().take([position[i]])[0].numbers for i in f["train"])]
    assert au_only_in_test
    card = train(st, tmp_path / "m", split="by-formula", fold=au_only_in_test[0],
                 model="linear")
    assert card["descriptor"]["species"] == [29, 79] and card["metrics_on"] == "test"
