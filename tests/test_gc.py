"""``pesdata gc``: orphans go, nothing a tag, split, ledger or model card needs does; compaction
keeps every row (issue 19, store housekeeping)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from typer.testing import CliRunner

import pesdata
from pesdata.cli import app
from pesdata.errors import ParameterError
from pesdata.store import verify

from .conftest import CU_ACSF_SMALL_CONFIG, DATA, emt_cells

OLD = time.time() - 2 * 3600  # older than gc's default min_age (1 h)


def _build(path: Path) -> pesdata.Store:
    """Real Cu DFT frames and EMT cells in three curates, a tag, a split, cached descriptors, a
    model card, then optimize (a compacted version and two index versions nothing names)."""
    from pesdata.descriptors import describe, from_config
    from pesdata.split import make_split
    from pesdata.train import train

    store = pesdata.open_store(path, create=True)
    store.curate(ase.io.read(DATA / "mlearn" / "Cu_test.extxyz", ":5"), method="PBE")
    store.curate(emt_cells(3, seed=1), method="EMT")
    store.tag("first", 2)
    store.curate(emt_cells(3, seed=2), method="EMT")
    make_split(store, "holdout", "holdout", test_size=0.3, version=3)
    describe(store, from_config(CU_ACSF_SMALL_CONFIG), batch_size=4)
    train(store, path.parent / "model", model="linear", descriptor=CU_ACSF_SMALL_CONFIG)
    store.optimize()
    return store


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("gc") / "store")


@pytest.fixture
def copy(pristine, tmp_path):
    shutil.copytree(pristine.root, tmp_path / "store")
    return pesdata.open_store(tmp_path / "store")


def _age(path: Path, when: float = OLD) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (when, when))


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name != "write.lock"}


def _group(store) -> Path:
    (group,) = (Path(store.root) / "arrays").iterdir()
    return group


def _orphans(store) -> dict[str, Path]:
    """One of each orphan gc removes: a killed describe's segment, a spool, a temporary file
    of an atomic write, a ledger parquet without its summary; all two hours old."""
    group = _group(store)
    seg = group / "seg-killed"
    shutil.copytree(next(group.glob("seg-*")), seg)
    spool = Path(store.root) / "_pesdata" / "tmp" / "spool-dead"
    spool.mkdir(parents=True)
    (spool / "000000.arrow").write_bytes(b"x" * 100)
    tmp = group / "index" / ".seg-x.parquet.abc.parquet.tmp"
    tmp.write_bytes(b"partial")
    ledger = Path(store.root) / "artefacts" / "selection" / "lost.parquet"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_bytes(b"rows")
    out = {"segments": seg, "spool": spool, "tmp_files": tmp, "ledger_rows": ledger}
    for p in out.values():
        _age(p)
    return out


def _descriptors(store, version=None):
    from pesdata.descriptors import from_config, load_descriptors

    return load_descriptors(store, from_config(CU_ACSF_SMALL_CONFIG), version)["features"]


def test_gc_removes_orphans_and_keeps_indexed_segments(copy):
    orphans = _orphans(copy)
    indexed = sorted(p.name for p in _group(copy).glob("seg-*") if p.name != "seg-killed")
    features = _descriptors(copy)
    report = copy.gc(versions=False)
    for key, path in orphans.items():
        assert report[key] == [str(path)]
        assert not path.exists()
    assert sorted(p.name for p in _group(copy).glob("seg-*")) == indexed
    np.testing.assert_array_equal(_descriptors(copy), features)
    assert verify(copy)["problems"] == []


def test_young_orphans_are_kept_a_running_describe_may_own_them(copy):
    orphans = _orphans(copy)
    _age(orphans["segments"], time.time())
    report = copy.gc(versions=False)
    assert report["segments"] == [] and orphans["segments"].exists()
    assert copy.gc(versions=False, min_age=0)["segments"] == [str(orphans["segments"])]


def test_dry_run_removes_nothing_and_lists_what_gc_removes(copy):
    _orphans(copy)
    before = _tree(copy.root)
    dry = copy.gc(dry_run=True, older_than=0)
    assert _tree(copy.root) == before
    real = copy.gc(older_than=0)
    assert {k: v for k, v in dry.items() if k != "dry_run"} == \
        {k: v for k, v in real.items() if k != "dry_run"}
    assert dry["versions"] and dry["spool"] and dry["segments"]


def test_version_cleanup_never_touches_tagged_or_pinned_versions(copy):
    log = copy.log()
    keep = {2: "tagged", 3: "split", 4: "model card"}  # 5 and 6: compaction and index
    rows = {v: copy.read(v).table().sort_by("id") for v in log["version"]}
    features = _descriptors(copy, 3)
    report = copy.gc(older_than=0)
    latest = int(log["version"].max())
    assert report["versions"] == [v for v in log["version"] if v not in keep and v != latest]
    assert set(report["kept_versions"]) == {*keep, latest}
    remaining = set(copy.log()["version"])
    assert remaining == {*keep, latest}
    for v in remaining:  # pinned, tagged and latest versions read identical rows
        assert copy.read(v).table().sort_by("id").equals(rows[v])
    assert copy.read("first").version == 2
    from pesdata.split import load_split

    assert load_split(copy, "holdout")["version"] == 3
    for name in copy.artefacts.list("model_card"):
        copy.artefacts.load("model_card", name)
    np.testing.assert_array_equal(_descriptors(copy, 3), features)
    removed = [v for v in log["version"] if v not in remaining]
    for v in removed:
        with pytest.raises(pesdata.errors.VersionNotFound):
            copy.read(int(v))
    assert verify(copy)["problems"] == []  # the gaps gc left are recorded, not "missing"


def test_an_unreadable_artefact_keeps_every_version(copy):
    (Path(copy.root) / "artefacts" / "split" / "broken.json").write_text("{not json")
    report = copy.gc(older_than=0)
    assert report["versions"] == []
    assert "broken.json" in report["kept_versions"][1]
    assert set(copy.log()["version"]) == set(range(1, copy.version + 1))


def test_versions_younger_than_the_window_are_kept(copy):
    report = copy.gc()  # default: only versions older than 7 days
    assert report["versions"] == []
    assert set(copy.log()["version"]) == set(range(1, copy.version + 1))


def test_compaction_keeps_rows_and_reduces_fragments(tmp_path):
    store = pesdata.open_store(tmp_path / "s", create=True)
    for seed in range(5):
        store.curate(emt_cells(2, seed=seed), method="EMT")
    before = store.read().table().sort_by("id")
    assert len(store.table.dataset().get_fragments()) == 5
    report = store.gc(compact_above=3, versions=False)
    assert report["compacted"] and report["fragments_before"] == 5
    assert len(store.table.dataset().get_fragments()) < 5
    assert store.read().table().sort_by("id").equals(before)
    assert verify(store)["ok"]


def test_a_commit_compacts_when_fragments_pile_up(tmp_path, monkeypatch):
    import pesdata.store._table as table

    monkeypatch.setattr(table, "COMPACT_ABOVE", 3)
    store = pesdata.open_store(tmp_path / "s", create=True)
    images = emt_cells(10, seed=7)
    reports = [store.curate(images[2 * k:2 * k + 2], method="EMT") for k in range(5)]
    assert len(store.table.dataset().get_fragments()) <= 3
    assert len(store.read()) == 10
    assert reports[-1].version == store.version  # the report pins the compacted version
    expected = {pesdata.Frame.from_atoms(a, method="EMT").id for a in images}
    assert set(store.read().ids) == expected
    assert verify(store)["ok"]


@pytest.mark.parametrize("kwargs", [{"keep_versions": 0}, {"older_than": -1},
                                    {"min_age": "soon"}, {"compact_above": 1.5}])
def test_bad_parameters_are_refused(copy, kwargs):
    before = _tree(copy.root)
    with pytest.raises(ParameterError):
        copy.gc(**kwargs)
    assert _tree(copy.root) == before


def test_cli_gc_dry_run_json_and_plain(copy):
    orphans = _orphans(copy)
    runner = CliRunner()
    result = runner.invoke(app, ["gc", copy.root, "--dry-run", "--json", "--older-than", "0"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["dry_run"] and doc["segments"] == [str(orphans["segments"])]
    assert orphans["segments"].exists()
    result = runner.invoke(app, ["gc", copy.root, "--no-versions"])
    assert result.exit_code == 0, result.output
    assert f"removed segments: {orphans['segments']}" in result.output
    assert not orphans["segments"].exists()
    result = runner.invoke(app, ["gc", copy.root, "--keep", "0"])
    assert result.exit_code != 0 and "keep_versions" in result.output


def test_an_artefact_that_does_not_validate_keeps_every_version(copy):
    doc = copy.artefacts.load("split", "holdout")
    (Path(copy.root) / "artefacts" / "split" / "odd.json").write_text(
        json.dumps({**doc, "version": "three"}))
    report = copy.gc(older_than=0)
    assert report["versions"] == []
    assert set(copy.log()["version"]) == set(range(1, copy.version + 1))


def test_curate_reports_do_not_pin_and_verify_accepts_them_after_gc(tmp_path):
    """A store built by curates alone: its old versions can go (their curate reports are
    history, not a need) and verify stays clean."""
    store = pesdata.open_store(tmp_path / "s", create=True)
    for seed in range(3):
        store.curate(emt_cells(2, seed=seed), method="EMT")
    latest = store.version
    report = store.gc(older_than=0)
    assert report["versions"] == [v for v in range(1, latest)]
    assert set(store.log()["version"]) == {latest}
    assert len(store.read()) == 6
    assert verify(store)["ok"] and verify(store)["problems"] == []


def test_version_ages_are_not_shifted_by_the_time_zone(tmp_path, monkeypatch):
    """Lance gives naive local times: far from UTC, a version superseded seconds ago must not
    look hours old (it was removed by ``--older-than 0.25`` at UTC−8)."""
    import time

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        store = pesdata.open_store(tmp_path / "s", create=True)
        store.curate(emt_cells(2, seed=1), method="EMT")
        store.curate(emt_cells(2, seed=2), method="EMT")
        report = store.gc(older_than=0.25)
        assert report["versions"] == []
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
