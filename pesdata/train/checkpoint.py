"""Model checkpoints: tensors in ``model.pt`` (loaded with ``weights_only=True``) + a JSON card.

``model_card.json`` names the model kind, the descriptor config and its hash, the training
version and split, and the metrics measured at training time; it is validated against
``schemas/model_card.json`` when written and when read. Loading checks that the card and the
weights agree; a missing, corrupt or mismatched checkpoint is a clear
:class:`~pesdata.errors.ArtefactError`.
"""

from __future__ import annotations

import json
import os
import pickle
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..errors import ArtefactError, PesdataError, SchemaError
from ..store._artefacts import validate
from .committee import Committee
from .hdnn import HDNNPotential
from .linear import LinearPotential

__all__ = ["load_model", "save_model"]

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


def save_model(model, out: str | os.PathLike, **card) -> dict:
    """Write a fitted model to directory ``out`` (atomically per file) with a model card.

    ``model`` is a :class:`LinearPotential`, :class:`HDNNPotential` or :class:`Committee`;
    ``card`` adds fields such as ``version``, ``split``, ``metrics``. Returns the card as
    written (JSON types).
    """
    out = Path(out)
    state = _state(model)
    doc = {
        "kind": model.kind,
        "descriptor": model.descriptor.config(),
        "descriptor_hash": model.descriptor.config_hash,
        "n_weights": int(sum(t.numel() for t in state.values())),
        "params": ({"alpha": model.alpha, "force_weight": model.force_weight}
                   if model.kind == "linear" else model.params()),
        "created": datetime.now(timezone.utc).isoformat(),
        **card,
    }
    text = json.dumps(doc, indent=2, default=str)
    validate("model_card", json.loads(text))  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{WEIGHTS}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / WEIGHTS)
    tmp = out / f".{CARD}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / CARD)
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
        state = torch.load(path / WEIGHTS, weights_only=True)
    except (json.JSONDecodeError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ArtefactError(f"{path}: cannot read the checkpoint ({exc})") from None
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
    params = dict(card.get("params") or {})
    try:
        if card["kind"] == "linear":
            model = LinearPotential(descriptor, **params)
            model.coef_ = np.asarray(state["coef"], dtype=float)
            model.scale_ = np.asarray(state["scale"], dtype=float)
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
        raise ArtefactError(f"{path}: weights do not fit the card's model ({exc})") from None
    return model, card
