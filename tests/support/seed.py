"""The seed's own code (deriva-ml eb491eee / fbada78a), transcribed for side-by-side tests.

Only what our tests compare against: the spec builder and the path builder, with the
seed's behaviour kept exactly (including its bugs), so each quirk test can show the
seed failing and us working on the same input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deriva_upload.layout import asset_file_regex, exec_dir_regex, table_regex, asset_path_regex, feature_table_dir_regex

NULL_SENTINEL = "__NULL__"
DerivaSystemColumns = ["RID", "RCT", "RMT", "RCB", "RMB"]


def seed_asset_table_upload_spec(model, asset_table, chunk_size=None):
    metadata_columns = sorted(model.asset_metadata(asset_table))
    asset_table = model.name_to_table(asset_table)
    schema = model.name_to_table(asset_table).schema.name
    metadata_path = "/".join([rf"(?P<{c}>[-:._ \w]+)" for c in metadata_columns])
    rid_path = r"(?P<RID>[-A-Z0-9]+)"
    parts = [metadata_path, rid_path] if metadata_path else [rid_path]
    asset_path = f"{exec_dir_regex}/asset/{schema}/{asset_table.name}/" f"{'/'.join(parts)}/{asset_file_regex}"
    hatrac_options = {"versioned_urls": True}
    if chunk_size is not None:
        hatrac_options["chunk_size"] = chunk_size
    spec = {
        "column_map": {"MD5": "{md5}", "URL": "{URI}", "Length": "{file_size}", "Filename": "{file_name}", "RID": "{RID}"}
        | {c: f"{{{c}}}" for c in metadata_columns},
        "file_pattern": asset_path,
        "asset_type": "file",
        "target_table": [schema, asset_table.name],
        "checksum_types": ["sha256", "md5"],
        "hatrac_options": hatrac_options,
        "hatrac_templates": {
            "hatrac_uri": f"/hatrac/{asset_table.name}/{{md5}}.{{file_name}}",
            "content-disposition": "filename*=UTF-8''{file_name}",
        },
        "record_query_template": "/entity/{target_table}/MD5={md5}&Filename={file_name}",
        "use_pre_allocated_rid": True,
    }
    if metadata_columns:
        spec["pre_processors"] = [
            {"processor": "NullSentinelProcessor",
             "processor_type": "deriva_ml.asset.null_sentinel_processor.NullSentinelProcessor"}
        ]
    return spec


def seed_bulk_upload_configuration(model, chunk_size=None):
    return {
        "asset_mappings": [seed_asset_table_upload_spec(model, t, chunk_size) for t in model.find_assets()]
        + [{
            "asset_type": "table",
            "default_columns": ["RID", "RCB", "RMB", "RCT", "RMT"],
            "file_pattern": table_regex,
            "ext_pattern": "^.*[.](?P<file_ext>json|csv)$",
            "target_table": ["{schema}", "{table}"],
        }],
        "version_update_url": "https://github.com/informatics-isi-edu/deriva-client",
        "version_compatibility": [[">=1.4.0", "<2.0.0"]],
    }


def seed_asset_file_path(prefix, exec_rid, asset_table, file_name, metadata: dict[str, Any], column_order=None):
    """The seed's path builder; ``column_order`` stands in for its hash-seed-dependent set order."""
    path = Path(prefix) / "deriva-ml" / "execution" / exec_rid / "asset" / asset_table.schema.name / asset_table.name
    asset_columns = {"Filename", "URL", "Length", "MD5", "Description"}.union(set(DerivaSystemColumns))
    asset_metadata = {c.name for c in asset_table.columns} - asset_columns
    if not (asset_metadata >= set(metadata.keys())):
        raise ValueError(f"Metadata {metadata} does not match asset metadata {asset_metadata}")
    for m in (column_order or asset_metadata):
        path = path / str(metadata.get(m, NULL_SENTINEL))
    return path / file_name


def seed_normalize_asset_dir(path):
    path = Path(path)
    if not (m := re.match(asset_path_regex, str(path))):
        return None
    return f"{m['schema']}/{m['asset_table']}", path.name


def seed_is_feature_dir(path):
    return re.match(feature_table_dir_regex + "$", path.as_posix())
