"""A test kit for code built on pesdata, as :mod:`zarr.testing` is for zarr stores.

:class:`DescriptorTests` holds the contract every per-atom descriptor must meet,
:class:`CriterionTests` and :class:`DiversityTests` those of selection criteria and diversity
strategies; subclass one in a pytest module, point it at your implementation and data, and
pytest runs the whole set::

    from pesdata.testing import DescriptorTests

    class TestMyDescriptor(DescriptorTests):
        descriptor_factory = staticmethod(lambda dtype: MyDescriptor(["Si"], 5.0, dtype=dtype))
        structures_factory = staticmethod(lambda: ase.io.read("Si.extxyz", ":3"))

This package imports pytest, so it is imported only by tests, never by ``import pesdata``.
"""

from .criteria import CriterionTests, DiversityTests, permute_frames
from .descriptors import DescriptorTests

__all__ = ["CriterionTests", "DescriptorTests", "DiversityTests", "permute_frames"]
