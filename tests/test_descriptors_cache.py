"""`pesdata describe`: Zarr cache content-addressed by structure id + config hash."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.descriptors import ACSF, _cache, describe, from_config, load_descriptors
from pesdata.errors import PesdataError, SchemaError

from .conftest import DATA

CONFIG = {"descriptor": "acsf", "species": ["O", "Ti"], "r_cut": 4.5,
          "g2_params": [[0.5, 0.0], [0.1, 2.0]], "g4_params": [[0.01, 1, 1], [0.01, 2, -1]]}


@pytest.fixture
def tio2_store(tmp_path):
    st = pesdata.open_store(tmp_path / "s", create=True)
    lines = (DATA / "tio2/TiO2_aenet_subset.extxyz").read_text().splitlines(keepends=True)
    # the first 30 frames, written as their own file
    out, k, frames = [], 0, 0
    while frames < 30:
        n = int(lines[k])
        out += lines[k : k + n + 2]
        k += n + 2
        frames += 1
    (tmp_path / "tio2_30.xyz").write_text("".join(out))
    (tmp_path / "tio2_40.xyz").write_text("".join(lines[:k] + _more(lines, k, 10)))
    st.curate(tmp_path / "tio2_30.xyz", method="PBE")
    return st, tmp_path


def _more(lines, k, n_frames):
    out = []
    for _ in range(n_frames):
        n = int(lines[k])
        out += lines[k : k + n + 2]
        k += n + 2
    return out


def test_describe_caches_and_matches_direct_compute(tio2_store):
    st, tmp = tio2_store
    acsf = from_config(CONFIG)
    first = describe(st, acsf, batch_size=7)
    assert (first["computed"], first["cached"]) == (30, 0)
    got = load_descriptors(st, acsf)
    direct = acsf.compute(st.read().to_atoms()).numpy()
    np.testing.assert_array_equal(got["features"], direct)
    assert got["features"].shape == (sum(len(a) for a in st.read().to_atoms()), acsf.n_features)
    assert set(got["numbers"].tolist()) == {8, 22}
    assert got["structure"][-1] == 29
    # a new version computes only its new structures
    st.curate(tmp / "tio2_40.xyz", method="PBE")
    second = describe(st, acsf, batch_size=7)
    assert (second["computed"], second["cached"]) == (10, 30)
    assert (describe(st, acsf)["computed"]) == 0
    np.testing.assert_array_equal(
        load_descriptors(st, acsf)["features"], acsf.compute(st.read().to_atoms()).numpy()
    )
    # the old version still reads from the same cache
    assert load_descriptors(st, acsf, version=2)["features"].shape == direct.shape


def test_killed_run_resumes_without_recomputing(tio2_store, monkeypatch):
    st, _ = tio2_store
    acsf = from_config(CONFIG)
    real = _cache._write_segment
    calls = []

    def dies_on_third(*args):
        calls.append(1)
        if len(calls) == 3:  # killed while writing the third segment: half-written array
            args[1].create_array("seg-orphan", shape=(3, 2), dtype="float64")
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(_cache, "_write_segment", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        describe(st, acsf, batch_size=5)
    monkeypatch.setattr(_cache, "_write_segment", real)
    with pytest.raises(PesdataError, match="no cached acsf descriptors"):
        load_descriptors(st, acsf)
    resumed = describe(st, acsf, batch_size=5)
    assert (resumed["cached"], resumed["computed"]) == (10, 20)
    np.testing.assert_array_equal(
        load_descriptors(st, acsf)["features"], acsf.compute(st.read().to_atoms()).numpy()
    )


def test_config_validation_and_hash(tmp_path):
    a = from_config(CONFIG)
    assert isinstance(a, ACSF) and a.config_hash == ACSF(**{
        k: v for k, v in CONFIG.items() if k != "descriptor"}).config_hash
    assert from_config(a.config()).config_hash == a.config_hash  # round trip
    with pytest.raises(SchemaError, match="r_cut"):
        from_config({**CONFIG, "r_cut": -1})
    with pytest.raises(SchemaError, match="g2_params"):
        from_config({**CONFIG, "g2_params": [[1.0]]})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SchemaError, match="bad.json"):
        from_config(tmp_path / "bad.json")


def test_describe_cli_json(tio2_store):
    st, tmp = tio2_store
    (tmp / "acsf.json").write_text(json.dumps(CONFIG))
    result = CliRunner().invoke(
        app, ["describe", st.uri, "--descriptor", str(tmp / "acsf.json"), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["computed"] == 30 and out["config_hash"] == from_config(CONFIG).config_hash
    bad = CliRunner().invoke(app, ["describe", st.uri, "--descriptor", str(tmp / "nope.json")])
    assert bad.exit_code != 0 and "nope.json" in bad.stderr


def test_ptsd_config_round_trip_and_cache(tio2_store):
    from pesdata.descriptors import PTSD

    st, _ = tio2_store
    ptsd = from_config({"descriptor": "ptsd", "species": ["O", "Ti"], "r_cut": 4.0,
                        "s1": [[0], [2]], "s2": [[0, 2]], "s3": [], "s4": [[0, 0, 1, 1]],
                        "s5": [], "s6": []})
    assert isinstance(ptsd, PTSD) and from_config(ptsd.config()).config_hash == ptsd.config_hash
    with pytest.raises(SchemaError):
        from_config({"descriptor": "ptsd", "species": ["O"], "r_cut": 4.0, "g2_params": []})
    assert describe(st, ptsd)["computed"] == 30
    np.testing.assert_allclose(
        load_descriptors(st, ptsd)["features"], ptsd.compute(st.read().to_atoms()).numpy()
    )


def test_describe_names_every_missing_element_and_writes_nothing(tio2_store):
    st, _ = tio2_store
    only_o = from_config({**CONFIG, "species": ["O", "Si"]})
    with pytest.raises(SchemaError, match=r"element\(s\) Ti that"):
        describe(st, only_o)
    assert not (Path(st.uri) / "arrays").exists()
