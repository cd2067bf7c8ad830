"""Atomic-environment descriptors in torch (ACSF), and their Zarr cache for store versions."""

from ._cache import describe, load_descriptors
from ._config import from_config
from .acsf import ACSF, default_acsf_params

__all__ = ["ACSF", "default_acsf_params", "describe", "from_config", "load_descriptors"]
