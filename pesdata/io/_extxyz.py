"""Extended XYZ, read with ASE's own parsers and a vectorised atom block.

ASE's extxyz reader converts every token of every atom line with a Python call, which makes
parsing the bulk of ingest time. This reader gives the same frames as
``ase.io.iread(path, format="extxyz")`` — it uses ASE's comment-line parser
(``key_val_str_to_dict``), ASE's ``parse_properties`` and ASE's ``set_calc_and_arrays`` — but
parses the atom lines of a run of frames that share one ``Properties`` string in a single
pandas C-parser call. Any frame it cannot take whole (wrong token count, odd booleans or NaN
spellings, constraints, VEC cell lines) goes through ASE's own ``_read_xyz_frame``, so edge
cases behave and fail as in ASE — except where ASE would trust a header that lies
(:mod:`._guards`): a ``Properties`` count of 10¹¹ or 0, an atom line with more or fewer values
than declared (ASE drops the extra ones), a ``pbc`` of words, a key given twice with a value
(ASE keeps the last) are refused, naming the frame and the field. A test compares the
two readers frame by frame on every extxyz file of the shared data sets.
"""

from __future__ import annotations

import csv
import io
import itertools
import lzma
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from ase.calculators.calculator import all_properties
from ase.data import atomic_numbers
from ase.io import extxyz as _ase_extxyz
from ase.io.formats import get_compression, open_with_compression

from ..errors import InputError
from ..frames import AtomsParts
from ._comment import key_val_str_to_dict
from ._guards import HeaderError, check_atom_tokens, check_pbc, check_properties

__all__ = ["VecFile", "iread_extxyz", "quote", "shorten"]

_COUNT_LINE_MAX = 4096  # an atom-count line longer than this is not one: never read it whole

_BOOL = {"T": True, "F": False, "True": True, "False": False}
_DEFAULT_PROPERTIES = "species:S:1:pos:R:3"
_NUMBERS = "\0numbers"  # parsed column of atomic numbers derived from 'species'


def _header(comment: str) -> tuple[dict, str]:
    """The info dict and Properties string of a comment line, checked (see :mod:`._guards`)."""
    info = key_val_str_to_dict(comment) if comment.strip() else {}
    props = info.get("Properties", _DEFAULT_PROPERTIES)
    if "pbc" in info:
        check_pbc(info["pbc"])
    if isinstance(props, str):
        check_properties(props)
        return info, props
    return info, ""


def _parse_block(text: str, dtype: np.dtype, n_total: int) -> dict | None:
    """Columns of a run of atom lines with pandas' C parser; None when ASE must decide."""
    ncols = len(dtype.names)
    text_cols = {j: str for j, f in enumerate(dtype.names) if dtype.fields[f][0].kind in "Ob"}
    try:
        # tokens split on whitespace only, as ASE splits atom lines: quotes are characters
        # (QUOTE_NONE), and no names, so that a line with more tokens than columns widens the
        # frame (a shape mismatch, ASE decides) instead of pushing a column into the index
        df = pd.read_csv(
            io.StringIO(text), sep=r"\s+", header=None, dtype=text_cols, na_filter=False,
            engine="c", quoting=csv.QUOTE_NONE,
        )
    except (ValueError, pd.errors.ParserError):
        return None
    if df.shape != (n_total, ncols):
        return None
    out = {}
    for j, field in enumerate(dtype.names):
        kind = dtype.fields[field][0].kind
        col = df[j]
        if kind == "f":
            if col.dtype.kind not in "fi":
                return None  # nan/inf spelled oddly, or a missing token: ASE decides
            out[field] = col.to_numpy(dtype=np.float64)
        elif kind == "i":
            if col.dtype.kind != "i":
                return None
            out[field] = col.to_numpy(dtype=dtype.fields[field][0])
        elif kind == "b":
            values = col.to_numpy(dtype=object)
            if not np.isin(values, list(_BOOL)).all():
                return None
            out[field] = np.isin(values, ("T", "True"))
        else:
            values = col.to_numpy(dtype=object)
            if (values == "").any():  # a missing token padded by pandas: ASE decides
                return None
            out[field] = values
    species = [f for f in dtype.names if f == "species"]
    if species:
        try:
            out[_NUMBERS] = _species_numbers(out["species"])
        except KeyError:
            return None  # an unknown symbol: ASE's error
    return out


def _build(info: dict, props: str, columns: dict, a: int, b: int) -> AtomsParts:
    """One frame from its header and rows a:b of the parsed columns.

    Mirrors ``ase.io.extxyz._read_xyz_frame`` + ``set_calc_and_arrays`` without building an
    ``ase.Atoms``: per-atom names in ``all_properties`` and per-config keys ASE treats as
    results become calculator results, a 3×3 stress becomes Voigt.
    """
    properties, names, _, _ = _ase_extxyz.parse_properties(props)
    n = b - a
    pbc = info.pop("pbc", None)
    if pbc is None and "Lattice" in info:
        pbc = True
    cell = info.pop("Lattice").T if "Lattice" in info else np.zeros((3, 3))
    info.pop("Properties", None)
    arrays = {}
    for name in names:
        ase_name, cols = properties[name]
        if cols == 1:
            arrays[ase_name] = columns[name][a:b]
        else:
            arrays[ase_name] = np.stack([columns[f"{name}{c}"][a:b] for c in range(cols)], 1)
    numbers = arrays.pop("numbers", None)
    symbols = arrays.pop("symbols", None)
    if numbers is None and symbols is not None:
        numbers = columns[_NUMBERS][a:b]
    positions = arrays.pop("positions", None)
    if "initial_charges" in arrays:
        arrays["initial_charges"] = arrays["initial_charges"].astype(float)
    results = {k: arrays.pop(k) for k in list(arrays) if k in all_properties}
    for key in list(info):
        if key in _ase_extxyz.per_config_properties:
            value = info.pop(key)
            if key == "stress" and np.shape(value) == (3, 3):
                value = np.array(
                    [value[0, 0], value[1, 1], value[2, 2], value[1, 2], value[0, 2], value[0, 1]]
                )
            results[key] = value
    return AtomsParts(
        numbers=np.asarray(numbers if numbers is not None else np.zeros(n), dtype=np.int64),
        positions=np.zeros((n, 3)) if positions is None else np.asarray(positions, dtype=float),
        cell=np.asarray(cell, dtype=float),
        pbc=np.broadcast_to(np.asarray(False if pbc is None else pbc, dtype=bool), 3).copy(),
        info=info,
        arrays=arrays,
        results=results,
    )


def _species_numbers(species: np.ndarray) -> np.ndarray:
    """Atomic numbers of a species column, as ASE maps capitalised symbols."""
    uniq, inverse = np.unique(species.astype(str), return_inverse=True)
    lut = np.array([atomic_numbers[s.capitalize()] for s in uniq], dtype=np.int64)
    return lut[inverse.reshape(-1)]


def _slow(comment: str, lines: list[bytes] | list[str], natoms: int) -> AtomsParts:
    """One frame through ASE's own reader (its behaviour and errors), after the checks of
    :mod:`._guards`: a header that lies raises :class:`HeaderError` before ASE trusts it."""
    text = [ln.decode("utf-8") if isinstance(ln, bytes) else ln for ln in lines]
    try:
        _, props = _header(comment)
    except HeaderError:
        raise
    except Exception:  # noqa: BLE001 - a comment line ASE refuses: ASE's own error below
        props = ""
    if props:
        check_atom_tokens(text, check_properties(props))
    return AtomsParts.from_atoms(_ase_extxyz._read_xyz_frame(iter([comment, *text]), natoms))


def _chunk(frames: list[tuple[str, list[bytes], int, str]]) -> Iterator[AtomsParts]:
    """Parse a chunk of raw frames: runs sharing one Properties string in one pandas call.

    A frame whose comment line ASE's parser refuses goes alone through ASE's reader, which
    raises the same error when that frame's turn comes (earlier frames are yielded first).
    """
    headers: list[tuple[dict, str] | None] = []
    for comment, *_ in frames:
        try:
            headers.append(_header(comment))
        except Exception:  # noqa: BLE001 - re-raised by ASE's reader at this frame, in order
            headers.append(None)

    def props_of(k: int) -> str:
        return headers[k][1] if headers[k] is not None else ""

    i = 0
    while i < len(frames):
        props = props_of(i)
        j = i
        while j < len(frames) and props and props_of(j) == props:
            j += 1
        if j == i or "move_mask" in props:  # constraints or odd headers: ASE per frame
            yield _slow(*frames[i][:3])
            i += 1
            continue
        counts = [frames[k][2] for k in range(i, j)]
        dtype = _ase_extxyz.parse_properties(props)[2]
        text = "".join(frames[k][3] for k in range(i, j))
        columns = _parse_block(text, dtype, sum(counts)) if sum(counts) else None
        if columns is None:
            for k in range(i, j):
                yield _slow(*frames[k][:3])
        else:
            offset = 0
            for k, n in zip(range(i, j), counts, strict=True):
                yield _build(headers[k][0], props, columns, offset, offset + n)
                offset += n
        i = j


def shorten(text: str, limit: int = 200, length: int | None = None) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was when cut.

    ``length`` is the full length when ``text`` is already a prefix of a longer line.
    """
    length = len(text) if length is None else length
    return text if length <= limit else f"{text[:limit]}... ({length} characters)"


def quote(text: str, limit: int = 200, length: int | None = None) -> str:
    """``repr`` of ``text`` in at most about ``limit`` characters (see :func:`shorten`);
    control characters, which ``repr`` writes as 4-character escapes, count as such."""
    length = len(text) if length is None else length
    k = min(len(text), limit)
    while k and len(repr(text[:k])) > limit + 2:
        k //= 2
    if k == len(text) and length <= limit:
        return repr(text)
    return f"{text[:k]!r}... ({length} characters)"


class _Lines:
    """Bytes lines of a (possibly compressed) file, decoded strictly as UTF-8 per frame.

    Counts lines and frames so that every error names the frame (0-based) and line (1-based)
    where it happened, not where a read-ahead buffer happened to fail.
    """

    def __init__(self, path: str, fh) -> None:
        self.path, self.fh = path, fh
        self.lineno = 0  # lines consumed
        self.frame = 0  # index of the frame being read
        self.compressed = get_compression(path)[1] is not None
        self.size = None if self.compressed else os.fstat(fh.fileno()).st_size
        self._peeked: bytes | None = None

    def error(self, message: str, field: str | None = None, line: int | None = None) -> InputError:
        where = f"line {self.lineno if line is None else line}: "
        return InputError(where + message, path=self.path, frame=self.frame, field=field)

    def read_error(self, exc: BaseException) -> InputError:
        """The error for a read that failed (a cut or corrupt compressed stream, say)."""
        detail = shorten(str(exc).strip() or type(exc).__name__)
        if self.compressed:
            done = f"frames 0-{self.frame - 1} were read" if self.frame else "no frame was read"
            what = (
                "compressed file is truncated or corrupt: the stream fails after line "
                f"{self.lineno} ({type(exc).__name__}: {detail}); {done}"
            )
        else:
            what = f"cannot read the file after line {self.lineno} ({type(exc).__name__}: {detail})"
        return InputError(what, path=self.path, frame=self.frame)

    def decode(self, raw: bytes, line: int | None = None) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(
                f"not UTF-8 text ({exc.reason} at byte {exc.start}); is this an extxyz file?",
                line=line,
            ) from exc

    def readline(self, limit: int = -1) -> bytes:
        if self._peeked is not None:
            line, self._peeked = self._peeked, None
        else:
            line = self.fh.readline(limit)
        self.lineno += bool(line)
        return line

    def readlines(self, n: int) -> list[bytes]:
        """Up to ``n`` lines (fewer at the end of the file), read at C speed."""
        out = []
        if n > 0 and self._peeked is not None:
            if self._peeked:
                out.append(self._peeked)
                n -= 1
            self._peeked = None
        out.extend(itertools.islice(iter(self.fh.readline, b""), n))
        self.lineno += len(out)
        return out

    def peek(self) -> bytes:
        if self._peeked is None:
            self._peeked = self.fh.readline(_COUNT_LINE_MAX)
        return self._peeked

    def remaining(self) -> int | None:
        """Bytes left in an uncompressed file (None when compressed)."""
        if self.size is None:
            return None
        return self.size - self.fh.tell() + (len(self._peeked) if self._peeked else 0)

    def count(self) -> int | None:
        """The atom count of the next frame; None at the end of the file.

        Raises
        ------
        InputError
            The line is not a count, the count is negative or more than the rest of the file
            can hold (a hostile header must not make the reader loop or allocate), or a blank
            line sits in the middle of the file.
        """
        raw = self.readline(_COUNT_LINE_MAX)
        if not raw.strip():
            if raw and not self._only_whitespace_left():
                raise self.error("unexpected blank line after the previous frame")
            return None
        length = len(raw)
        if length == _COUNT_LINE_MAX and not raw.endswith(b"\n"):
            length += self._skip_line()  # a huge line: measure it, never hold it
        text = self.decode(raw[:_COUNT_LINE_MAX])
        try:
            natoms = int(text.split()[0])
        except ValueError as exc:
            raise self.error(
                f"expected the number of atoms, got {quote(text.rstrip(), length=length)}",
                field="atom count",
            ) from exc
        if natoms < 0:
            raise self.error(f"negative number of atoms {natoms}", field="atom count")
        left = self.remaining()
        if left is not None and natoms > (left + 1) // 2:
            raise self.error(
                f"the header claims {natoms} atoms but only {left} bytes follow in the file "
                "(each atom line takes at least 2)",
                field="atom count",
            )
        return natoms

    def _skip_line(self) -> int:
        n = 0
        while True:
            part = self.fh.readline(1 << 20)
            n += len(part)
            if not part or part.endswith(b"\n"):
                return n

    def _only_whitespace_left(self) -> bool:
        while True:
            part = self.fh.read(1 << 20)
            if not part:
                return True
            if part.strip():
                return False


def iread_extxyz(path: str | Path, chunk: int = 256) -> Iterator[AtomsParts]:
    """Yield the frames of an extxyz file as ASE's extxyz reader would, unassembled.

    ``Frame.from_parts`` of each equals ``Frame.from_atoms`` of ASE's ``Atoms``. Files
    compressed with gzip, bzip2 or xz (``.gz``, ``.bz2``, ``.xz``) are read as ASE reads them.

    Frames are read ``chunk`` at a time (memory stays flat with file size). Files whose first
    frame is followed by ``VEC`` cell lines (ADF-style XYZ) raise :class:`VecFile` before any
    frame is yielded, for the caller to hand them to ``ase.io.iread``.

    Raises
    ------
    InputError
        Text that is not UTF-8, a bad, negative or impossible atom count, a blank line
        inside the file, or a compressed stream that is cut or corrupt, naming the file, the
        frame and the line (every complete frame before it is yielded first). ASE's own errors (a
        truncated frame, a bad atom line) are raised as ASE raises them, after every earlier
        frame was yielded.
    """
    name = str(path)
    pending: list[tuple[str, list[bytes], int, str]] = []
    with open_with_compression(name, "rb") as fh:
        reader = _Lines(name, fh)
        while True:
            try:
                natoms = _guarded(reader, reader.count)
                if natoms is None:
                    break
                comment = reader.decode(_guarded(reader, reader.readline))
                first_line = reader.lineno + 1
                lines = _guarded(reader, reader.readlines, natoms)
            except InputError:
                yield from _chunk(pending)
                raise
            try:
                text = b"".join(lines).decode("utf-8")
            except UnicodeDecodeError:
                yield from _chunk(pending)
                for k, ln in enumerate(lines):
                    reader.decode(ln, line=first_line + k)  # raises, naming the line
                raise
            if reader.frame == 0 and _guarded(reader, reader.peek).lstrip().startswith(b"VEC"):
                raise VecFile
            if len(lines) < natoms:  # truncated: ASE's own error
                yield from _chunk(pending)
                yield _slow(comment, lines, natoms)
                return
            pending.append((comment, lines, natoms, text))
            reader.frame += 1
            if len(pending) >= chunk:
                yield from _chunk(pending)
                pending = []
    yield from _chunk(pending)


# what a decompressor raises on a cut or damaged stream (gzip: EOFError, BadGzipFile, zlib.error;
# bz2: EOFError, OSError; xz: EOFError, LZMAError); OSError also covers a failing disk
_READ_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)


def _guarded(reader: _Lines, read, *args):
    """``read(*args)``, a decompression or read failure raised as InputError at this frame."""
    try:
        return read(*args)
    except _READ_ERRORS as exc:
        raise reader.read_error(exc) from exc


class VecFile(Exception):
    """The file carries VEC cell lines; read it with ASE."""
