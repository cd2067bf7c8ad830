"""Descriptors from JSON configs (validated against ``schemas/descriptor_config.json``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ArtefactError, SchemaError
from ..store import validate_artefact as validate
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
        The config does not validate (the message names the offending field).
    """
    if not isinstance(config, dict):
        path = Path(config)
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{path}: cannot read descriptor config: {exc}") from None
    try:
        validate("descriptor_config", config)
    except ArtefactError as exc:
        message = str(exc).replace("descriptor_config artefact", "descriptor config")
        raise SchemaError(message) from None
    kwargs = {k: v for k, v in config.items() if k != "descriptor"}
    return _KINDS[config["descriptor"]](dtype=dtype, device=device, **kwargs)
