"""``pesdata verify``: a real store with every kind of thing in it verifies clean; each kind of
damage is then named exactly (issue 19, store housekeeping)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ase.io
import lance
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.store import verify

from .conftest import CU_ACSF_SMALL_CONFIG, DATA, emt_cells


def build_store(path: Path) -> pesdata.Store:
    """Several versions of real Cu DFT data and EMT cells, a tag, a split, cached descriptors,
    a selection-free model card (linear model) — the store the housekeeping tests damage."""
    from pesdata.descriptors import describe, from_config
    from pesdata.split import make_split
    from pesdata.train import train

    store = pesdata.open_store(path, create=True)
    store.curate(ase.io.read(DATA / "mlearn" / "Cu_test.extxyz", ":6"), method="PBE")
    store.curate(emt_cells(4, seed=1), method="EMT")
    store.tag("first", 2)
    store.curate(emt_cells(3, seed=2), method="EMT")
    make_split(store, "holdout", "holdout", test_size=0.3)
    describe(store, from_config(CU_ACSF_SMALL_CONFIG), batch_size=4)
    train(store, path.parent / f"{path.name}-model", model="linear",
          descriptor=CU_ACSF_SMALL_CONFIG, version=3)
    return store


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("verify") / "store")


@pytest.fixture
def copy(pristine, tmp_path):
    """A private copy of the built store, to damage."""
    shutil.copytree(pristine.root, tmp_path / "store")
    return pesdata.open_store(tmp_path / "store")


def kinds(report: dict, severity: str = "error") -> set[str]:
    return {p["kind"] for p in report["problems"] if p["severity"] == severity}


def test_a_complete_store_verifies_clean(pristine):
    report = verify(pristine)
    assert report["ok"], report["problems"]
    assert report["problems"] == []
    assert report["versions_checked"] == pristine.version
    assert report["rows_checked"] >= len(pristine.read())
    assert pristine.verify(full=False)["ok"]  # Store.verify delegates


def test_the_hash_check_is_the_reference_hash(pristine):
    """verify's per-batch hashing agrees with pesdata._hash row by row: a row whose geometry
    is moved by 1e-5 Å (ten times the rounding) is found, one moved by 1e-9 Å is not."""
    from pesdata.store.verify import _check_batch

    batch = pristine.read().table().to_batches()[0]
    problems: list = []
    _check_batch(batch, True, "here", problems)
    assert problems == []
    for delta, found in ((1e-5, True), (1e-9, False)):
        pos = batch.column("positions")
        flat = pos.flatten().flatten().to_numpy().copy()
        flat[0] += delta
        moved = pa.ListArray.from_arrays(
            pos.offsets, pa.FixedSizeListArray.from_arrays(pa.array(flat), 3))
        changed = batch.set_column(batch.schema.get_field_index("positions"), "positions",
                                   moved)
        problems = []
        _check_batch(changed, True, "here", problems)
        assert [p["kind"] for p in problems] == (["hash_mismatch"] if found else [])


def _data_files(store) -> list[Path]:
    return sorted((Path(store.root) / "structures.lance" / "data").glob("*.lance"))


def test_flipped_bytes_in_a_data_file_are_found(copy):
    files = _data_files(copy)
    target = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    rng = np.random.default_rng(0)
    for at in rng.integers(0, len(raw) // 2, 40):  # the column data (the footer stays)
        raw[at] ^= 0xFF
    target.write_bytes(bytes(raw))
    report = verify(copy)
    assert not report["ok"]
    assert kinds(report) & {"data_unreadable", "hash_mismatch", "id_mismatch", "row_invalid"}
    assert all(target.name in p["where"] for p in report["problems"]
               if p["kind"] in {"data_unreadable", "hash_mismatch", "id_mismatch"})


def test_a_truncated_data_file_is_unreadable(copy):
    target = _data_files(copy)[0]
    target.write_bytes(target.read_bytes()[:100])
    report = verify(copy)
    assert "data_unreadable" in kinds(report)


def test_a_deleted_manifest_is_named(copy):
    manifest = copy.table._manifest(2)
    Path(manifest).unlink()
    report = verify(copy)
    assert not report["ok"]
    missing = [p for p in report["problems"] if p["kind"] == "manifest_missing"]
    assert [p["where"] for p in missing] == ["version 2"]
    assert "tag_dangling" in kinds(report)  # tag 'first' named version 2


def test_an_artefact_pinned_to_a_missing_version_is_named(copy):
    path = Path(copy.root) / "artefacts" / "split" / "holdout.json"
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    report = verify(copy)
    assert kinds(report) == {"artefact_version_missing"}
    (problem,) = report["problems"]
    assert problem["where"] == "artefacts/split/holdout.json" and "99" in problem["message"]


def test_an_artefact_that_does_not_validate_is_named(copy):
    card = next((Path(copy.root) / "artefacts" / "model_card").glob("*.json"))
    doc = json.loads(card.read_text())
    del doc["kind"]
    card.write_text(json.dumps(doc))
    report = verify(copy)
    assert kinds(report) == {"artefact_invalid"}
    assert card.name in report["problems"][0]["where"]


def _group(store) -> Path:
    (group,) = (Path(store.root) / "arrays").iterdir()
    return group


def test_an_index_entry_past_a_segments_end_is_named(copy):
    import pyarrow.parquet as pq

    index = sorted((_group(copy) / "index").glob("*.parquet"))[0]
    table = pq.read_table(index)
    first = table.column("first_row").to_numpy().copy()
    first[-1] += 1000
    pq.write_table(table.set_column(table.schema.get_field_index("first_row"), "first_row",
                                    pa.array(first)), index)
    report = verify(copy)
    assert kinds(report) == {"index_out_of_range"}
    assert report["problems"][0]["where"] == str(index)


def test_a_deleted_segment_is_named(copy):
    import pyarrow.parquet as pq

    index = sorted((_group(copy) / "index").glob("*.parquet"))[0]
    segment = pq.read_table(index).column("segment")[0].as_py()
    shutil.rmtree(_group(copy) / segment)
    report = verify(copy)
    assert kinds(report) == {"segment_missing"}
    assert report["problems"][0]["where"].endswith(segment)


def test_an_orphan_segment_is_a_warning(copy):
    group = _group(copy)
    seg = next(group.glob("seg-*"))
    shutil.copytree(seg, group / "seg-orphan")
    report = verify(copy)
    assert report["ok"]
    assert kinds(report, "warning") == {"segment_unindexed"}


def test_a_row_with_a_wrong_id_is_named(copy):
    """A fragment written with Lance directly: a real row whose id was altered."""
    ds = copy.table.dataset()
    row = ds.to_table(limit=1)
    bad = row.set_column(0, "id", pa.array(["0" * 32], pa.string()))
    lance.write_dataset(bad.cast(ds.schema), copy.table.uri, mode="append")
    report = verify(copy)
    problems = [p for p in report["problems"] if p["severity"] == "error"]
    assert [p["kind"] for p in problems] == ["id_mismatch"]
    assert "0" * 32 in problems[0]["where"]


def test_a_duplicated_row_is_named(copy):
    ds = copy.table.dataset()
    lance.write_dataset(ds.to_table(limit=1).cast(ds.schema), copy.table.uri, mode="append")
    report = verify(copy)
    assert kinds(report) == {"duplicate_id"}
    assert report["problems"][0]["where"] == f"version {copy.version}"


def test_a_tag_to_a_deleted_version_is_named(copy):
    tag = Path(copy.table.uri) / "_refs" / "tags" / "first.json"
    doc = json.loads(tag.read_text())
    doc["version"] = 42
    tag.write_text(json.dumps(doc))
    report = verify(copy)
    assert kinds(report) == {"tag_dangling"}
    assert report["problems"][0]["where"] == "tag first"


def test_a_ledger_without_its_rows_is_named(copy):
    base = Path(copy.root) / "artefacts" / "selection"
    base.mkdir(parents=True, exist_ok=True)
    split = json.loads((Path(copy.root) / "artefacts" / "split" / "holdout.json").read_text())
    summary = {"name": "l1", "version": split["version"], "created": "now", "candidates": [],
               "n_candidates": 0, "descriptor": {}, "criteria": [], "policy": {},
               "counts": {}}
    (base / "l1.json").write_text(json.dumps(summary))
    report = verify(copy)
    assert "ledger_rows_missing" in kinds(report)


def test_cli_verify_exit_codes_and_json(pristine, copy):
    runner = CliRunner()
    result = runner.invoke(app, ["verify", pristine.root, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True
    Path(copy.table._manifest(2)).unlink()
    result = runner.invoke(app, ["verify", copy.root, "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["ok"] is False and "manifest_missing" in {p["kind"] for p in doc["problems"]}
    result = runner.invoke(app, ["verify", copy.root])
    assert result.exit_code == 1
    assert "manifest_missing" in result.output and "version 2" in result.output


def test_quick_verify_rehashes_every_fragment_of_the_latest_version(copy):
    """A lying row written in an older version and still in the latest one: ``--quick``
    (the latest version's fragments only) finds it too (it used to rehash only the fragments
    new in the latest version)."""
    ds = copy.table.dataset()
    bad = ds.to_table(limit=1).set_column(0, "id", pa.array(["1" * 32], pa.string()))
    lance.write_dataset(bad.cast(ds.schema), copy.table.uri, mode="append")
    copy.curate(emt_cells(1, seed=9), method="EMT")  # the latest version still holds it
    for full in (True, False):
        assert "id_mismatch" in kinds(verify(copy, full=full)), full


def test_a_segment_with_a_missing_chunk_is_named(copy):
    """Zarr reads a missing chunk as its fill value without a word; verify does not."""
    group = _group(copy)
    seg = sorted(group.glob("seg-*"))[0]
    chunks = [p for p in seg.rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks
    for p in chunks:
        p.unlink()
    report = verify(copy)
    assert kinds(report) == {"segment_incomplete"}
    assert report["problems"][0]["where"] == str(seg)


def test_a_segment_of_another_width_is_named(copy):
    import zarr

    group = _group(copy)
    segs = sorted(group.glob("seg-*"))
    assert len(segs) >= 2
    old = zarr.open_array(segs[0], mode="r")
    shutil.rmtree(segs[0])
    arr = zarr.open_group(group, mode="a").create_array(
        segs[0].name, shape=(old.shape[0], old.shape[1] + 1), dtype=old.dtype)
    arr[:] = 0.0
    assert kinds(verify(copy)) == {"segment_invalid"}


def test_verify_and_gc_refuse_an_object_store_url():
    from pesdata.errors import ParameterError
    from pesdata.store import gc

    store = pesdata.open_store("memory://pesdata-verify-test", create=True)
    with pytest.raises(ParameterError, match="local store directory"):
        verify(store)
    with pytest.raises(ParameterError, match="local store directory"):
        gc(store)
