"""Hypothesis strategies for hostile input, as :mod:`zarr.testing.strategies` ships for stores.

:func:`extxyz_frames` draws valid extended-XYZ text (a few frames of a few atoms, labelled);
:func:`hostile_extxyz` draws such text and then mutates it: random header keys and values,
random tokens in atom lines, lying ``Properties`` and atom counts, NaN/inf/1e308 numbers,
dropped or repeated lines, random truncation. Feed the text to a reader or to ``curate`` and
check that it ends in a result or a :class:`~pesdata.errors.PesdataError`, never anything else::

    from hypothesis import given
    from pesdata.testing.strategies import hostile_extxyz

    @given(hostile_extxyz())
    def test_my_reader(text): ...

Imports Hypothesis, so it is imported only by tests.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

__all__ = ["ELEMENTS", "HOSTILE_TOKENS", "extxyz_frames", "hostile_extxyz", "numbers"]

#: Elements the valid frames are made of.
ELEMENTS = ("H", "C", "O", "Si", "Cu", "Au")

#: Tokens a mutation may put anywhere: numbers that break arithmetic, symbols that are no
#: element, quoting and markup characters, absurd integers, NUL, other keys' syntax.
HOSTILE_TOKENS = (
    "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e400", "1e300", "5e-324", "0", "-1",
    "99999999999999999999", "2.5", "0x10", "Xx", "X", "si", "T", "F", "", " ", "\0", "=", '"',
    "'", "[", "]", "{", "}", "\\", "[/]", "_JSON {", "_JSON [[[1]]]", "\u00e9", "\ufeff",
    "Properties=species:S:1", "species:S:1:pos:R:3:forces:R:99999999999",
    "species:S:1:pos:R:3:forces:Q:3", "species:R:1:pos:R:3", "pos:R:3",
)

#: Header keys a mutation may add (again) with a random value.
HEADER_KEYS = ("energy", "Lattice", "pbc", "Properties", "stress", "virial", "forces",
               "free_energy", "config_type", "method", "group", "REF_energy", "id", "source")


def numbers(hostile: bool = True) -> st.SearchStrategy[float]:
    """Floats for coordinates and labels: ordinary ones and, with ``hostile``, NaN, ±inf,
    1e308, subnormals and zeros."""
    plain = st.floats(-20.0, 20.0, allow_nan=False, allow_infinity=False)
    if not hostile:
        return plain
    odd = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1e300, 5e-324, 0.0])
    return st.one_of(plain, plain, plain, odd)


def _num(x: float) -> str:
    return repr(float(x))


@st.composite
def extxyz_frames(draw, max_frames: int = 3, max_atoms: int = 4,
                  hostile_numbers: bool = False) -> str:
    """Extended-XYZ text of 1..``max_frames`` frames of 1..``max_atoms`` atoms.

    Each frame has a periodic orthorhombic or a non-periodic cell, an energy and forces; with
    ``hostile_numbers`` the numbers may be NaN, ±inf or 1e308.
    """
    out = []
    for _ in range(draw(st.integers(1, max_frames))):
        n = draw(st.integers(1, max_atoms))
        num = numbers(hostile_numbers)
        periodic = draw(st.booleans())
        header = ["Properties=species:S:1:pos:R:3:forces:R:3", f"energy={_num(draw(num))}"]
        if periodic:
            a = draw(st.floats(2.0 * n + 2.0, 2.0 * n + 8.0))  # no atom meets an image
            header.insert(0, f'Lattice="{a!r} 0 0 0 {a!r} 0 0 0 {a!r}"')
            header.append('pbc="T T T"')
        else:
            header.append('pbc="F F F"')
        lines = [str(n), " ".join(header)]
        for k in range(n):
            sym = draw(st.sampled_from(ELEMENTS))
            base = (2.0 * k, 0.3 * k, 0.1)  # atoms 2 Å apart: valid unless mutated
            pos = [b + draw(st.floats(-0.2, 0.2)) for b in base]
            if hostile_numbers and draw(st.integers(0, 9)) == 0:
                pos[draw(st.integers(0, 2))] = draw(num)
            forces = [draw(num) for _ in range(3)]
            lines.append(" ".join([sym, *map(_num, pos), *map(_num, forces)]))
        out.append("\n".join(lines) + "\n")
    return "".join(out)


def _token() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_TOKENS),
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
    )


@st.composite
def _mutate(draw, text: str) -> str:
    """``text`` with 1..4 random mutations."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, max(len(lines) - 1, 0)))
        kind = draw(st.sampled_from(
            ["token", "token", "key", "count", "properties", "drop", "repeat", "line", "cut"]
        ))
        if kind == "token" and lines[k].split():
            tokens = lines[k].split(" ")
            tokens[draw(st.integers(0, len(tokens) - 1))] = draw(_token())
            lines[k] = " ".join(tokens)
        elif kind == "key":
            key = draw(st.sampled_from(HEADER_KEYS))
            value = " ".join(draw(st.lists(_token(), min_size=1, max_size=9)))
            lines[k] = f'{lines[k]} {key}="{value}"'
        elif kind == "count":
            lines[k] = str(draw(st.one_of(st.integers(-3, 10), st.integers(10**6, 10**20))))
        elif kind == "properties":
            fields = draw(st.lists(st.tuples(
                st.sampled_from(["species", "pos", "forces", "Z", "tags", "magmoms", "x"]),
                st.sampled_from(["S", "R", "I", "L", "Q"]),
                st.sampled_from(["1", "3", "0", "-1", "x", "99999999999"]),
            ), min_size=1, max_size=4))
            props = ":".join(":".join(f) for f in fields)
            lines[k] = f"{lines[k]} Properties={props}"
        elif kind == "drop" and len(lines) > 1:
            del lines[k]
        elif kind == "repeat":
            lines.insert(k, lines[k])
        elif kind == "line":
            lines[k] = " ".join(draw(st.lists(_token(), max_size=10)))
    out = "\n".join(lines)
    if draw(st.integers(0, 4)) == 0:  # a random cut, as a killed writer leaves a file
        out = out[: draw(st.integers(0, len(out)))]
    return out


@st.composite
def hostile_extxyz(draw, max_frames: int = 3, max_atoms: int = 4) -> str:
    """Extended-XYZ text, valid or mutated (about one example in eight is left valid)."""
    text = draw(extxyz_frames(max_frames, max_atoms,
                              hostile_numbers=draw(st.booleans())))
    if draw(st.integers(0, 7)) == 0:
        return text
    return draw(_mutate(text))
