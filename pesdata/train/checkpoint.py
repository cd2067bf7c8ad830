"""Model checkpoints: tensors in ``model.pt`` (loaded with ``weights_only=True``) + a JSON card.

``model_card.json`` names the model kind, the descriptor config and its hash, the training
version and split, and the metrics measured at training time. Loading checks that the card and
the weights agree; a missing, corrupt or mismatched checkpoint is a clear
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

from ..errors import ArtefactError, SchemaError
from .linear import LinearPotential

__all__ = ["load_model", "save_model"]

CARD, WEIGHTS = "model_card.json", "model.pt"


def save_model(model: LinearPotential, out: str | os.PathLike, **card) -> dict:
    """Write ``model`` to directory ``out`` (atomically per file) with a model card.

    ``card`` adds fields such as ``version``, ``split``, ``metrics``. Returns the card as
    written (JSON types).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {"coef": torch.as_tensor(model.coef_), "scale": torch.as_tensor(model.scale_)}
    doc = {
        "kind": "linear",
        "descriptor": model.descriptor.config(),
        "descriptor_hash": model.descriptor.config_hash,
        "n_weights": int(model.coef_.size),
        "alpha": model.alpha,
        "force_weight": model.force_weight,
        "created": datetime.now(timezone.utc).isoformat(),
        **card,
    }
    tmp = out / f".{WEIGHTS}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / WEIGHTS)
    text = json.dumps(doc, indent=2, default=str)
    tmp = out / f".{CARD}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / CARD)
    return json.loads(text)


def load_model(path: str | os.PathLike) -> tuple[LinearPotential, dict]:
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
    if card.get("kind") != "linear":
        raise ArtefactError(f"{path}: unknown model kind {card.get('kind')!r}")
    try:
        descriptor = from_config(card["descriptor"])
    except (KeyError, SchemaError) as exc:
        raise ArtefactError(f"{path}: bad descriptor in model card ({exc})") from None
    if descriptor.config_hash != card.get("descriptor_hash"):
        raise ArtefactError(
            f"{path}: descriptor hash {descriptor.config_hash} does not match the card's "
            f"{card.get('descriptor_hash')}"
        )
    coef = np.asarray(state.get("coef"), dtype=float)
    if coef.shape != (card.get("n_weights"),):
        raise ArtefactError(f"{path}: weights of shape {coef.shape} do not match the card")
    model = LinearPotential(descriptor, alpha=card["alpha"], force_weight=card["force_weight"])
    model.coef_ = coef
    model.scale_ = np.asarray(state["scale"], dtype=float)
    return model, card
