"""Names cannot escape the store, and checkpoints never unpickle (issue 19, hostile input).

Every name a user gives something kept in a store — tag, split, ledger (selection), queue
selection, loop, artefact — passes :func:`pesdata._names.check_name`: ``..``, ``/``, NUL, control
characters, hidden or option-like names and absurd lengths are refused with a ParameterError
naming the value, and nothing is written anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pesdata._names import MAX_BYTES, check_name
from pesdata.cli import app
from pesdata.curate import curate
from pesdata.errors import ArtefactError, InputError, ParameterError

from .conftest import emt_cells

HOSTILE = ["", ".", "..", "../x", "../../etc/passwd", "a/b", "a\\b", "nul\0x", "new\nline",
           "tab\tname", ".hidden", "-rf", " padded ", "x" * (MAX_BYTES + 1), "é" * 81,
           "\x1b[31mred"]
GOOD = ["iter-1", "holdout_v2", "Cu+O 2024", "é" * 80, "x" * MAX_BYTES, "a.b"]


def _tree(root: Path) -> set[str]:
    """Every path under ``root`` except the write lock (taken and released by writers)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock"}


@pytest.fixture
def filled(store):
    curate(store, emt_cells(6, seed=3), method="EMT")
    return store


@pytest.mark.parametrize("name", HOSTILE)
def test_check_name_refuses_hostile_names_quoting_them(name):
    with pytest.raises(ParameterError, match="invalid split name") as info:
        check_name(name, "split name")
    assert "\n" not in str(info.value)  # one line, even for a name with a newline in it


@pytest.mark.parametrize("name", GOOD)
def test_check_name_keeps_ordinary_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["a"]])
def test_a_name_that_is_not_a_string_is_refused(bad):
    with pytest.raises(ParameterError, match="a name is a string"):
        check_name(bad)


@pytest.mark.parametrize("name", HOSTILE)
def test_tag_split_and_artefact_names_are_refused_and_nothing_is_written(filled, tmp_path, name):
    from pesdata.split import make_split

    root = Path(filled.root)
    before = _tree(root)
    outside = set(os.listdir(tmp_path))
    with pytest.raises(ParameterError, match="invalid tag name"):
        filled.tag(name)
    with pytest.raises(ParameterError, match="invalid split artefact name"):
        make_split(filled, name, "holdout", test_size=0.5)
    with pytest.raises(ParameterError, match="invalid selection artefact name"):
        filled.ledger(name)
    with pytest.raises(ParameterError, match="invalid loop artefact name"):
        filled.artefacts.load("loop", name)
    assert filled.tags() == {}
    assert _tree(root) == before
    assert set(os.listdir(tmp_path)) == outside


@pytest.mark.parametrize("name", ["../escape", "a/b", "nul\0", "z" * 500])
def test_select_refuses_a_hostile_ledger_name_before_any_work(filled, tmp_path, data, name):
    from pesdata.select import select

    before = _tree(Path(filled.root))
    with pytest.raises(ParameterError, match="invalid selection artefact name"):
        select(filled, [str(data / "cu" / "training.xyz")], name=name, budget=1)
    assert _tree(Path(filled.root)) == before
    assert not (tmp_path / "escape.json").exists()


@pytest.mark.parametrize("name", ["..", "../q", "a/b", "x\0"])
def test_a_queue_refuses_a_hostile_selection_name(tmp_path, name):
    import pandas as pd

    from pesdata.label.queue import write_queue

    images = emt_cells(1, seed=1)
    images[0].info["id"] = "abc"
    with pytest.raises(ParameterError, match="invalid selection name"):
        write_queue(tmp_path / "queue", images, pd.DataFrame({"id": ["abc"]}), store="s",
                    reference_version=0, selection=name)
    assert not (tmp_path / "queue").exists()


def test_a_loop_config_with_a_hostile_name_is_an_input_error(tmp_path):
    from pesdata.loop import load_config

    cfg = tmp_path / "loop.yaml"
    cfg.write_text("name: ../../outside\nstore: store\n")
    with pytest.raises((InputError, ParameterError), match="name"):
        load_config(cfg)
    assert not (tmp_path.parent / "outside-work").exists()


@pytest.mark.parametrize("name", ["../x", "-x", "a/b"])
def test_cli_tag_refuses_a_hostile_name_in_one_line(filled, name):
    result = CliRunner().invoke(app, ["tag", filled.root, "--", name])
    assert result.exit_code != 0
    message = result.output.strip()
    assert "invalid tag name" in message and "Traceback" not in message
    assert len(message.splitlines()) == 1
    assert filled.tags() == {}


def test_a_model_directory_name_that_is_no_safe_name_still_gets_a_card(filled, tmp_path):
    from pesdata.train import train

    from .conftest import CU_ACSF_SMALL_CONFIG

    out = tmp_path / ("-" + "m" * 300)[:200]
    train(filled, out, model="linear", descriptor=CU_ACSF_SMALL_CONFIG)
    cards = filled.artefacts.list("model_card")
    assert len(cards) == 1 and cards[0].startswith("m" * 80 + "-v")


def test_a_checkpoint_with_a_pickled_object_is_refused_without_running_it(filled, tmp_path):
    """``model.pt`` holding a pickle that would run code: load_model refuses it
    (``torch.load(..., weights_only=True)``) and the code never runs."""
    import hashlib
    import json

    import torch

    from pesdata.train import train
    from pesdata.train.checkpoint import load_model

    from .conftest import CU_ACSF_SMALL_CONFIG

    out = tmp_path / "model"
    train(filled, out, model="linear", descriptor=CU_ACSF_SMALL_CONFIG)
    load_model(out)  # the honest checkpoint loads
    marker = tmp_path / "pwned"
    torch.save({"w": _Payload(str(marker))}, out / "model.pt")
    card = json.loads((out / "model_card.json").read_text())
    for key in ("weights_sha256", "sha256"):
        if key in card:
            card[key] = hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    (out / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ArtefactError, match="cannot read the checkpoint"):
        load_model(out)
    assert not marker.exists()


class _Payload:
    """Unpickling this would create a file (``open(path, 'w')``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_loop_name_too_long_for_its_ledgers_is_refused_before_any_work(tmp_path):
    from pesdata.loop import load_config

    cfg = tmp_path / "loop.yaml"
    cfg.write_text(f"name: {'n' * (MAX_BYTES - 5)}\nstore: store\n")
    with pytest.raises(InputError, match="iter-N"):
        load_config(cfg)
