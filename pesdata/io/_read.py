"""Streaming reader: any ASE format → :class:`~pesdata.frames.Frame`, errors with file and frame."""

from __future__ import annotations

import lzma
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import ase.io
from ase import Atoms
from ase.io.formats import UnknownFileTypeError, filetype, get_compression, ioformats

from ..errors import FormatError, InputError
from ..frames import AtomsParts, Frame, LabelKeys
from ._extxyz import VecFile, iread_extxyz, shorten
from ._guards import HeaderError, check_outcar, check_poscar, check_vasp_xml
from ._xsf_aenet import is_aenet_xsf, read_aenet_xsf

__all__ = ["detect_format", "iter_atoms", "read_frames"]

AENET_XSF = "aenet-xsf"
# what a decompressor raises on a cut or damaged stream (gzip: EOFError, BadGzipFile, zlib.error;
# bz2: EOFError, OSError; xz: EOFError, LZMAError)
_STREAM_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)
EXTRA_FORMATS = (AENET_XSF,)


def detect_format(path: str | os.PathLike, format: str | None = None) -> str:
    """Name the format of ``path``, checking that it is a readable, non-empty file.

    Parameters
    ----------
    path : path-like
        The structure file.
    format : str, optional
        An ASE format name (``extxyz``, ``vasp-out``, ``aims-output``, ...) or ``aenet-xsf``.
        Without it the format is guessed from the name and content as ASE does; ``.xsf`` files
        that open with aenet's ``# total energy`` comment are read as ``aenet-xsf``.

    Returns
    -------
    str
        The format name.

    Raises
    ------
    InputError
        The path does not exist, is a directory or is empty, or a compressed file's stream is
        cut or corrupt before the format could be guessed and its name does not tell it (a
        name that does, ``x.xyz.gz``, gives that format: the reader then names the frame).
    FormatError
        The format is unknown or cannot be guessed.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:  # missing, a dangling link, a symlink loop, a name too long
        what = "no such file" if isinstance(exc, FileNotFoundError) else (
            f"cannot open ({exc.strerror or type(exc).__name__})")
        if p.is_symlink() and isinstance(exc, FileNotFoundError):
            what = "a symbolic link to nothing"
        raise InputError(what, path=str(p)) from exc
    if p.is_dir():
        raise InputError("is a directory, not a structure file", path=str(p))
    if not p.is_file():
        raise InputError("is not a regular file (a FIFO, socket or device)", path=str(p))
    if st.st_size == 0:
        raise InputError("file is empty", path=str(p))
    if format is not None:
        if format not in ioformats and format not in EXTRA_FORMATS:
            known = ", ".join(sorted([*ioformats, *EXTRA_FORMATS]))
            raise FormatError(f"unknown format {format!r}; known formats: {known}", path=str(p))
        if format in ioformats and not ioformats[format].can_read:
            raise FormatError(f"ASE cannot read format {format!r}", path=str(p))
        return format
    try:
        fmt = filetype(str(p), guess=True)  # opens .gz/.bz2/.xz files decompressed
    except _STREAM_ERRORS as exc:
        if get_compression(str(p))[1] is None:
            raise FormatError(
                f"cannot tell the file format ({shorten(str(exc))}); name it with "
                "--format/format=",
                path=str(p),
            ) from exc
        # a cut or corrupt compressed stream: guess from the name alone, so that the reader
        # yields the frames before the damage and names the frame where it starts
        fmt = _format_from_name(p)
        if fmt is None:
            raise InputError(
                f"compressed file is truncated or corrupt ({type(exc).__name__}: "
                f"{shorten(str(exc).strip() or type(exc).__name__)}); its format cannot be "
                "told from the name nor read from the content",
                path=str(p),
                frame=0,
            ) from exc
        return fmt
    except (UnknownFileTypeError, ValueError, StopIteration) as exc:
        raise FormatError(
            f"cannot tell the file format ({shorten(str(exc))}); name it with --format/format=",
            path=str(p),
        ) from exc
    if fmt == "xsf" and is_aenet_xsf(p):
        return AENET_XSF
    if fmt not in ioformats or not ioformats[fmt].can_read:
        raise FormatError(f"format {fmt!r} cannot be read; name another with --format", path=str(p))
    return fmt


def _format_from_name(path: Path) -> str | None:
    """A readable format named by the file name alone (``x.xyz.gz`` → extxyz), or None."""
    try:
        fmt = filetype(str(path), read=False)
    except UnknownFileTypeError:
        return None
    if fmt == "xsf":
        try:
            return AENET_XSF if is_aenet_xsf(path) else fmt
        except _STREAM_ERRORS:
            return fmt
    return fmt if fmt in ioformats and ioformats[fmt].can_read else None


def iter_atoms(
    path: str | os.PathLike, format: str | None = None, parts: bool = False
) -> Iterator[Atoms | AtomsParts]:
    """Stream the frames of a file as ``ase.Atoms``; errors name the file and the frame.

    With ``parts=True`` extxyz frames come as :class:`~pesdata.frames.AtomsParts` from the
    vectorised reader (other formats still as ``ase.Atoms``).

    Parameters
    ----------
    path : path-like
        The structure file.
    format : str, optional
        Format name (see :func:`detect_format`).
    parts : bool
        Give extxyz frames as :class:`~pesdata.frames.AtomsParts`.

    Yields
    ------
    ase.Atoms or AtomsParts

    Raises
    ------
    InputError
        The file is missing, empty or cannot be parsed (names the file and the frame), or no
        frame could be read.
    FormatError
        The format is unknown or cannot be guessed.
    """
    fmt = detect_format(path, format)
    p = str(path)
    precheck = _PRECHECKS.get(fmt)
    if precheck is not None:
        try:
            precheck(p)
        except HeaderError as exc:
            raise InputError(str(exc), path=p, frame=0, field=exc.field) from exc
        except _STREAM_ERRORS:
            pass  # the reader below names the damage
    if fmt == AENET_XSF:
        it = read_aenet_xsf(Path(p))
    elif fmt == "extxyz" and parts:
        it = _extxyz(p)
    else:
        it = ase.io.iread(p, index=":", format=fmt)
    frame = 0
    while True:
        try:
            atoms = next(it)
        except StopIteration:
            break
        except InputError:  # the vectorised reader's own errors name file, frame and line
            raise
        except HeaderError as exc:  # a header that lies (see ._guards)
            raise InputError(str(exc), path=p, frame=frame, field=exc.field) from exc
        except Exception as exc:  # ASE parsers raise anything from IndexError to AssertionError
            text = str(exc).strip()
            msg = shorten(text.splitlines()[0]) if text else type(exc).__name__
            if isinstance(exc, _STREAM_ERRORS) and get_compression(p)[1] is not None:
                raise InputError(
                    f"compressed file is truncated or corrupt ({type(exc).__name__}: {msg})",
                    path=p,
                    frame=frame,
                ) from exc
            raise InputError(
                f"cannot parse ({type(exc).__name__}: {msg}); the file may be truncated or "
                f"not in format {fmt!r}",
                path=p,
                frame=frame,
            ) from exc
        yield atoms
        frame += 1
    if frame == 0:
        raise InputError(f"no frames could be read as format {fmt!r}", path=p)


# format checks before ASE's reader trusts a header (see ._guards)
_PRECHECKS = {"vasp": check_poscar, "vasp-out": check_outcar, "vasp-xml": check_vasp_xml}


def _extxyz(path: str) -> Iterator[Atoms | AtomsParts]:
    """The vectorised extxyz reader, or ASE's for files with VEC cell lines."""
    frames = iread_extxyz(path)
    try:
        first = next(frames)
    except VecFile:
        yield from ase.io.iread(path, index=":", format="extxyz")
        return
    except StopIteration:
        return
    yield first
    yield from frames


def read_frames(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    method: str | None = None,
    config_type: str | None = None,
    group: str | None = None,
    keys: LabelKeys | None = None,
) -> Iterator[Frame]:
    """Stream :class:`~pesdata.frames.Frame` objects from a structure file.

    Parameters
    ----------
    path : path-like
        Any file ASE reads, or an aenet XSF file.
    format : str, optional
        Format name when the extension is ambiguous (see :func:`detect_format`).
    method, config_type, group : str, optional
        Metadata for every frame; when absent, taken from each frame's ``info``.
    keys : LabelKeys, optional
        Non-standard label names (``dft_energy``, ``force``, ``dft_virial``, ...).

    Yields
    ------
    Frame
        With ``source`` set to ``"<path>#<frame>"``.

    Raises
    ------
    InputError
        The file cannot be read or a frame cannot be parsed or converted; names the file and
        the frame.
    FormatError
        The format is unknown or cannot be guessed.
    """
    name = str(path)
    for i, item in enumerate(iter_atoms(path, format, parts=True)):
        make = Frame.from_parts if isinstance(item, AtomsParts) else Frame.from_atoms
        try:
            frame = make(
                item,
                method=method,
                config_type=config_type,
                group=group,
                source=f"{name}#{i}",
                keys=keys,
            )
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"cannot convert frame: {shorten(str(exc))}", path=name, frame=i
            ) from exc
        yield frame  # outside the try: an error thrown into the generator is not relabelled
