"""DerivaModel: the seed's model questions, answered over deriva-py's Model."""

from __future__ import annotations

import pytest
from deriva.core.ermrest_model import Column, Table, builtin_types

from deriva_upload.errors import DerivaMLException
from deriva_upload.model import DerivaModel, is_asset_table
from tests.support.models import derivaml_model, derivaml_schema_doc


def test_find_assets_in_model_order() -> None:
    m = derivaml_model()
    assert [t.name for t in m.find_assets()] == ["Execution_Asset", "Execution_Metadata", "Image"]
    assert [t.name for t in m.find_assets(with_metadata=True)] == ["Image"]


def test_asset_metadata_is_sorted_and_excludes_asset_and_system_columns() -> None:
    m = derivaml_model()
    assert m.asset_metadata("Image") == ["Acquisition_Date", "Acquisition_Time", "Subject"]
    assert m.asset_metadata("Execution_Metadata") == []
    with pytest.raises(DerivaMLException, match="not an asset table"):
        m.asset_metadata("Subject")


def test_name_to_table() -> None:
    m = derivaml_model()
    img = m.name_to_table("Image")
    assert img.schema.name == "test-schema"
    assert m.name_to_table(img) is img
    assert m.name_to_table("deriva-ml:Asset_Type").name == "Asset_Type"
    with pytest.raises(DerivaMLException, match="Nope"):
        m.name_to_table("Nope")


def test_is_asset_needs_the_asset_annotation_and_not_null_columns() -> None:
    doc = derivaml_schema_doc()
    plain = Table.define("Fake", [Column.define(n, builtin_types.text, nullok=False) for n in ("URL", "Filename", "MD5")]
                         + [Column.define("Length", builtin_types.int8, nullok=False)])
    doc["schemas"]["test-schema"]["tables"]["Fake"] = plain
    m = DerivaModel.from_json(doc)
    assert not m.is_asset("Fake")
    assert m.is_asset("Image") and is_asset_table(m.name_to_table("Execution_Asset"))
    assert not m.is_asset("Subject")


def test_schemas_and_offline_host() -> None:
    m = derivaml_model()
    assert m.ml_schema == "deriva-ml"
    assert m.domain_schemas == frozenset({"test-schema"})
    assert m.default_schema == "test-schema"
    assert m.hostname == "localhost"
    assert m.is_vocabulary("Asset_Type") and not m.is_vocabulary("Image")
