"""What a curate run logs per spooled row (statistics, ids) keeps exactly what it was given,
and the deferred in-run deduplication (``dedup.resolve``) gives what applying the identity rules
frame by frame gives, spilled or not."""

from __future__ import annotations

import numpy as np
import pytest

from pesdata.curate._stats import RunStats


def test_run_stats_arrays_and_rows():
    stats = RunStats()
    rows = [((0, 0), "added", "EMT Cu", 0.5, -3.5), ((0, 1), "relabelled", "EMT Au", np.nan, -3.9),
            ((1, 0), "added", "EMT Cu", 1.5, np.nan)]
    for pos, kind, key, fmax, e in rows:
        stats.record(pos, kind, key, {"method": key.split()[0]}, fmax, e)
    assert len(stats) == 3
    assert [stats.row(i) for i in range(3)] == [(p, k) for p, k, *_ in rows]
    arrays = stats.arrays()
    assert list(arrays["group"]) == ["EMT Cu", "EMT Au", "EMT Cu"]
    np.testing.assert_array_equal(arrays["fmax"], [0.5, np.nan, 1.5])
    np.testing.assert_array_equal(arrays["energy_per_atom"], [-3.5, -3.9, np.nan])
    assert arrays["populations"] == {"EMT Cu": {"method": "EMT"}, "EMT Au": {"method": "EMT"}}


def test_id_keys_and_label_digests():
    import pyarrow as pa

    from pesdata._ids import id_key, id_keys
    from pesdata.curate.dedup import label_digest

    sid = "0123456789abcdef" * 2
    assert id_key(sid) == bytes.fromhex(sid)
    strings = ["not-hex", sid.upper(), " " + sid[1:], sid + "0", "é" * 16]
    odd = [id_key(x) for x in strings]
    assert len(set(odd)) == 5 and all(len(k) == 16 and k != bytes.fromhex(sid) for k in odd)
    # one key per id, whether keyed one at a time (curate's log) or by column (the cache join)
    assert [bytes(k) for k in id_keys(pa.array([sid, *strings]))] == [id_key(sid), *odd]
    f = np.arange(6.0).reshape(2, 3)
    assert label_digest(-1.5, f) == label_digest(-1.5, f.copy())
    digests = {label_digest(-1.5, f), label_digest(-1.5 + 1e-12, f), label_digest(None, f),
               label_digest(-1.5, None), label_digest(None, None), label_digest(-1.5, f + 1e-9),
               label_digest(-1.5, f.reshape(3, 2))}
    assert len(digests) == 7


def _oracle(stored: dict, copies: list) -> tuple:
    """The identity rules applied frame by frame (DESIGN §3): ``stored`` maps a structure to
    its stored (energy, forces, source), energy and forces None when unlabelled; ``copies`` are
    (structure, n_atoms, energy, forces, source) in arrival order."""
    from pesdata.curate.dedup import is_conflict, label_diff

    kept, counts, conflicts = {}, {"added": 0, "duplicates": 0, "relabelled": 0}, []

    def labelled(e, f):
        return e is not None or f is not None

    for s, n, e, f, src in copies:
        if s in kept:
            counts["duplicates"] += 1
            ke, kf, ksrc, kind = kept[s]
            if not labelled(ke, kf) and labelled(e, f):
                kept[s] = (e, f, src, kind)
            elif is_conflict(*label_diff(ke, kf, e, f, n)):
                conflicts.append([ksrc, src])
        elif s in stored:
            se, sf, ssrc = stored[s]
            counts["duplicates"] += 1  # the store holds it: relabelled or not
            if not labelled(se, sf) and labelled(e, f):
                counts["relabelled"] += 1
                kept[s] = (e, f, src, "relabelled")
            elif is_conflict(*label_diff(se, sf, e, f, n)):
                    conflicts.append([ssrc, src])
        else:
            counts["added"] += 1
            kept[s] = (e, f, src, "added")
    return counts, conflicts, {s: v[2] for s, v in kept.items()}


@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("batch_size", [1, 4, 1000])
def test_deferred_dedup_equals_the_frame_by_frame_rules(tmp_path, monkeypatch, spill, batch_size):
    """Random copies of real TiO2 cells (unlabelled, identical, within tolerance, conflicting),
    some already stored with or without labels, curated in batches: counts, conflicts (in
    arrival order) and the rows kept are the oracle's."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    import pesdata
    from pesdata.curate import dedup

    from .conftest import DATA

    if spill:
        from pesdata.curate import _spool

        monkeypatch.setattr(dedup, "MEM_ROWS", 3)
        monkeypatch.setattr(dedup, "LOG_MEM_ROWS", 5)
        monkeypatch.setattr(_spool, "_DROP_MEM", 4)
        monkeypatch.setattr(_spool, "_DROP_WINDOW", 3)
    base = ase.io.read(DATA / "tio2/TiO2_aenet_subset.extxyz", ":12")
    rng = np.random.default_rng(batch_size + 7 * spill)

    def copy(s, how):
        a = base[s].copy()
        e, f = base[s].get_potential_energy(), base[s].get_forces()
        if how == "bare":
            return a, None, None
        if how == "near":
            e = e + 1e-4 * len(a)
        elif how == "far":
            e = e + 0.05 * len(a)
        elif how == "force":
            f = f + 0.01
        elif how == "energy-only":
            f = None
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        return a, e, f

    st = pesdata.open_store(tmp_path / "s", create=True)
    first = [copy(0, "bare"), copy(1, "same"), copy(2, "bare"), copy(3, "same")]
    ase.io.write(tmp_path / "first.extxyz", [a for a, _, _ in first])
    st.curate(tmp_path / "first.extxyz", method="PBE")
    stored = {s: (e, f, f"{tmp_path / 'first.extxyz'}#{s}") for s, (_, e, f) in enumerate(first)}
    hows = ["bare", "same", "same", "near", "far", "force", "energy-only"]
    plan = [(int(rng.integers(8)), hows[int(rng.integers(len(hows)))]) for _ in range(60)]
    made = [copy(s, how) for s, how in plan]
    copies = [(s, len(a), e, f, f"<memory>#{k}") for k, ((s, _), (a, e, f)) in
              enumerate(zip(plan, made, strict=True))]
    counts, conflicts, kept = _oracle(stored, copies)
    assert conflicts and counts["duplicates"] > 20  # the case is not trivial
    report = st.curate([a for a, _, _ in made], method="PBE", batch_size=batch_size)
    assert {k: getattr(report, k) for k in counts} == counts
    assert [c["sources"] for c in report.conflicts] == conflicts
    rows = st.read().table(["source"]).column("source").to_pylist()
    expected = [kept.get(s, stored.get(s, (None, None, None))[2]) for s in set(kept) | set(stored)]
    assert sorted(rows) == sorted(expected)


@pytest.mark.parametrize("mem, window", [(1 << 16, 1 << 18), (3, 2), (5, 50)])
def test_spool_drops_read_back_sorted_by_range(tmp_path, monkeypatch, mem, window):
    """Dropped positions (repeats, any order, spilled or not) are the model's set in every
    range, and the commit's batches skip exactly them."""
    import pyarrow as pa

    from pesdata.curate import _spool

    monkeypatch.setattr(_spool, "_DROP_MEM", mem)
    monkeypatch.setattr(_spool, "_DROP_WINDOW", window)
    spool = _spool.Spool(tmp_path)
    sizes = [5, 1, 7, 3, 6, 2]
    for b, n in enumerate(sizes):
        spool.append(pa.table({"row": [f"{b}:{r}" for r in range(n)]}))
    rng = np.random.default_rng(mem)
    model = set()
    for _ in range(3):  # drops, reads, more drops (the outliers after the duplicates)
        for _ in range(12):
            b = int(rng.integers(len(sizes)))
            r = int(rng.integers(sizes[b]))
            spool.drop((b, r))
            model.add((b << 32) | r)
        assert spool.dropped().tolist() == sorted(model)
        for lo, hi in [(0, 3 << 32), ((2 << 32) + 1, (4 << 32) + 2), (5 << 32, 6 << 32)]:
            assert spool.dropped(lo, hi).tolist() == sorted(v for v in model if lo <= v < hi)
        assert spool.n_kept == sum(sizes) - len(model)
        kept = [x for batch in spool.batches() for x in batch.column("row").to_pylist()]
        assert kept == [f"{b}:{r}" for b, n in enumerate(sizes) for r in range(n)
                        if (b << 32) | r not in model]
    spool.close()


def test_spool_drop_windows_stay_bounded_when_drops_crowd(tmp_path, monkeypatch):
    """All drops in the first files: the windows are cut by the running count, so none holds
    more than the window plus one file's rows; an old build's files go on a rebuild."""
    import pyarrow as pa

    from pesdata.curate import _spool

    monkeypatch.setattr(_spool, "_DROP_MEM", 7)
    monkeypatch.setattr(_spool, "_DROP_WINDOW", 10)
    spool = _spool.Spool(tmp_path)
    for _ in range(200):
        spool.append(pa.table({"row": list(range(8))}))
    crowd = [(b, r) for b in range(12) for r in range(8)]
    for pos in crowd:
        spool.drop(pos)
    assert spool.n_kept == 200 * 8 - len(crowd)
    _, windows, _ = spool._drops._built
    assert max(len(spool._drops._window(w, windows)) for w in range(len(windows))) <= 10 + 8
    first = spool._drops._spill
    spool.drop((150, 3))
    assert spool.dropped(150 << 32, 151 << 32).tolist() == [(150 << 32) | 3]
    assert not first.exists() and spool._drops._spill.exists()
    with pytest.raises(ValueError, match="out of range"):
        spool.drop((0, 2**32))
