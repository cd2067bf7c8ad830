"""Atomic-environment descriptors in torch (ACSF), and their Zarr cache for store versions."""

from ._cache import describe, load_descriptors
from ._config import from_config
from .acsf import ACSF, default_acsf_params
from .ptsd import PTSD, default_ptsd_params

__all__ = [
    "ACSF",
    "PTSD",
    "default_acsf_params",
    "default_ptsd_params",
    "describe",
    "from_config",
    "load_descriptors",
]
