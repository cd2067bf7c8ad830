"""Splits: sklearn protocol, invariants (coverage, no overlap, groups whole, determinism),
manifests pinned to versions."""

import json

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.errors import PesdataError
from pesdata.split import (
    Bootstrap,
    HoldOut,
    KFold,
    LeaveOneGroupOut,
    LeaveOneOut,
    RepeatedLearningTest,
    load_split,
    make_split,
)

from .conftest import DATA


@pytest.fixture(scope="module")
def si(tmp_path_factory):
    """mlearn Si training data: 214 frames in 4 groups (Elastic, Surface, Vacancy, AIMD-NVT)."""
    st = pesdata.open_store(tmp_path_factory.mktemp("split") / "s", create=True)
    st.curate(DATA / "mlearn/Si_training.extxyz", method="PBE")
    return st


def _ids(st):
    return st.read().to_pandas().set_index("id")


@pytest.mark.parametrize(
    ("strategy", "kw", "n_folds"),
    [("holdout", {}, 1), ("kfold", {"k": 4}, 4), ("rlt", {"repeats": 3}, 3),
     ("kfold", {"k": 3, "group_by": "group"}, 3), ("logo", {"group_by": "group"}, 4),
     ("holdout", {"group_by": "group", "test_size": 0.25}, 1),
     ("kfold", {"k": 5, "stratify_by": "group"}, 5), ("bootstrap", {"repeats": 4}, 4)],
)
def test_invariants(si, strategy, kw, n_folds):
    m = make_split(si, "t", strategy, save=False, seed=3, **kw)
    df = _ids(si)
    assert m["version"] == si.version and len(m["folds"]) == n_folds
    tested = []
    for fold in m["folds"]:
        train, test = set(fold["train"]), set(fold["test"])
        assert train and test and not (train & test)
        if strategy != "bootstrap":
            assert train | test == set(df.index)  # every structure on one side
        if "group_by" in kw:
            assert not set(df.loc[list(train), "group"]) & set(df.loc[list(test), "group"])
        tested += fold["test"]
    if strategy in ("kfold", "logo"):
        assert sorted(tested) == sorted(df.index)  # each structure tested exactly once
    assert make_split(si, "t", strategy, save=False, seed=3, **kw)["folds"] == m["folds"]
    if strategy != "logo":
        assert make_split(si, "t", strategy, save=False, seed=4, **kw)["folds"] != m["folds"]


def test_stratified_holdout_keeps_proportions(si):
    m = make_split(si, "s", "holdout", stratify_by="group", test_size=0.25, save=False)
    df = _ids(si)
    whole = df["group"].value_counts(normalize=True)
    test = df.loc[m["folds"][0]["test"], "group"].value_counts(normalize=True)
    assert (abs(whole - test) < 0.05).all()


def test_same_geometry_other_method_never_straddles(tmp_path):
    from ase.io import read

    st = pesdata.open_store(tmp_path / "s", create=True)
    frames = read(DATA / "mlearn/Si_test.extxyz", ":")
    st.curate(frames, method="PBE")
    relabelled = []
    for a in frames[:10]:
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy() + 1.0)
        relabelled.append(b)
    st.curate(relabelled, method="SCAN")  # same geometries, another method: new rows
    geo = st.read().table(columns=["id", "geometry_hash"]).to_pandas().set_index("id")
    for seed in range(5):
        for fold in make_split(st, "g", "kfold", k=5, seed=seed, save=False)["folds"]:
            a = set(geo.loc[fold["train"], "geometry_hash"])
            b = set(geo.loc[fold["test"], "geometry_hash"])
            assert not a & b


def test_manifest_is_saved_validated_and_pinned(si, tmp_path):
    m = make_split(si, "main", "kfold", k=3, group_by="group")
    assert load_split(si, "main") == json.loads(json.dumps(m))
    assert load_split(si, "main", version=si.version)["folds"] == m["folds"]
    st = pesdata.open_store(tmp_path / "s2", create=True)
    st.curate(DATA / "mlearn/Si_training.extxyz", method="PBE")
    st.curate(DATA / "mlearn/Si_test.extxyz", method="PBE")
    make_split(st, "v2", "holdout", version=2)
    with pytest.raises(PesdataError, match="pinned to version 2, not 3"):
        load_split(st, "v2", version=3)
    assert load_split(st, "v2", version=3, allow_other_version=True)["version"] == 2
    with pytest.raises(PesdataError, match="exists"):
        make_split(st, "v2", "holdout")


def test_errors_are_clear(si):
    with pytest.raises(PesdataError, match="unknown split strategy 'nope'"):
        make_split(si, "x", "nope", save=False)
    with pytest.raises(PesdataError, match="cannot split by 'colour'"):
        make_split(si, "x", "kfold", group_by="colour", save=False)
    for strategy in ("rlt", "bootstrap"):
        with pytest.raises(PesdataError, match="repeats must be a positive integer, got 0"):
            make_split(si, "x", strategy, repeats=0, save=False)
    with pytest.raises(PesdataError, match="needs groups"):
        LeaveOneGroupOut().get_n_splits(np.arange(4))
    with pytest.raises(PesdataError, match="cannot make a kfold split"):
        make_split(si, "x", "kfold", k=10, group_by="group", save=False)  # only 4 groups


def test_sklearn_compatibility():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    groups = np.repeat(np.arange(12), 5)
    for cv in (HoldOut(0.3), KFold(4), RepeatedLearningTest(3), LeaveOneGroupOut(),
               Bootstrap(3), LeaveOneOut()):
        scores = cross_val_score(Ridge(), X, y, cv=cv, groups=groups,
                                 scoring="neg_mean_squared_error")
        assert len(scores) == cv.get_n_splits(X, y, groups) and np.isfinite(scores).all()
    assert "KFold(n_splits=4" in repr(KFold(4))


def test_cli_json_shape(si):
    result = CliRunner().invoke(
        app, ["split", si.uri, "--name", "cli", "--strategy", "kfold", "--k", "3",
              "--group-by", "group", "--seed", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"name", "version", "strategy", "folds"}
    assert out["strategy"] == "kfold" and len(out["folds"]) == 3
    assert set(out["folds"][0]) == {"train", "test"}
    bad = CliRunner().invoke(app, ["split", si.uri, "--name", "x", "--strategy", "nope"])
    assert bad.exit_code == 1 and "unknown split strategy" in bad.stderr
