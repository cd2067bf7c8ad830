"""pesdata: versioned, curated datasets for machine-learning interatomic potentials.

>>> import pesdata
>>> store = pesdata.open_store("my-store", create=True)       # doctest: +SKIP
>>> report = store.curate(["train.extxyz"], method="PBE")      # doctest: +SKIP
>>> snap = store.read()                                        # doctest: +SKIP
>>> snap.to_pandas().head()                                    # doctest: +SKIP
"""

from .curate import CurateReport
from .errors import PesdataError
from .frames import Frame, LabelKeys
from .store import Snapshot, Store, open_store

__version__ = "0.1.0"

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
