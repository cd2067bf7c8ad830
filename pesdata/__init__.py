"""pesdata: versioned, curated datasets for machine-learning interatomic potentials.

>>> import pesdata
>>> store = pesdata.open_store("my-store", create=True)       # doctest: +SKIP
>>> report = store.curate(["train.extxyz"], method="PBE")      # doctest: +SKIP
>>> snap = store.read()                                        # doctest: +SKIP
>>> snap.to_pandas().head()                                    # doctest: +SKIP

The public names are imported on first use (PEP 562), so ``import pesdata`` and the command
line start fast: torch, scikit-learn and zarr load only in the commands that compute with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import PesdataError

__version__ = "0.1.0"

_LAZY = {
    "CurateReport": "pesdata.curate",
    "Frame": "pesdata.frames",
    "LabelKeys": "pesdata.frames",
    "Snapshot": "pesdata.store",
    "Store": "pesdata.store",
    "open_store": "pesdata.store",
}

__all__ = [
    "CurateReport",
    "Frame",
    "LabelKeys",
    "PesdataError",
    "Snapshot",
    "Store",
    "__version__",
    "open_store",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .curate import CurateReport
    from .frames import Frame, LabelKeys
    from .store import Snapshot, Store, open_store


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pesdata' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
