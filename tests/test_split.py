"""Splits: sklearn protocol, invariants (coverage, no overlap, groups whole, determinism),
manifests pinned to versions."""

import json
import multiprocessing

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.errors import ArtefactError, ArtefactNotFound, ParameterError
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
    with pytest.raises(ParameterError, match="pinned to version 2, not 3"):
        load_split(st, "v2", version=3)
    assert load_split(st, "v2", version=3, allow_other_version=True)["version"] == 2
    with pytest.raises(ArtefactError, match="exists"):
        make_split(st, "v2", "holdout")
    with pytest.raises(ArtefactNotFound, match="no split artefact named 'nope'"):
        load_split(st, "nope")


def test_errors_are_clear(si):
    with pytest.raises(ParameterError, match="unknown split strategy 'nope'"):
        make_split(si, "x", "nope", save=False)
    with pytest.raises(ParameterError, match="cannot split by 'colour'"):
        make_split(si, "x", "kfold", group_by="colour", save=False)
    for strategy in ("rlt", "bootstrap"):
        with pytest.raises(ParameterError, match="repeats must be a positive integer, got 0"):
            make_split(si, "x", strategy, repeats=0, save=False)
    with pytest.raises(ParameterError, match="needs groups"):
        LeaveOneGroupOut().get_n_splits(np.arange(4))
    with pytest.raises(ParameterError, match="cannot make a kfold split"):
        make_split(si, "x", "kfold", k=10, group_by="group", save=False)  # only 4 groups


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"repeats": float("nan")}, "repeats must be a positive integer, got nan"),
     ({"repeats": "3"}, "repeats must be a positive integer, got '3'"),
     ({"repeats": 2.5}, "repeats must be a positive integer, got 2.5"),
     ({"k": 1}, "k must be an integer ≥ 2 (folds), got 1"),
     ({"k": True}, "k must be an integer ≥ 2 (folds), got True"),
     ({"test_size": 1.0}, "test_size must be a fraction in (0, 1), got 1.0"),
     ({"test_size": float("inf")}, "test_size must be a fraction in (0, 1), got inf"),
     ({"test_size": "0.2"}, "test_size must be a fraction in (0, 1), got '0.2'"),
     ({"seed": -1}, "seed must be an integer ≥ 0, got -1"),
     ({"seed": None}, "seed must be an integer ≥ 0, got None")],
)
def test_bad_numeric_arguments_quote_the_value(si, kw, message):
    strategy = "kfold" if "k" in kw else "rlt"
    with pytest.raises(ParameterError) as info:
        make_split(si, "x", strategy, save=False, **kw)
    assert str(info.value) == message
    assert "x" not in si.artefacts.list("split")


def test_whole_float_arguments_are_recorded_as_ints(si):
    m = make_split(si, "x", "rlt", repeats=2.0, seed=3.0, save=False)
    assert len(m["folds"]) == 2 and m["params"]["repeats"] == 2 and m["seed"] == 3
    assert isinstance(m["params"]["repeats"], int) and isinstance(m["seed"], int)


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
    assert bad.exit_code == 2 and "unknown split strategy" in bad.stderr  # a bad argument


def _tamper(st, name, edit):
    path = st.root + f"/artefacts/split/{name}.json"
    doc = json.loads(open(path).read())
    edit(doc)
    with open(path, "w") as fh:
        json.dump(doc, fh)


def test_a_hand_edited_leaking_manifest_is_refused_on_load(si, tmp_path):
    """Block D14: a test structure copied into training is caught when the split is used."""
    import shutil

    shutil.copytree(si.uri, tmp_path / "s")
    st = pesdata.open_store(tmp_path / "s")
    m = make_split(st, "cv", "kfold", k=3, group_by="group")
    leaked = m["folds"][1]["test"][0]
    _tamper(st, "cv", lambda d: d["folds"][1]["train"].append(leaked))
    with pytest.raises(ArtefactError, match=rf"split 'cv' fold 1: id {leaked} is in both parts"):
        load_split(st, "cv")
    # the same geometry under another id: the geometry_hash invariant, not only the ids
    df = st.read().table(columns=["id", "geometry_hash"]).to_pandas()
    _tamper(st, "cv", lambda d: d["folds"][1]["train"].remove(leaked))
    assert load_split(st, "cv")["folds"] == m["folds"]
    # a whole group moved into training for one structure: the group_by invariant
    group_of = st.read().to_pandas().set_index("id")["group"]
    other = next(i for i in m["folds"][0]["test"] if group_of[i] != group_of[leaked])

    def move(d):
        d["folds"][0]["test"].remove(other)
        d["folds"][0]["train"].append(other)
    _tamper(st, "cv", move)
    with pytest.raises(ArtefactError,
                       match=rf"fold 0: test id \w+ is in group '{group_of[other]}'"):
        load_split(st, "cv")

    def restore_and_add_unknown(d):
        d["folds"][0] = m["folds"][0]
        d["folds"][2]["test"].append("0" * 64)
    _tamper(st, "cv", restore_and_add_unknown)
    with pytest.raises(ArtefactError, match="fold 2: id 0{64} is not in version"):
        load_split(st, "cv")
    assert set(df["id"]) == set(group_of.index)


def test_a_geometry_on_both_sides_is_refused_on_load(tmp_path):
    from ase.io import read

    st = pesdata.open_store(tmp_path / "s", create=True)
    frames = read(DATA / "mlearn/Si_test.extxyz", ":6")
    st.curate(frames, method="PBE")
    twin = frames[0].copy()
    twin.calc = SinglePointCalculator(twin, energy=frames[0].get_potential_energy() + 1.0)
    st.curate([twin], method="SCAN")  # same geometry, another method: another id
    table = st.read().table(columns=["id", "geometry_hash", "method"]).to_pandas()
    pbe = table[(table.method == "PBE")]
    geo = table.groupby("geometry_hash")["id"].apply(list)
    a, b = next(ids for ids in geo if len(ids) == 2)
    m = make_split(st, "ho", "holdout", test_size=0.3)
    side = "train" if a in m["folds"][0]["train"] else "test"
    other = "test" if side == "train" else "train"

    def split_twins(d):
        d["folds"][0][side].remove(b)
        d["folds"][0][other].append(b)
    _tamper(st, "ho", split_twins)
    with pytest.raises(ArtefactError, match=r"fold 0: test id \w+ shares its geometry"):
        load_split(st, "ho")
    assert len(pbe) == 6


def _make_named_split(uri, seed, results):
    """Child process (spawn): one make_split call; reports success or the error class."""
    store = pesdata.open_store(uri)
    try:
        make_split(store, "race", "kfold", k=3, seed=seed)
        results.put(("ok", seed))
    except ArtefactError as exc:
        results.put(("exists", str(exc)))


def test_concurrent_make_split_with_one_name_exactly_one_wins(tmp_path):
    st = pesdata.open_store(tmp_path / "s", create=True)
    st.curate(DATA / "mlearn/Si_test.extxyz", method="PBE")
    ctx = multiprocessing.get_context("spawn")  # Lance is not fork-safe
    results = ctx.Queue()
    procs = [ctx.Process(target=_make_named_split, args=(st.uri, seed, results))
             for seed in range(3)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    winners = [o for o in outcomes if o[0] == "ok"]
    assert len(winners) == 1, outcomes
    assert all("exists" in msg for kind, msg in outcomes if kind == "exists")
    kept = load_split(st, "race")
    again = make_split(st, "race", "kfold", k=3, seed=winners[0][1], save=False)
    assert kept["folds"] == again["folds"]  # the manifest on disk is the winner's


def test_bad_split_arguments_are_parameter_errors(si):
    with pytest.raises(ParameterError, match="unknown split strategy"):
        make_split(si, "x", "nope", save=False)
    with pytest.raises(ValueError, match="cannot split by"):  # ParameterError is a ValueError
        make_split(si, "x", "kfold", group_by="colour", save=False)


@pytest.mark.parametrize(
    ("strategy", "kw"),
    [("holdout", {}), ("kfold", {"k": 3}), ("loo", {}), ("logo", {"group_by": "config_type"}),
     ("rlt", {"repeats": 2}), ("bootstrap", {"repeats": 3}),
     ("kfold", {"k": 2, "group_by": "config_type"}), ("bootstrap", {"group_by": "config_type"})],
)
def test_every_strategy_saves_a_manifest_that_loads(tmp_path, strategy, kw):
    """Genuine manifests pass the load checks; a bootstrap's train part repeats ids."""
    from ase.io import read

    st = pesdata.open_store(tmp_path / "s", create=True)
    frames = read(DATA / "mlearn/Si_test.extxyz", ":12")
    for k, a in enumerate(frames):
        a.info["config_type"] = "abc"[k % 3]
    st.curate(frames, method="PBE")
    m = make_split(st, "m", strategy, seed=1, **kw)
    assert load_split(st, "m")["folds"] == m["folds"]
    if strategy == "bootstrap":
        assert any(len(set(f["train"])) < len(f["train"]) for f in m["folds"])


def test_empty_parts_and_repeated_ids_are_refused_on_load(si, tmp_path):
    """A fold with an empty test part (metrics on training data) or an id listed twice in one
    part is refused when the split is loaded, and by ``train --split --fold``."""
    import shutil

    shutil.copytree(si.uri, tmp_path / "s")
    st = pesdata.open_store(tmp_path / "s")
    m = make_split(st, "cv", "kfold", k=3)
    _tamper(st, "cv", lambda d: d["folds"][1].update(test=[]))
    with pytest.raises(ArtefactError, match=r"^split 'cv' fold 1: the test part is empty$"):
        load_split(st, "cv")
    r = CliRunner().invoke(app, ["train", st.uri, "--out", str(tmp_path / "model"),
                                 "--split", "cv", "--fold", "1", "--epochs", "1"])
    assert r.exit_code == 1 and "split 'cv' fold 1: the test part is empty" in r.stderr
    assert not (tmp_path / "model").exists()
    _tamper(st, "cv", lambda d: d["folds"][0].update(train=[]))
    with pytest.raises(ArtefactError, match=r"fold 0: the train part is empty"):
        load_split(st, "cv")
    twice = m["folds"][2]["train"][5]

    def repeat(d):
        d["folds"] = m["folds"]
        d["folds"][2]["train"].append(twice)
    _tamper(st, "cv", repeat)
    with pytest.raises(ArtefactError, match=rf"^split 'cv' fold 2: id {twice} is listed 2 times "
                                            rf"in the train part$"):
        load_split(st, "cv")
    boot = make_split(st, "boot", "bootstrap", repeats=2)
    assert load_split(st, "boot")["folds"] == boot["folds"]  # train repeats: a resample
    again = boot["folds"][1]["test"][0]
    _tamper(st, "boot", lambda d: d["folds"][1]["test"].append(again))
    with pytest.raises(ArtefactError, match=rf"fold 1: id {again} is listed 2 times in the test"):
        load_split(st, "boot")


def test_a_bootstrap_without_out_of_bag_structures_is_refused(tmp_path):
    from ase.io import read

    st = pesdata.open_store(tmp_path / "s", create=True)
    st.curate(read(DATA / "mlearn/Si_test.extxyz", ":1"), method="PBE")
    with pytest.raises(ParameterError, match="a bootstrap needs at least 2 structures"):
        make_split(st, "b", "bootstrap", repeats=2)
    assert "b" not in st.artefacts.list("split")
