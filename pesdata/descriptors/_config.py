"""Descriptors from JSON configs (validated against ``schemas/descriptor_config.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ArtefactError, ParameterError, SchemaError
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

    Raises
    ------
    SchemaError
        The config does not validate, or holds a value the descriptor refuses (an unknown
        element, non-finite parameters); the message names the offending field.
    ParameterError
        ``dtype`` or ``device`` is not supported.
    """
    if not isinstance(config, dict):
        path = Path(config)
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{path}: cannot read descriptor config: {exc}") from exc
    try:
        validate("descriptor_config", config)
    except ArtefactError as exc:
        message = str(exc).replace("descriptor_config artefact", "descriptor config")
        raise SchemaError(message) from exc
    kwargs = {k: v for k, v in config.items() if k != "descriptor"}
    check_device(device)  # an argument of this call, not of the config: ParameterError
    if dtype not in (torch.float32, torch.float64):
        raise ParameterError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    try:
        return _KINDS[config["descriptor"]](dtype=dtype, device=device, **kwargs)
    except ParameterError as exc:  # a value in the config: the config does not validate
        raise SchemaError(f"descriptor config: {exc}") from exc
