"""ASE internals pesdata relies on: fail loudly, naming the missing name, if an ASE release drops
or changes them (pyproject says ``ase>=3.23``; these are not ASE's public API).

This module imports only ASE, so it reports clearly even when ``import pesdata.frames`` itself
fails on a missing name.
"""

import ase
import ase.io.extxyz
import numpy as np
import pytest
from ase.build import bulk
from ase.constraints import FixAtoms, FixCartesian

# name in ase.io.extxyz -> where pesdata uses it
USED = {
    "_make_move_mask": "pesdata/frames.py (constraints → move_mask)",
    "_read_xyz_frame": "pesdata/io/_extxyz.py (ASE's parser for frames the fast path leaves)",
    "key_val_str_to_dict": "pesdata/io/_extxyz.py (comment lines with escapes/nesting)",
    "parse_properties": "pesdata/io/_extxyz.py (Properties= column specs)",
    "per_config_properties": "pesdata/io/_extxyz.py (info keys that are calculator results)",
    "UNPROCESSED_KEYS": "pesdata/io/_extxyz.py (comment keys kept as strings)",
    "SPECIAL_3_3_KEYS": "pesdata/io/_extxyz.py (comment keys reshaped to 3×3)",
}


@pytest.mark.parametrize("name", sorted(USED))
def test_ase_extxyz_still_has_the_names_pesdata_uses(name):
    if not hasattr(ase.io.extxyz, name):
        pytest.fail(
            f"ase {ase.__version__} has no ase.io.extxyz.{name}, which {USED[name]} uses: "
            "pin ASE below this release (pyproject) or replace the call",
            pytrace=False,
        )


def test_make_move_mask_gives_extxyz_s_mask():
    atoms = bulk("Cu", cubic=True)
    atoms.set_constraint(FixAtoms(indices=[0]))
    mask = ase.io.extxyz._make_move_mask(atoms)
    assert mask.dtype == bool and mask.tolist() == [False, True, True, True]
    atoms.set_constraint(FixCartesian(1, mask=[True, False, False]))
    mask = ase.io.extxyz._make_move_mask(atoms)
    assert mask.shape == (4, 3) and mask[1].tolist() == [False, True, True]


def test_read_xyz_frame_takes_an_iterator_of_lines_and_an_atom_count():
    lines = [
        'Lattice="4 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 '
        'pbc="T T T"',
        "Cu 0 0 0 0.1 0 0",
        "Cu 2 2 0 -0.1 0 0",
    ]
    atoms = ase.io.extxyz._read_xyz_frame(iter(lines), 2)
    assert atoms.get_chemical_formula() == "Cu2"
    assert atoms.get_potential_energy() == -1.5
    np.testing.assert_array_equal(atoms.get_forces()[:, 0], [0.1, -0.1])
    props = ase.io.extxyz.parse_properties("species:S:1:pos:R:3")
    assert len(props) == 4  # properties, names, dtype, converters
    assert ase.io.extxyz.key_val_str_to_dict('a=1 b="x y"') == {"a": 1, "b": "x y"}
