"""The property registry is the single source of the schema files."""

import json

import numpy as np
import pyarrow as pa
import pytest

from pesdata.errors import SchemaError
from pesdata.schema import (
    PROPERTIES,
    array_field,
    array_kind,
    column_kind,
    schema_document,
    structure_schema,
)
from pesdata.store._artefacts import load_schema, schema_dir

from .conftest import ROOT


def test_structure_json_is_generated_from_registry():
    path = ROOT / "schemas" / "structure.json"
    assert path.is_file(), f"{path} is missing: run `make schemas`"
    on_disk = json.loads(path.read_text())
    assert on_disk == schema_document(), "schemas/structure.json is stale: run `make schemas`"
    assert [c["name"] for c in on_disk["columns"]] == [p.name for p in PROPERTIES]


def test_arrow_schema_matches_data_model():
    schema = structure_schema()
    assert schema.names == [p.name for p in PROPERTIES]
    assert schema.field("positions").type == pa.list_(pa.list_(pa.float64(), 3))
    assert schema.field("numbers").type == pa.list_(pa.int16())
    assert schema.field("cell").type == pa.list_(pa.float64(), 9)
    assert schema.field("stress").type == pa.list_(pa.float64(), 6)
    assert schema.field("energy").nullable and schema.field("forces").nullable
    assert not schema.field("positions").nullable
    assert schema.field("forces").metadata[b"unit"] == "eV/Å".encode()


def test_artefact_schemas_are_valid_json_schema():
    import jsonschema

    found = {p.stem for p in schema_dir().glob("*.json")}
    expected = {"structure", "curate_report", "descriptor_config", "model_card", "split"}
    assert expected <= found, f"schema files missing from {schema_dir()}: {expected - found}"
    for kind in sorted(found - {"structure"}):
        doc = load_schema(kind)
        jsonschema.Draft202012Validator.check_schema(doc)
        assert doc.get("type") == "object" and doc.get("properties"), kind
        with pytest.raises(jsonschema.ValidationError):  # a schema that validates nothing is no use
            jsonschema.validate([], doc)


@pytest.mark.parametrize(
    "values, kind, width, arrow",
    [
        (np.zeros(4), "float", None, pa.list_(pa.float64())),
        (np.zeros((4, 3)), "float", 3, pa.list_(pa.list_(pa.float64(), 3))),
        (np.arange(4, dtype=np.int32), "int", None, pa.list_(pa.int64())),
        (np.ones(4, dtype=bool), "bool", None, pa.list_(pa.bool_())),
        (np.array(["a", "b"]), "string", None, pa.list_(pa.string())),
        (np.array(["a", "b"], dtype=object), "string", None, pa.list_(pa.string())),
        (np.array([["a", "b"]], dtype=object), "string", 2, pa.list_(pa.list_(pa.string()))),
    ],
)
def test_array_kinds_and_columns_round_trip(values, kind, width, arrow):
    assert array_kind("x", values) == (kind, width)
    field = array_field("x", values)
    assert field.name == "arr_x" and field.type == arrow and field.nullable
    assert column_kind(field) == (kind, width)
    # a string column whose width metadata was lost takes any k
    if kind == "string" and width:
        assert column_kind(field.remove_metadata()) == ("string", -1)


@pytest.mark.parametrize(
    "values, match",
    [
        (np.zeros((2, 2, 2)), r"shape \(2, 2, 2\)"),
        (np.array([1 + 1j]), "unsupported dtype complex128"),
        (np.array([None, 1], dtype=object), "objects other than str"),
    ],
)
def test_unsupported_arrays_are_schema_errors(values, match):
    with pytest.raises(SchemaError, match=match):
        array_kind("x", values, source="f.xyz#2")
    with pytest.raises(SchemaError, match=r"^f.xyz#2: per-atom array 'x'"):
        array_kind("x", values, source="f.xyz#2")
