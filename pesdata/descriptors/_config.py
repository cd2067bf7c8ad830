"""Descriptors from JSON configs (validated against ``schemas/descriptor_config.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ArtefactError, InputError, ParameterError, SchemaError
from ..store import validate_artefact as validate
from ._base import check_device
from .acsf import ACSF
from .ptsd import PTSD

__all__ = ["from_config"]

_KINDS = {"acsf": ACSF, "ptsd": PTSD}


def from_config(
    config: dict | str | os.PathLike,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
):
    """Build a descriptor from its config dict or a JSON file holding one.

    Parameters
    ----------
    config : dict or path-like
        The config (``{"descriptor": "acsf" | "ptsd", "species": [...], "r_cut": ...,
        ...}``, schema ``schemas/descriptor_config.json``) or the path of a JSON file
        holding one.
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    device : str or torch.device
        ``"cpu"`` or ``"cuda[:k]"``.

    Returns
    -------
    Descriptor
        An :class:`~pesdata.descriptors.ACSF` or :class:`~pesdata.descriptors.PTSD`.

    Raises
    ------
    InputError
        The config file is missing, unreadable or not JSON (the message names the file).
    SchemaError
        The config does not validate, or holds a value the descriptor refuses (an unknown
        element, non-finite parameters); the message names the file, if any, and the
        offending field.
    ParameterError
        ``dtype`` or ``device`` is not supported.
    """
    path = None
    if not isinstance(config, dict):
        path = Path(config)
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise InputError(f"cannot read descriptor config ({type(exc).__name__}: "
                             f"{reason[:200]})", path=str(path)) from exc
    try:
        validate("descriptor_config", config, where=path)
    except ArtefactError as exc:
        raise SchemaError(str(exc)) from exc
    kwargs = {k: v for k, v in config.items() if k != "descriptor"}
    check_device(device)  # an argument of this call, not of the config: ParameterError
    if dtype not in (torch.float32, torch.float64):
        raise ParameterError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    try:
        return _KINDS[config["descriptor"]](dtype=dtype, device=device, **kwargs)
    except ParameterError as exc:  # a value in the config: the config does not validate
        where = "descriptor config" if path is None else f"{path}: descriptor config"
        raise SchemaError(f"{where}: {exc}") from exc
