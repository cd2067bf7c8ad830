"""Store faults: damaged manifests, errors that keep their cause, tags, artefacts written
atomically and race-free, and failed writes that leave no trace (issue 14 §3, §5; D13)."""

import json
import os
import re
import threading
from pathlib import Path

import lance
import pyarrow as pa
import pytest

import pesdata
from pesdata.errors import (
    ArtefactError,
    ArtefactNotFound,
    ParameterError,
    SchemaError,
    StoreCorruptError,
    TagExistsError,
    VersionNotFound,
)
from pesdata.store import artefact_kinds, validate_artefact

from .conftest import emt_cells


def _latest_manifest(store) -> Path:
    versions = Path(store.root) / "structures.lance" / "_versions"
    return min((p for p in versions.iterdir() if p.suffix == ".manifest"),
               key=lambda p: int(p.stem))  # V2 naming: u64::MAX - version


@pytest.fixture
def three_versions(tmp_path):
    store = pesdata.open_store(tmp_path / "s", create=True)
    store.curate(emt_cells(3, seed=1))
    store.curate(emt_cells(2, seed=2))
    assert store.version == 3
    return store


def test_damaged_latest_manifest_older_versions_still_readable(three_versions):
    store = three_versions
    manifest = _latest_manifest(store)
    os.truncate(manifest, 100)
    assert len(store.read(2)) == 3  # an explicit older version opens
    assert len(store.read("2")) == 3
    assert lance.dataset(store.table.uri, version=2).count_rows() == 3
    with pytest.raises(StoreCorruptError) as err:
        store.read()
    assert str(manifest) in str(err.value) and isinstance(err.value, OSError)
    assert err.value.__cause__ is not None  # Lance's error is chained
    with pytest.raises(StoreCorruptError):
        store.log()
    with pytest.raises(VersionNotFound, match="no version 99"):
        store.read(99)


def test_damaged_older_manifest_is_corruption_not_a_missing_version(three_versions):
    store = three_versions
    versions = sorted((Path(store.root) / "structures.lance" / "_versions").glob("*.manifest"),
                      key=lambda p: int(p.stem))
    os.truncate(versions[1], 50)  # version 2
    with pytest.raises(StoreCorruptError, match="version 2 of the structure table"):
        store.read(2)
    assert len(store.read(3)) == 5


def test_missing_version_and_tag_are_lookup_errors(three_versions):
    with pytest.raises(VersionNotFound) as err:
        three_versions.read(7)
    assert isinstance(err.value, LookupError) and "versions are 1..3" in str(err.value)
    with pytest.raises(VersionNotFound):
        three_versions.read("nosuchtag")


def test_tag_errors_are_specific(three_versions):
    store = three_versions
    store.tag("first", 2)
    with pytest.raises(TagExistsError, match="already names version 2"):
        store.tag("first", 3)
    for bad in ("", "12", "-3"):
        with pytest.raises(ParameterError):
            store.tag(bad)
    assert store.tags() == {"first": 2}


def test_history_messages_without_swallowing(three_versions):
    log = three_versions.log()
    assert log["version"].tolist() == [1, 2, 3]
    assert log["message"].tolist()[0] == "create store"


def test_missing_artefact_is_artefact_not_found(store):
    with pytest.raises(ArtefactNotFound) as err:
        store.artefacts.load("curate_report", "nope")
    assert isinstance(err.value, LookupError) and isinstance(err.value, ArtefactError)


def _report_doc(version=1):
    return {"version": version, "previous_version": 1, "files": [], "committed": False,
            "read": 0, "added": 0, "duplicates": 0, "relabelled": 0, "unlabelled": 0,
            "conflicts": [], "rejected": [], "rejected_by_reason": {}, "created": "now"}


def test_artefact_save_is_atomic_and_leaves_no_temp_file(store):
    path = Path(store.artefacts.save("curate_report", "r1", _report_doc()))
    assert json.loads(path.read_text())["version"] == 1
    with pytest.raises(ArtefactError, match="exists"):
        store.artefacts.save("curate_report", "r1", _report_doc(2))
    store.artefacts.save("curate_report", "r1", _report_doc(2), overwrite=True)
    assert json.loads(path.read_text())["version"] == 2
    with pytest.raises(ArtefactError, match="curate_report artefact 'r2' invalid at version"):
        store.artefacts.save("curate_report", "r2", {**_report_doc(), "version": "two"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["r1.json"]


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "a\\b", "nul\0"])
def test_an_unsafe_artefact_name_is_a_parameter_error(store, name):
    with pytest.raises(ParameterError,
                       match=rf"invalid curate_report artefact name {re.escape(repr(name))}"):
        store.artefacts.save("curate_report", name, _report_doc())
    with pytest.raises(ParameterError, match="invalid curate_report artefact name"):
        store.artefacts.load("curate_report", name)
    assert not (Path(store.root) / "artefacts" / "x.json").exists()
    assert store.artefacts.list("curate_report") == []


def test_an_unknown_artefact_kind_is_a_parameter_error_listing_the_kinds(store):
    known = ("curate_report, descriptor_config, export, loop, loop_config, model_card, queue, "
             "selection, split, trust")
    for call in (
        lambda: store.artefacts.save("ledger", "a", _report_doc()),
        lambda: store.artefacts.load("ledger", "a"),
        lambda: store.artefacts.list("ledger"),
        lambda: validate_artefact("ledger", {}),
        lambda: validate_artefact("structure", {}),  # the table's schema is no artefact kind
    ):
        with pytest.raises(ParameterError, match=f"unknown artefact kind .*; known kinds: {known}"):
            call()
    assert artefact_kinds() == known.split(", ")


def test_validate_names_the_artefact_when_told_where(store):
    with pytest.raises(ArtefactError, match=r"^curate_report artefact invalid at version: 'two'"):
        validate_artefact("curate_report", {**_report_doc(), "version": "two"})  # positional
    with pytest.raises(ArtefactError,
                       match=r"^curate_report artefact 'run.json' invalid at version: 'two'"):
        validate_artefact("curate_report", {**_report_doc(), "version": "two"},
                          where="run.json")
    bad = Path(store.root) / "artefacts" / "curate_report" / "hand-edited.json"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(json.dumps({**_report_doc(), "added": -1}))
    with pytest.raises(ArtefactError, match=r"curate_report artefact '.*hand-edited\.json' invalid "
                                            r"at added"):
        store.artefacts.load("curate_report", "hand-edited")


def test_concurrent_saves_of_one_name_exactly_one_wins(store):
    for round_ in range(20):
        name = f"race{round_}"
        barrier = threading.Barrier(4)
        outcomes = []

        def save(k, name=name, barrier=barrier, outcomes=outcomes):
            barrier.wait()
            try:
                store.artefacts.save("curate_report", name, _report_doc(k + 1))
                outcomes.append(("ok", k))
            except ArtefactError:
                outcomes.append(("exists", k))

        threads = [threading.Thread(target=save, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [k for what, k in outcomes if what == "ok"]
        assert len(winners) == 1
        doc = store.artefacts.load("curate_report", name)
        assert doc["version"] == winners[0] + 1
    leftovers = [p for p in (Path(store.root) / "artefacts" / "curate_report").iterdir()
                 if not p.name.endswith(".json") or p.name.startswith(".")]
    assert leftovers == []


def test_store_marker_is_complete_json(tmp_path):
    store = pesdata.open_store(tmp_path / "s", create=True)
    marker = Path(store.root) / "_pesdata" / "store.json"
    assert json.loads(marker.read_text())["format"] == "pesdata-store"
    assert [p.name for p in marker.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_failed_commit_after_a_schema_change_leaves_no_version(store):
    """Rows that do not fit the grown schema fail before the schema change is committed."""
    table = store.table
    schema = table.dataset().schema
    good = pa.table({f.name: pa.nulls(1, f.type) for f in schema})
    extra = pa.field("arr_new", pa.list_(pa.float64()))
    bad = good.append_column(extra, pa.array([[1.0]], extra.type))
    idx = bad.schema.get_field_index("n_atoms")
    bad = bad.set_column(idx, pa.field("n_atoms", pa.string()), pa.array(["not a number"]))

    def batches():
        return iter(bad.to_batches())

    with pytest.raises(SchemaError, match=r"column 'n_atoms': values of type string do not fit "
                                          r"the table's type int32") as err:
        table.commit(batches, bad.schema, message="broken", meta={})
    assert isinstance(err.value.__cause__, pa.ArrowException)
    assert store.version == 1
    assert "arr_new" not in store.table.dataset().schema.names




@pytest.mark.parametrize("append_only", [False, True])
def test_a_type_clash_without_a_schema_change_is_a_schema_error(store, append_only):
    """Through Lance's writer (which wraps reader errors in its own), not a raw LanceError."""
    schema = store.table.dataset().schema
    good = pa.table({f.name: pa.nulls(1, f.type) for f in schema})
    idx = good.schema.get_field_index("n_atoms")
    bad = good.set_column(idx, pa.field("n_atoms", pa.string()), pa.array(["x"]))
    with pytest.raises(SchemaError, match=r"column 'n_atoms': values of type string do not fit "
                                          r"the table's type int32 \(Failed to parse"):
        store.table.commit(bad.to_batches(), bad.schema, message="m", meta={},
                           append_only=append_only)
    assert store.version == 1


def test_damaged_latest_manifest_keeps_tags_and_info_of_older_versions(three_versions):
    store = three_versions
    store.tag("first", 2)
    os.truncate(_latest_manifest(store), 100)
    info = store.info(2)
    assert info["n_structures"] == 3 and info["tags"] == ["first"]
    assert store.resolve("first") == 2


def test_versions_from_numpy_are_numbers_and_others_are_refused(three_versions):
    import numpy as np

    store = three_versions
    v = store.log()["version"].iloc[-1]
    assert isinstance(v, np.integer)
    assert store.read(v).version == 3 and store.resolve(np.int32(2)) == 2
    assert store.diff(np.int64(2), v)["added"]
    for bad in (2.0, 1.5, True, [2]):
        with pytest.raises(ParameterError, match="version must be"):
            store.read(bad)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_data_files_are_store_corruption(three_versions, damage):
    store = three_versions
    data = Path(store.root) / "structures.lance" / "data"
    files = sorted(data.iterdir())
    for f in files:
        if damage == "missing":
            f.unlink()
        else:
            os.truncate(f, 50)
    snap = store.read(2)
    for read in (lambda: snap.ids, lambda: snap.to_arrays(), lambda: list(snap),
                 lambda: snap.take([0]), lambda: store.info(2), lambda: snap.to_pandas()):
        with pytest.raises(StoreCorruptError, match="data files cannot be read") as err:
            read()
        assert isinstance(err.value, OSError) and err.value.__cause__ is not None
    with pytest.raises(StoreCorruptError):  # curate's look-up of stored ids too
        store.curate(emt_cells(3, seed=1))


def test_bad_columns_and_filters_are_parameter_errors(three_versions):
    snap = three_versions.read()
    with pytest.raises(ParameterError, match="unknown column 'nope'; columns: id, geometry_hash"):
        snap.table(columns=["nope"])
    with pytest.raises(ParameterError):
        snap.count("energy >>> 1")
    assert snap.count("energy IS NOT NULL") == 5


@pytest.mark.parametrize(
    "text, match",
    [("garbage", "cannot be read"), ("[]", "not a pesdata store marker"),
     ('{"format": "pesdata-store", "format_version": 99}', "newer pesdata"),
     ('{"format": "pesdata-store", "format_version": "1"}', "bad format_version")],
)
def test_a_bad_store_marker_is_refused(tmp_path, text, match):
    pesdata.open_store(tmp_path / "s", create=True)
    (tmp_path / "s" / "_pesdata" / "store.json").write_text(text)
    with pytest.raises(StoreCorruptError, match=match):
        pesdata.open_store(tmp_path / "s")


def test_a_directory_where_the_lock_belongs_is_named(tmp_path):
    store = pesdata.open_store(tmp_path / "s", create=True)
    lock = Path(store.lock_path)
    lock.unlink(missing_ok=True)
    lock.mkdir()
    with pytest.raises(StoreCorruptError, match="write lock"):
        store.curate(emt_cells(1, seed=3))
