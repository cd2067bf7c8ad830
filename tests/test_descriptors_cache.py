"""`pesdata describe`: Zarr cache content-addressed by structure id + config hash."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.descriptors import ACSF, _cache, describe, from_config, load_descriptors
from pesdata.errors import (
    ArtefactNotFound,
    InputError,
    ParameterError,
    SchemaError,
    StoreCorruptError,
)

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
    with pytest.raises(ArtefactNotFound, match="20 structure.*no cached acsf descriptors"):
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
    with pytest.raises(InputError, match="missing.json: cannot read descriptor config"):
        from_config(tmp_path / "missing.json")  # more in test_from_config_file_errors_...


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


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "8"])
def test_describe_refuses_bad_batch_size_and_writes_nothing(tio2_store, bad):
    st, _ = tio2_store
    with pytest.raises(ParameterError, match=f"batch_size must be a positive integer, got "
                                             f"{bad!r}") as info:
        describe(st, from_config(CONFIG), batch_size=bad)
    assert isinstance(info.value, ValueError)
    assert not (Path(st.uri) / "arrays").exists()


def test_describe_refuses_other_bad_arguments(tio2_store):
    st, _ = tio2_store
    with pytest.raises(ParameterError, match="descriptor must be a pesdata Descriptor, got dict"):
        describe(st, CONFIG)
    with pytest.raises(ParameterError, match="progress must be callable, got 3"):
        describe(st, from_config(CONFIG), progress=3)
    with pytest.raises(ParameterError, match="descriptor must be a pesdata Descriptor"):
        load_descriptors(st, "acsf")


@pytest.mark.parametrize("bad", ["-5", "0"])
def test_describe_cli_refuses_bad_batch_size(tio2_store, bad):
    st, tmp = tio2_store
    (tmp / "acsf.json").write_text(json.dumps(CONFIG))
    result = CliRunner().invoke(app, ["describe", st.uri, "--descriptor", str(tmp / "acsf.json"),
                                      "--batch-size", bad])
    assert result.exit_code == ParameterError.exit_code, result.output
    assert f"batch_size must be a positive integer, got {bad}" in result.stderr
    assert "described" not in result.stdout


def test_load_descriptors_not_cached_is_a_lookup_error(tio2_store):
    st, _ = tio2_store
    acsf = from_config(CONFIG)
    with pytest.raises(LookupError, match="30 structure"):  # never described
        load_descriptors(st, acsf)
    describe(st, acsf)
    other = from_config({**CONFIG, "r_cut": 4.0})  # another config: another cache group
    with pytest.raises(ArtefactNotFound, match=other.config_hash):
        load_descriptors(st, other)


def _described(tio2_store):
    st, _ = tio2_store
    acsf = from_config(CONFIG)
    describe(st, acsf, batch_size=10)
    root = Path(st.uri) / "arrays" / acsf.config_hash
    return st, acsf, root


def test_index_naming_a_missing_segment_is_corruption(tio2_store):
    import shutil

    st, acsf, root = _described(tio2_store)
    seg = sorted(p.name for p in root.glob("seg-*"))[1]
    shutil.rmtree(root / seg)
    with pytest.raises(StoreCorruptError, match=f"{root / seg}: segment named by the .* index "
                                                f"is missing") as info:
        load_descriptors(st, acsf)
    assert isinstance(info.value, OSError) and isinstance(info.value.__cause__, KeyError)


def test_segment_with_missing_chunks_is_corruption(tio2_store):
    import shutil

    st, acsf, root = _described(tio2_store)
    seg = sorted(p.name for p in root.glob("seg-*"))[0]
    shutil.rmtree(root / seg / "c")  # the data, not the metadata: zarr alone would read zeros
    with pytest.raises(StoreCorruptError, match=f"{seg}: segment data is incomplete"):
        load_descriptors(st, acsf)


def test_unreadable_index_is_corruption(tio2_store):
    st, acsf, root = _described(tio2_store)
    index = sorted((root / "index").glob("*.parquet"))[0]
    index.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(StoreCorruptError, match=f"{index.name}: unreadable descriptor cache "
                                                f"index") as info:
        load_descriptors(st, acsf)
    assert info.value.__cause__ is not None


def test_index_rows_beyond_the_segment_are_corruption(tio2_store):
    import pyarrow.parquet as pq

    st, acsf, root = _described(tio2_store)
    index = sorted((root / "index").glob("*.parquet"))[0]
    table = pq.read_table(index).to_pandas()
    table.loc[0, "first_row"] = 10_000
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), index)
    with pytest.raises(StoreCorruptError, match="rows 10000..*does not hold"):
        load_descriptors(st, acsf)


def test_index_commit_is_atomic_and_leaves_no_temporary(tio2_store, monkeypatch):
    st, acsf, root = _described(tio2_store)
    names = {p.name for p in (root / "index").iterdir()}
    assert names and all(n.endswith(".parquet") and not n.startswith(".") for n in names)

    def half_written(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half")  # a crash in the middle of the write
        raise OSError("disk full")

    st.curate(tio2_store[1] / "tio2_40.xyz", method="PBE")
    monkeypatch.setattr(_cache.pq, "write_table", half_written)
    with pytest.raises(OSError, match="disk full"):
        describe(st, acsf, batch_size=10)
    assert {p.name for p in (root / "index").iterdir()} == names  # no temporary, no entry
    monkeypatch.undo()
    assert describe(st, acsf)["computed"] == 10  # the failed batch is computed again
    np.testing.assert_array_equal(load_descriptors(st, acsf)["features"],
                                  acsf.compute(st.read().to_atoms()).numpy())


def test_from_config_value_errors_are_schema_errors_and_argument_errors_are_not(tmp_path):
    with pytest.raises(SchemaError,
                       match="descriptor config: unknown chemical symbol 'Xx'") as info:
        from_config({**CONFIG, "species": ["O", "Xx"]})
    assert isinstance(info.value.__cause__, ParameterError)
    with pytest.raises(SchemaError, match="descriptor config: g4_params must be finite") as info:
        from_config({**CONFIG, "g4_params": [[0.01, 1, float("nan")]]})
    with pytest.raises(ParameterError, match="unknown device 'tpu:0'"):
        from_config(CONFIG, device="tpu:0")
    with pytest.raises(ParameterError, match="dtype must be torch.float32 or torch.float64"):
        from_config(CONFIG, dtype=np.float16)



def test_from_config_file_errors_name_the_file(tio2_store, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match=r"bad.json: cannot read descriptor config "
                                         r"\(JSONDecodeError: ") as info:
        from_config(tmp_path / "bad.json")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    assert info.value.path == str(tmp_path / "bad.json") and info.value.exit_code == 2
    with pytest.raises(InputError, match=r"nope.json: cannot read descriptor config "
                                         r"\(FileNotFoundError: No such file") as info:
        from_config(tmp_path / "nope.json")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    (tmp_path / "short.json").write_text(json.dumps({**CONFIG, "g2_params": [[1.0]]}))
    with pytest.raises(SchemaError, match=r"short.json' invalid at g2_params/0"):
        from_config(tmp_path / "short.json")
    (tmp_path / "nan.json").write_text(json.dumps({**CONFIG, "species": ["O", "Xx"]}))
    with pytest.raises(SchemaError,
                       match=r"nan.json: descriptor config: unknown chemical symbol 'Xx'"):
        from_config(tmp_path / "nan.json")
    st, _ = tio2_store
    result = CliRunner().invoke(app, ["describe", st.uri, "--descriptor",
                                      str(tmp_path / "bad.json")])
    assert result.exit_code == 2, result.output
    assert "bad.json: cannot read descriptor config" in result.stderr
