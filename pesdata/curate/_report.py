"""The curate report: what a curate run read, added, skipped and rejected, and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

__all__ = ["CurateReport"]


@dataclass
class CurateReport:
    """Outcome of one curate run (also saved as a ``curate_report`` artefact).

    Attributes
    ----------
    version : int
        The version written, or the unchanged latest version when nothing was written.
    previous_version : int
        The latest version before the run.
    committed : bool
        Whether a new version was written.
    read, added, duplicates, relabelled, unlabelled : int
        Frames read; new rows; frames already present (same geometry and method), conflicts
        included; unlabelled rows that received labels; frames without energy and forces.
    conflicts : list of dict
        Duplicates whose labels differ beyond 1 meV/atom or 1e-3 eV/Å: ``id``, ``sources``
        (kept, incoming), ``energy_per_atom_diff`` (eV/atom), ``max_force_diff`` (eV/Å).
    rejected : list of dict
        Invalid frames: ``source`` (file#frame) and ``reasons`` (validator, field, message,
        severity; outlier reasons also name the ``population`` compared with).
    warnings : list of str
        What the run did not refuse but the user should act on, e.g. label-like keys that
        were not mapped: ``"12 frame(s) carry per-atom 'force' but no forces were mapped:
        pass --forces-key force"``.
    """

    version: int
    previous_version: int
    files: list[str]
    message: str = ""
    quarantine: bool = False
    committed: bool = False
    read: int = 0
    added: int = 0
    duplicates: int = 0
    relabelled: int = 0
    unlabelled: int = 0
    conflicts: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Number of rejected frames per validator name (a frame counts once per validator)."""
        counts: Counter[str] = Counter()
        for entry in self.rejected:
            counts.update({r["validator"] for r in entry["reasons"]})
        return dict(sorted(counts.items()))

    def summary(self) -> dict:
        """The short machine-readable form printed by ``pesdata curate --json``."""
        return {
            "version": self.version,
            "read": self.read,
            "added": self.added,
            "duplicates": self.duplicates,
            "conflicts": len(self.conflicts),
            "rejected": len(self.rejected),
            "relabelled": self.relabelled,
            "unlabelled": self.unlabelled,
            "rejected_by_reason": self.rejected_by_reason,
            "committed": self.committed,
            "warnings": list(self.warnings),
        }

    def to_dict(self) -> dict:
        """The full report as a JSON-ready dict (the artefact document)."""
        doc = asdict(self)
        doc["rejected_by_reason"] = self.rejected_by_reason
        return doc

    def first_rejection(self) -> str:
        """One line naming the first rejected frame, its field and reason."""
        if not self.rejected:
            return ""
        entry = self.rejected[0]
        src = entry["source"]
        path, _, frame = src.rpartition("#")
        reason = entry["reasons"][0]
        return f"{path}: frame {frame}: field '{reason['field']}': {reason['message']}"
