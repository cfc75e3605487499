"""The upload spec: equal to the seed's dict except the documented fixes."""

from __future__ import annotations

import re

import pytest
from deriva.core.ermrest_model import Column, builtin_types

from deriva_upload.layout import NULL_SENTINEL
from deriva_upload.processors import NullSentinelProcessor
from deriva_upload.spec import NULL_SENTINEL_PROCESSOR, asset_table_upload_spec, bulk_upload_configuration
from tests.support import seed
from tests.support.models import derivaml_model

OUR_PROCESSOR_FIX = "deriva_ml.asset.null_sentinel_processor.NullSentinelProcessor"


def _seedify(spec: dict) -> dict:
    """Our spec with quirk 14 undone, for comparison with the seed's dict."""
    for mapping in spec["asset_mappings"]:
        for p in mapping.get("pre_processors", []):
            assert p["processor_type"] == NULL_SENTINEL_PROCESSOR
            p["processor_type"] = OUR_PROCESSOR_FIX
    return spec


@pytest.mark.parametrize("kwargs", [
    {},
    {"image_metadata": []},
    {"extra_assets": {"Model_File": [Column.define("Epochs", builtin_types.int4),
                                     Column.define("arch", builtin_types.text)]}},
])
@pytest.mark.parametrize("chunk_size", [None, 10 * 1024 * 1024])
def test_bulk_configuration_equals_the_seed(kwargs, chunk_size) -> None:
    model = derivaml_model(**kwargs)
    ours = _seedify(bulk_upload_configuration(model, chunk_size=chunk_size))
    assert ours == seed.seed_bulk_upload_configuration(model, chunk_size=chunk_size)


def test_asset_spec_keys_and_values() -> None:
    model = derivaml_model()
    spec = asset_table_upload_spec(model, "Image", chunk_size=5)
    assert spec["target_table"] == ["test-schema", "Image"]
    assert spec["hatrac_options"] == {"versioned_urls": True, "chunk_size": 5}
    assert spec["column_map"]["Subject"] == "{Subject}"
    assert spec["use_pre_allocated_rid"] is True
    assert spec["pre_processors"] == [{"processor": "NullSentinelProcessor", "processor_type": NULL_SENTINEL_PROCESSOR}]
    assert "pre_processors" not in asset_table_upload_spec(model, "Execution_Metadata")
    table = model.name_to_table("Image")
    assert asset_table_upload_spec(model, table) == spec | {"hatrac_options": {"versioned_urls": True}}


def test_invalid_group_names_are_sanitized_and_mapped() -> None:
    # quirk 6: "(?P<Operator-Name>" is not a valid group; deriva-py raised re.error for every file.
    model = derivaml_model(image_metadata=[Column.define("Operator-Name", builtin_types.text),
                                           Column.define("Operator_Name", builtin_types.text),
                                           Column.define("file", builtin_types.text)])
    with pytest.raises(re.error):
        re.compile(seed.seed_asset_table_upload_spec(model, "Image")["file_pattern"])
    spec = asset_table_upload_spec(model, "Image")
    pattern = re.compile(spec["file_pattern"])
    groups = {spec["column_map"][c].strip("{}") for c in ("Operator-Name", "Operator_Name", "file")}
    assert len(groups) == 3 and groups <= set(pattern.groupindex)
    assert spec["column_map"]["Operator_Name"] == "{Operator_Name}"


def test_the_processor_path_is_importable_and_turns_sentinels_into_none() -> None:
    from deriva.transfer.upload.processors import find_processor

    cls = find_processor("NullSentinelProcessor", NULL_SENTINEL_PROCESSOR, bypass_whitelist=True)
    assert cls is NullSentinelProcessor
    md = {"Subject": NULL_SENTINEL, "Acquisition_Date": "2026-01-01"}
    cls(metadata=md, processor_params=None).process()
    assert md == {"Subject": None, "Acquisition_Date": "2026-01-01"}


def test_genericuploader_renders_null_as_a_missing_column() -> None:
    from deriva.transfer.upload.deriva_upload import DerivaUpload

    spec = asset_table_upload_spec(derivaml_model(), "Image")
    md = {"Subject": None, "Acquisition_Date": "2026-01-01", "Acquisition_Time": "t", "md5": "m",
          "URI": "/hatrac/x", "file_size": 3, "file_name": "a.png", "RID": "1-X"}
    row = DerivaUpload.interpolateDict(md, spec["column_map"])
    assert "Subject" not in row and row["Acquisition_Date"] == "2026-01-01"


def test_table_mapping_is_last() -> None:
    spec = bulk_upload_configuration(derivaml_model())
    assert spec["asset_mappings"][-1]["asset_type"] == "table"
    assert spec["version_compatibility"] == [[">=1.4.0", "<2.0.0"]]
