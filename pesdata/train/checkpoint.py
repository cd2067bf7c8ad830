"""Model checkpoints: tensors in ``model.pt`` (loaded with ``weights_only=True``) + a JSON card.

``model_card.json`` names the model kind, the descriptor config and its hash, the training
version and split, and the metrics measured at training time; it is validated against
``schemas/model_card.json`` when written and when read. Loading checks that the card and the
weights agree; a missing, corrupt or mismatched checkpoint is a clear
:class:`~pesdata.errors.ArtefactError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..errors import ArtefactError, PesdataError, SchemaError
from ..store import validate_artefact as validate
from .committee import Committee
from .hdnn import HDNNPotential
from .linear import LinearPotential

__all__ = ["check_model_dir", "load_model", "save_model"]

CARD, WEIGHTS = "model_card.json", "model.pt"
KINDS = ("linear", "hdnn", "committee")


def _state(model) -> dict:
    if model.kind == "linear":
        return {"coef": torch.as_tensor(model.coef_), "scale": torch.as_tensor(model.scale_)}
    members = model.members if model.kind == "committee" else [model]
    if any(m.net_ is None for m in members):
        raise ArtefactError("cannot save an unfitted model")
    prefix = (lambda k: f"member{k}.") if model.kind == "committee" else (lambda k: "net.")
    return {prefix(k) + name: t.detach().cpu() for k, m in enumerate(members)
            for name, t in m.net_.state_dict().items()}


def check_model_dir(out: str | os.PathLike) -> Path:
    """``out`` as a Path if a model can be written there; else an :class:`ArtefactError`.

    A model directory is replaced whole; a path that is a file, or a non-empty directory that
    is not a model directory, is refused (so training fails before it starts, not after).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtefactError(f"{out}: exists and is not a directory; choose another model path")
    if out.is_dir() and any(out.iterdir()) and not (out / CARD).is_file():
        raise ArtefactError(f"{out}: a non-empty directory that is not a pesdata model "
                            "directory; choose another model path")
    return out


def save_model(model, out: str | os.PathLike, **card) -> dict:
    """Write a fitted model to directory ``out`` with a model card, atomically.

    ``model`` is a :class:`LinearPotential`, :class:`HDNNPotential` or :class:`Committee`;
    ``card`` adds fields such as ``version``, ``split``, ``metrics``. Both files are written
    to a hidden staging directory beside ``out`` that then replaces ``out`` whole, so a killed
    run leaves the previous model (or none), never new weights beside an old card; the card
    also records the SHA-256 of the weights, checked on load. Returns the card as written.
    """
    out = check_model_dir(out)
    state = _state(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        buf = io.BytesIO()
        torch.save(state, buf)
        weights = buf.getvalue()
        (stage / WEIGHTS).write_bytes(weights)
        doc = {
            "kind": model.kind,
            "descriptor": model.descriptor.config(),
            "descriptor_hash": model.descriptor.config_hash,
            "n_weights": int(sum(t.numel() for t in state.values())),
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "params": ({"alpha": model.alpha, "force_weight": model.force_weight}
                       if model.kind == "linear" else model.params()),
            "created": datetime.now(timezone.utc).isoformat(),
            **card,
        }
        text = json.dumps(doc, indent=2, default=str)
        validate("model_card", json.loads(text))
        (stage / CARD).write_text(text)
        stage.chmod(0o755)
        if out.exists():  # swap directories: the old one is removed only after the rename
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            try:
                os.replace(stage, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # only left when something failed
    return json.loads(text)


def load_model(path: str | os.PathLike) -> tuple:
    """Load a model directory written by :func:`save_model`; returns ``(model, card)``."""
    from ..descriptors import from_config

    path = Path(path)
    for name in (CARD, WEIGHTS):
        if not (path / name).is_file():
            raise ArtefactError(f"{path}: not a pesdata model directory (no {name})")
    try:
        card = json.loads((path / CARD).read_text())
        weights = (path / WEIGHTS).read_bytes()  # read once: the bytes hashed are those loaded
        state = torch.load(io.BytesIO(weights), weights_only=True)
    except Exception as exc:  # any failure to unpickle is the file's fault, not a crash
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise ArtefactError(f"{path}: cannot read the checkpoint ({reason})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(t) for t in state.values()):
        raise ArtefactError(f"{path}/{WEIGHTS}: not a dict of tensors")
    if not isinstance(card, dict) or card.get("kind") not in KINDS:
        kind = card.get("kind") if isinstance(card, dict) else None
        raise ArtefactError(f"{path}: unknown model kind {kind!r}")
    try:
        validate("model_card", card)
    except ArtefactError as exc:
        raise ArtefactError(f"{path}/{CARD}: {exc}") from None
    try:
        descriptor = from_config(card["descriptor"])
    except (KeyError, SchemaError) as exc:
        raise ArtefactError(f"{path}: bad descriptor in model card ({exc})") from None
    if descriptor.config_hash != card.get("descriptor_hash"):
        raise ArtefactError(
            f"{path}: descriptor hash {descriptor.config_hash} does not match the card's "
            f"{card.get('descriptor_hash')}"
        )
    if sum(t.numel() for t in state.values()) != card.get("n_weights"):
        raise ArtefactError(f"{path}: the weights do not match the card's n_weights")
    if "weights_sha256" in card and hashlib.sha256(weights).hexdigest() != card["weights_sha256"]:
        raise ArtefactError(f"{path}: {WEIGHTS} is not the file its card was written with "
                            "(SHA-256 differs)")
    params = dict(card.get("params") or {})
    try:
        if card["kind"] == "linear":
            model = LinearPotential(descriptor, **params)
            model.coef_ = np.asarray(state["coef"], dtype=float)
            model.scale_ = np.asarray(state["scale"], dtype=float)
            n_coef = len(descriptor.species) * (descriptor.n_features + 1)
            if model.coef_.shape != (n_coef,) or model.scale_.shape != (n_coef,):
                raise ArtefactError(f"{path}: linear weights of shape {model.coef_.shape}, "
                                    f"the card's descriptor needs ({n_coef},)")
            return model, card
        if card["kind"] == "hdnn":
            model = HDNNPotential(descriptor, **params)
            members, prefixes = [model], ["net."]
        else:
            n = params.pop("n_members")
            model = Committee(descriptor, n, **params)
            members, prefixes = model.members, [f"member{k}." for k in range(n)]
        for member, prefix in zip(members, prefixes, strict=True):
            net = member.new_net()
            net.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                 if k.startswith(prefix)})
            net.eval()
            member.net_ = net
    except (KeyError, TypeError, RuntimeError, PesdataError) as exc:
        reason = " ".join(str(exc).split())  # load_state_dict lists mismatches on many lines
        raise ArtefactError(f"{path}: weights do not fit the card's model ({reason})") from None
    return model, card
