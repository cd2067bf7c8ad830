"""Atomic-environment descriptors in torch: ACSF (G1, G2, G4, G5)."""

from .acsf import ACSF, default_acsf_params

__all__ = ["ACSF", "default_acsf_params"]
