"""The property registry is the single source of the schema files."""

import json

import pyarrow as pa

from pesdata.schema import PROPERTIES, schema_document, structure_schema
from pesdata.store._artefacts import load_schema, schema_dir

from .conftest import ROOT


def test_structure_json_is_generated_from_registry():
    on_disk = json.loads((ROOT / "schemas" / "structure.json").read_text())
    assert on_disk == schema_document(), "schemas/structure.json is stale: run `make schemas`"


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

    for path in schema_dir().glob("*.json"):
        if path.name == "structure.json":
            continue
        jsonschema.Draft202012Validator.check_schema(load_schema(path.stem))
