"""The compact per-row memory of a curate run (pesdata.curate._stats) keeps exactly what the
Python objects it replaced kept."""

from __future__ import annotations

import numpy as np
import pytest

from pesdata.curate._stats import RunStats, SeenIndex
from pesdata.curate.dedup import Seen


@pytest.mark.parametrize("pos, labelled, kind", [
    ((0, 0), False, "added"), ((3, 511), True, "relabelled"),
    ((70_000, 2**32 - 1), True, "added"), ((2**20, 7), False, "relabelled")])
def test_seen_index_round_trips(pos, labelled, kind):
    seen = SeenIndex()
    sid = "0123456789abcdef" * 2
    assert seen.get(sid) is None and sid not in seen
    seen[sid] = Seen(pos, labelled, kind)
    assert seen.get(sid) == Seen(pos, labelled, kind) and sid in seen and len(seen) == 1
    del seen[sid]
    assert seen.get(sid) is None and len(seen) == 0


def test_seen_index_keeps_ids_that_are_not_hex():
    seen = SeenIndex()
    seen["not-hex"] = Seen((1, 2), True, "added")
    assert seen.get("not-hex") == Seen((1, 2), True, "added")
    # upper case or spaces decode to a digest too, yet are other ids than the lower-case one
    low, up, spaced = "ab" * 16, "AB" * 16, "ab " * 10 + "ab"
    seen[low] = Seen((0, 1), True, "added")
    seen[up] = Seen((0, 2), True, "added")
    seen[spaced] = Seen((0, 3), True, "added")
    assert [seen.get(i).pos for i in (low, up, spaced)] == [(0, 1), (0, 2), (0, 3)]
    assert len(seen) == 4


def test_seen_index_refuses_what_it_cannot_pack():
    with pytest.raises(ValueError, match="out of range"):
        SeenIndex()["ab"] = Seen((0, 2**32), True, "added")
    with pytest.raises(ValueError):
        SeenIndex()["ab"] = Seen((0, 1), True, "superseded")


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


def test_seen_index_runs_behave_as_a_dict(monkeypatch):
    """Random sets, overwrites, deletes and lookups, with runs merged and kept apart, against a
    plain dict; ids that collide in their high 64 bits are told apart by the low ones."""
    from pesdata.curate import _stats

    monkeypatch.setattr(_stats, "_MEM_ROWS", 7)
    monkeypatch.setattr(_stats, "_MAX_RUN", 40)
    rng = np.random.default_rng(3)
    pool = [rng.bytes(16).hex() for _ in range(300)]
    pool += [pool[0][:16] + rng.bytes(8).hex() for _ in range(5)]  # same high half as pool[0]
    seen, model = SeenIndex(), {}
    for step in range(4000):
        sid = pool[rng.integers(len(pool))]
        op = rng.random()
        if step % 50 == 0:
            seen.prefetch([pool[i] for i in rng.integers(len(pool), size=20)])
        if op < 0.5:
            s = Seen((int(rng.integers(100)), int(rng.integers(2**32))), bool(rng.random() < .5),
                     "added" if rng.random() < .5 else "relabelled")
            seen[sid] = s
            model[sid] = s
        elif op < 0.65 and sid in model:
            del seen[sid]
            del model[sid]
        else:
            assert seen.get(sid) == model.get(sid) and (sid in seen) == (sid in model)
        assert len(seen) == len(model)
    assert len(seen._runs) > 2 and max(len(r[0]) for r in seen._runs) <= 40
    for sid in pool:
        assert seen.get(sid) == model.get(sid)
    with pytest.raises(KeyError):
        del seen["f" * 32 if "f" * 32 not in model else "e" * 32]
