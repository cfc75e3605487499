"""The upload spec: the JSON that tells an uploader which file goes to which table.

``asset_table_upload_spec`` and ``bulk_upload_configuration`` return the seed's dict
(same keys, same regexes, same templates) so deriva-py's unchanged GenericUploader
accepts it, with two deliberate differences:

* the NullSentinel pre-processor names our :class:`deriva_upload.processors.NullSentinelProcessor`
  (quirk 14: deriva-ml's class path is importable nowhere a user can install);
* a metadata column whose name is not a valid regex group name gets a sanitized group
  name, and ``column_map`` maps the real column to it (quirk 6).
"""

from __future__ import annotations

import re
from typing import Any

from deriva.core.ermrest_model import Table

from .layout import asset_file_regex, exec_dir_regex, table_regex
from .model import DerivaModel

NULL_SENTINEL_PROCESSOR = "deriva_upload.processors.NullSentinelProcessor"

# Group names the asset file pattern itself uses; a metadata column must not reuse them.
_RESERVED_GROUPS = frozenset({"execution_rid", "RID", "file", "ext"})


def metadata_group_names(columns: list[str]) -> dict[str, str]:
    """Map each metadata column to a distinct, valid regex group name (quirk 6).

    Valid, non-reserved names map to themselves, so ordinary models get the seed's
    exact dict.
    """
    used: set[str] = set(_RESERVED_GROUPS)
    out: dict[str, str] = {}
    pending: list[str] = []
    for c in columns:
        if c.isidentifier() and c not in _RESERVED_GROUPS and c not in used:
            out[c] = c
            used.add(c)
        else:
            pending.append(c)
    for c in pending:
        base = re.sub(r"\W", "_", c)
        if not base or not base.isidentifier():
            base = f"_{base}"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        out[c] = name
        used.add(name)
    return out


def asset_table_upload_spec(model: DerivaModel, asset_table: str | Table, chunk_size: int | None = None) -> dict:
    """Upload-spec mapping for one asset table (the seed's form; see module docstring)."""
    metadata_columns = sorted(model.asset_metadata(asset_table))
    table = model.name_to_table(asset_table)
    schema = table.schema.name
    groups = metadata_group_names(metadata_columns)

    metadata_path = "/".join([rf"(?P<{groups[c]}>[-:._ \w]+)" for c in metadata_columns])
    rid_path = r"(?P<RID>[-A-Z0-9]+)"
    parts = [metadata_path, rid_path] if metadata_path else [rid_path]
    asset_path = f"{exec_dir_regex}/asset/{schema}/{table.name}/{'/'.join(parts)}/{asset_file_regex}"

    hatrac_options: dict[str, Any] = {"versioned_urls": True}
    if chunk_size is not None:
        hatrac_options["chunk_size"] = chunk_size

    spec: dict[str, Any] = {
        "column_map": {
            "MD5": "{md5}",
            "URL": "{URI}",
            "Length": "{file_size}",
            "Filename": "{file_name}",
            "RID": "{RID}",
        }
        | {c: f"{{{groups[c]}}}" for c in metadata_columns},
        "file_pattern": asset_path,
        "asset_type": "file",
        "target_table": [schema, table.name],
        "checksum_types": ["sha256", "md5"],
        "hatrac_options": hatrac_options,
        "hatrac_templates": {
            "hatrac_uri": f"/hatrac/{table.name}/{{md5}}.{{file_name}}",
            "content-disposition": "filename*=UTF-8''{file_name}",
        },
        "record_query_template": "/entity/{target_table}/MD5={md5}&Filename={file_name}",
        "use_pre_allocated_rid": True,
    }
    if metadata_columns:
        spec["pre_processors"] = [
            {"processor": "NullSentinelProcessor", "processor_type": NULL_SENTINEL_PROCESSOR}
        ]
    return spec


def bulk_upload_configuration(model: DerivaModel, chunk_size: int | None = None) -> dict[str, Any]:
    """The whole upload spec: one mapping per asset table, then the table-file mapping."""
    all_asset_mappings = [
        asset_table_upload_spec(model=model, asset_table=t, chunk_size=chunk_size) for t in model.find_assets()
    ]
    return {
        "asset_mappings": all_asset_mappings
        + [
            {
                "asset_type": "table",
                "default_columns": ["RID", "RCB", "RMB", "RCT", "RMT"],
                "file_pattern": table_regex,
                "ext_pattern": "^.*[.](?P<file_ext>json|csv)$",
                "target_table": ["{schema}", "{table}"],
            },
        ],
        "version_update_url": "https://github.com/informatics-isi-edu/deriva-client",
        "version_compatibility": [[">=1.4.0", "<2.0.0"]],
    }
