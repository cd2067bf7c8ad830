"""Atomic-environment descriptors in torch (ACSF, PTSD), and their Zarr cache for store versions.

Write your own by subclassing :class:`Descriptor` (see its docstring for the contract) and check
it with :class:`pesdata.testing.DescriptorTests`.
"""

from ._base import Batch, Descriptor, batch_atoms, check_device, config_hash, species_numbers
from ._cache import describe, load_descriptors
from ._config import from_config
from .acsf import ACSF, default_acsf_params
from .ptsd import PTSD, default_ptsd_params

__all__ = [
    "ACSF",
    "PTSD",
    "Batch",
    "Descriptor",
    "batch_atoms",
    "check_device",
    "config_hash",
    "default_acsf_params",
    "default_ptsd_params",
    "describe",
    "from_config",
    "load_descriptors",
    "species_numbers",
]
