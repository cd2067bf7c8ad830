"""Analysis: pandas views of a store and the HTML report (``pesdata report``).

>>> from pesdata.analysis import version_summary, versions, write_report   # doctest: +SKIP
>>> versions(store)                          # one row per version            # doctest: +SKIP
>>> version_summary(store, 3).query("by == 'config_type'")                    # doctest: +SKIP
>>> write_report(store, "report", model="my-model")   # report/index.html + PNGs    # doctest: +SKIP

Names are imported on first use: importing this package loads neither matplotlib nor torch
(the report's pictures import matplotlib when they are drawn).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_LAZY = {
    "version_summary": "pesdata.analysis.summary",
    "versions": "pesdata.analysis.summary",
    "ledgers": "pesdata.analysis.summary",
    "selections": "pesdata.analysis.summary",
    "loop_history": "pesdata.analysis.summary",
    "loop_names": "pesdata.analysis.summary",
    "models": "pesdata.analysis.summary",
    "efficiency_curves": "pesdata.analysis.summary",
    "descriptor_map": "pesdata.analysis.maps",
    "write_report": "pesdata.analysis.report",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr("pesdata.analysis", _LAZY, globals())
