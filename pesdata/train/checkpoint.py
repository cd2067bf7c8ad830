"""Model checkpoints: tensors in ``model.pt`` (loaded with ``weights_only=True``) + a JSON card.

``model_card.json`` names the model kind, the descriptor config and its hash, the training
version and split, and the metrics measured at training time; it is validated against
``schemas/model_card.json`` when written and when read. Loading checks that the card and the
weights agree; a missing, corrupt or mismatched checkpoint is a clear
:class:`~pesdata.errors.ArtefactError`. Model kinds are found through
:mod:`pesdata.train.registry`: each kind writes its own ``state_dict`` and loads it back.

A model directory holds exactly the two files :func:`save_model` writes. It is written in a
staging directory swapped in whole (:func:`pesdata.atomic.atomic_dir`), and only a directory
that *is* a pesdata model (or an empty one) is ever replaced; any other path is an
:class:`~pesdata.errors.OutputError` (exit code 2), raised before any work.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..atomic import atomic_dir, check_output_path
from ..errors import ArtefactError, OutputError, ParameterError, PesdataError, SchemaError
from ..store import validate_artefact as validate
from .registry import get_model_class

__all__ = ["check_model_dir", "load_model", "save_model"]

CARD, WEIGHTS = "model_card.json", "model.pt"
FILES = (CARD, WEIGHTS)  # everything save_model writes


def _not_a_model(out: Path) -> str | None:
    """Why the existing directory ``out`` is not a pesdata model directory (None if it is)."""
    names = sorted(os.listdir(out))
    extra = [n for n in names if n not in FILES]
    if extra:
        shown = ", ".join(repr(n) for n in extra[:3]) + (" ..." if len(extra) > 3 else "")
        return f"it holds {shown}, which save_model does not write"
    for name in FILES:
        if name not in names:
            return f"no {name}"
        if not stat.S_ISREG(os.lstat(out / name).st_mode):
            return f"{name} is not a regular file"
    try:
        card = json.loads((out / CARD).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{CARD} cannot be read ({type(exc).__name__})"
    if not isinstance(card, dict):
        return f"{CARD} is not a JSON object"
    try:
        validate("model_card", card)
    except ArtefactError as exc:
        return f"{CARD} is not a valid model card: {exc}"
    return None


def check_model_dir(out: str | os.PathLike) -> Path:
    """``out`` as a Path if a model can be written there; else an error, before any work.

    A new path, an empty directory or a pesdata model directory (a schema-valid
    ``model_card.json`` and ``model.pt``, nothing else) may be replaced whole.

    Parameters
    ----------
    out : path-like
        The model directory ``save_model`` / ``pesdata train --out`` will write.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    OutputError
        ``out`` is a regular file, a symbolic link, a special file, or a non-empty directory
        that is not a pesdata model directory (exit code 2, as for every output path that
        cannot be written safely).
    """
    out = Path(out)
    if out.exists() and not out.is_symlink() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory; choose another model path")
    check_output_path(out, directory=True)  # symlinks, devices, FIFOs
    if out.is_dir() and any(out.iterdir()):
        reason = _not_a_model(out)
        if reason is not None:
            raise OutputError(f"{out}: a non-empty directory that is not a pesdata model "
                              f"directory ({reason}); refusing to replace it, choose "
                              "another model path")
    return out


def save_model(model, out: str | os.PathLike, **card) -> dict:
    """Write a fitted model to directory ``out`` with a model card, atomically.

    ``model`` is any registered model kind (:class:`LinearPotential`,
    :class:`HDNNPotential`, :class:`Committee`); ``card`` adds fields such as ``version``,
    ``split``, ``metrics``. Both files are written to a hidden staging directory beside
    ``out`` that then replaces ``out`` whole, so a killed run leaves the previous model (or
    none), never new weights beside an old card; the card also records the SHA-256 of the
    weights, checked on load.

    Parameters
    ----------
    model : Potential
        A fitted model of a registered kind.
    out : path-like
        The model directory (see :func:`check_model_dir`).
    **card
        Extra card fields.

    Returns
    -------
    dict
        The card as written.

    Raises
    ------
    OutputError
        ``out`` may not be replaced (see :func:`check_model_dir`).
    ArtefactError
        The card holds a non-finite number or fails ``schemas/model_card.json``.
    """
    out = check_model_dir(out)
    state = model.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    weights = buf.getvalue()
    doc = {
        "kind": model.kind,
        "descriptor": model.descriptor.config(),
        "descriptor_hash": model.descriptor.config_hash,
        "n_weights": int(sum(t.numel() for t in state.values())),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "params": model.params(),
        "created": datetime.now(timezone.utc).isoformat(),
        **card,
    }
    try:
        text = json.dumps(doc, indent=2, default=str, allow_nan=False)
    except ValueError as exc:  # NaN/inf would make the card invalid JSON
        raise ArtefactError(f"{out}/{CARD}: the model card holds a non-finite number "
                            "(NaN or inf); nothing written") from exc
    validate("model_card", json.loads(text))
    with atomic_dir(out) as stage:
        (stage / WEIGHTS).write_bytes(weights)
        (stage / CARD).write_text(text)
    return json.loads(text)


def load_model(path: str | os.PathLike) -> tuple:
    """Load a model directory written by :func:`save_model`.

    Parameters
    ----------
    path : path-like
        The model directory.

    Returns
    -------
    tuple
        ``(model, card)``: the model, ready to predict, and its card as a dict.

    Raises
    ------
    ArtefactError
        ``path`` is not a model directory, or its card and weights are unreadable, fail the
        schema or disagree (descriptor hash, weight count, SHA-256, shapes).
    """
    from ..descriptors import from_config

    path = Path(path)
    for name in FILES:
        if not (path / name).is_file():
            raise ArtefactError(f"{path}: not a pesdata model directory (no {name})")
    try:
        card = json.loads((path / CARD).read_text())
        weights = (path / WEIGHTS).read_bytes()  # read once: the bytes hashed are those loaded
        state = torch.load(io.BytesIO(weights), weights_only=True)
    except Exception as exc:  # any failure to read or unpickle: the checkpoint is unusable
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise ArtefactError(f"{path}: cannot read the checkpoint ({reason})") from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(t) for t in state.values()):
        raise ArtefactError(f"{path}/{WEIGHTS}: not a dict of tensors")
    kind = card.get("kind") if isinstance(card, dict) else None
    try:
        cls = get_model_class(kind) if isinstance(kind, str) else None
    except ParameterError as exc:
        raise ArtefactError(f"{path}: unknown model kind {kind!r}") from exc
    if cls is None:
        raise ArtefactError(f"{path}: unknown model kind {kind!r}")
    try:
        validate("model_card", card)
    except ArtefactError as exc:
        raise ArtefactError(f"{path}/{CARD}: {exc}") from exc
    try:
        descriptor = from_config(card["descriptor"])
    except (KeyError, SchemaError) as exc:
        raise ArtefactError(f"{path}: bad descriptor in model card ({exc})") from exc
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
    try:
        model = cls.from_params(descriptor, **dict(card.get("params") or {}))
        model.load_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError, PesdataError) as exc:
        reason = " ".join(str(exc).split())  # load_state_dict lists mismatches on many lines
        raise ArtefactError(f"{path}: weights do not fit the card's model ({reason})") from exc
    return model, card
