"""``--to nequip``: extended XYZ for NequIP/Allegro's ``ASEDataModule``, one file per label set.

NequIP cannot batch frames that carry different fields: ``AtomicDataDict.batched_from_list``
raises ``Found inconsistent keys`` (nequip ``nequip/data/AtomicDataDict.py``). So each part is
written as one file per label set — ``train.extxyz`` for the frames with every label the export
has, ``train-no-stress.extxyz``, ``train-no-forces.extxyz``... for the others (the suffix names
what they lack against the union of labels over all parts) and ``train-unlabelled.extxyz``
for frames with none. Nothing is refused; a missing label is an absent key.

Keys: ``REF_energy`` (eV) and ``REF_stress`` (3×3 as 9 values, eV/Å³, ASE sign) on the comment
line, ``REF_forces`` (eV/Å) as a column, plus ``id``, ``config_type``, ``group``, ``method``; every
float exact (:mod:`pesdata.export._extxyz`). They reach NequIP through the ``key_mapping``
written to ``nequip-keys.yaml`` (and the manifest's ``notes``)::

    key_mapping: {REF_energy: total_energy, REF_forces: forces, REF_stress: stress}

Checked against NequIP's own source (mir-group/nequip, ``nequip/data/ase.py``,
``nequip/data/_keys.py``, ``nequip/data/datamodule/_ase_datamodule.py``,
``docs/guide/reference/conventions.md``, ``configs/tutorial.yaml``):

* ``from_ase`` reads ``atoms.arrays``, then ``atoms.info``, then a single-point calculator's
  results, for the keys in ASE's ``all_properties`` plus ``key_mapping``'s keys, renaming by
  ``key_mapping`` (``energy`` → ``total_energy`` by default);
* ``TOTAL_ENERGY_KEY = "total_energy"``, ``FORCE_KEY = "forces"``, ``STRESS_KEY = "stress"``;
  a 9-value stress is reshaped to 3×3 (a 6-vector through ``voigt_6_to_full_3x3_stress``);
* the stress sign is ASE's (``virial = -stress x volume``; positive = tensile);
* ``ASEDataModule`` takes ``train_file_path``/``val_file_path``/``test_file_path`` and
  ``key_mapping``; E0s go to the model's ``per_type_energy_shifts`` (a dict per type).
"""

from __future__ import annotations

from ._base import UNITS, Exporter, labels
from .extxyz import write_part

__all__ = ["NequipExporter"]

KEYS = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}
NEQUIP = {"energy": "total_energy", "forces": "forces", "stress": "stress"}
SNIPPET = "nequip-keys.yaml"


def _suffix(have: tuple[str, ...], union: tuple[str, ...]) -> str:
    if not have:
        return "-unlabelled"
    return "".join(f"-no-{name}" for name in union if name not in have)


class NequipExporter(Exporter):
    """NequIP extxyz: one file per part and label set, ``REF_*`` keys, a key_mapping snippet."""

    name = "nequip"

    def write(self, parts, out, e0):
        sets = {part: [tuple(k for k in KEYS if k in labels(a)) for a in frames]
                for part, frames in parts.items()}
        union = tuple(k for k in KEYS if any(k in s for ss in sets.values() for s in ss))
        files, counts, table = {}, {}, []
        for part, frames in parts.items():
            # a part's own labels name its files: a test part of energies and forces only is
            # test.extxyz even when the training part has stress
            own = tuple(k for k in KEYS if any(k in s for s in sets[part]))
            groups: dict[str, list] = {}
            for atoms, have in zip(frames, sets[part], strict=True):
                groups.setdefault(f"{part}{_suffix(have, own)}.extxyz", []).append(atoms)
            files[part], counts[part] = [], 0
            for name in sorted(groups, key=lambda n: (n != f"{part}.extxyz", n)):
                counts[part] += write_part(out / name, groups[name], KEYS["energy"],
                                           KEYS["forces"], KEYS["stress"])
                files[part].append(name)
                have = [k for k in union if k in labels(groups[name][0])]
                table.append((name, len(groups[name]), have))
        snippet = _snippet(files, table, e0, union)
        (out / SNIPPET).write_text(snippet, encoding="utf-8")
        notes = [f"NequIP ASEDataModule keys (also in {SNIPPET}): key_mapping: "
                 + "{" + ", ".join(f"{KEYS[k]}: {NEQUIP[k]}" for k in KEYS) + "}"]
        notes += [f"{name}: {n} structure(s) with {', '.join(have) or 'no labels'}"
                  for name, n, have in table]
        if len(table) > len(files):
            notes.append("NequIP cannot batch frames with different label sets "
                         "(batched_from_list: 'Found inconsistent keys'): train on one file "
                         "per run or give the others to a separate stage")
        if e0:
            notes.append("E0s for the model's per_type_energy_shifts: "
                         + ", ".join(f"{s}: {v!r}" for s, v in sorted(e0.items())))
        return {"files": files, "counts": counts,
                "key_mapping": dict(KEYS),
                "units": {**UNITS, "stress": "eV/Å³ (the 3x3 tensor as 9 values, ASE sign)"},
                "missing_labels": "the key is absent and the frame goes to a file of its own "
                                  "label set (<part>-no-<label>.extxyz, <part>-unlabelled."
                                  "extxyz): NequIP cannot batch mixed label sets",
                "notes": notes}


def _snippet(files: dict[str, list[str]], table: list, e0: dict[str, float],
             union: tuple[str, ...]) -> str:
    """The ``data:`` block for a NequIP config, with the other files as comments."""
    lines = ["# pesdata export --to nequip: paste into your NequIP config (nequip >= 0.7)",
             "data:",
             "  _target_: nequip.data.datamodule.ASEDataModule",
             "  seed: 456"]
    full = {part: f"{part}.extxyz" for part in files if f"{part}.extxyz" in files[part]}
    for part, key in (("train", "train_file_path"), ("validation", "val_file_path"),
                      ("test", "test_file_path"), ("all", "train_file_path")):
        if part in full and not (part == "all" and "train" in full):
            lines.append(f"  {key}: {full[part]}")
    lines.append("  key_mapping:")
    lines += [f"    {KEYS[k]}: {NEQUIP[k]}" for k in union]
    lines.append("  # label sets NequIP cannot batch together; each file has one:")
    lines += [f"  #   {name}: {n} structure(s), {', '.join(have) or 'no labels'}"
              for name, n, have in table]
    if e0:
        lines.append("# model: per_type_energy_shifts (isolated-atom energies, eV):")
        lines += [f"#   {s}: {v!r}" for s, v in sorted(e0.items())]
    return "\n".join(lines) + "\n"
