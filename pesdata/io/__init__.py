"""Reading and writing structure files.

:func:`read_frames` streams :class:`~pesdata.frames.Frame` objects from any file ASE reads (and
from aenet XSF files, whose forces are already in eV/Å), naming file and frame in every error.
:func:`write_atoms` writes ``ase.Atoms`` to any format ASE writes (extxyz, ASE db, ...).
"""

from ._read import detect_format, iter_atoms, read_frames
from ._write import write_atoms

__all__ = ["detect_format", "iter_atoms", "read_frames", "write_atoms"]
