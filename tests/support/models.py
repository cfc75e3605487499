"""DerivaML-like model documents for offline tests (built with deriva-py's define helpers)."""

from __future__ import annotations

from deriva.core.ermrest_model import Column, Table, builtin_types

from deriva_upload.model import DerivaModel

ML = "deriva-ml"


def _rcb_fkeys_free(doc: dict) -> dict:
    # Offline models have no public:ERMrest_Client; drop the RCB/RMB fkeys deriva-py adds.
    doc["foreign_keys"] = [
        fk for fk in doc.get("foreign_keys", [])
        if fk["referenced_columns"][0]["table_name"] != "ERMrest_Client"
    ]
    return doc


def derivaml_schema_doc(domain: str = "test-schema", image_metadata: list[dict] | None = None,
                        extra_assets: dict[str, list[dict]] | None = None) -> dict:
    """A /schema document with the deriva-ml schema and a domain schema (Subject, Image asset)."""
    if image_metadata is None:
        image_metadata = [
            Column.define("Acquisition_Date", builtin_types.date),
            Column.define("Acquisition_Time", builtin_types.timestamptz),
            Column.define("Subject", builtin_types.text),
        ]
    ml_tables = {
        "Execution": Table.define("Execution", [Column.define("Description", builtin_types.markdown),
                                                Column.define("Status", builtin_types.text)]),
        "Asset_Type": Table.define_vocabulary("Asset_Type", "deriva-ml:{RID}"),
        "Asset_Role": Table.define_vocabulary("Asset_Role", "deriva-ml:{RID}"),
        "Feature_Name": Table.define_vocabulary("Feature_Name", "deriva-ml:{RID}"),
        "Execution_Asset": Table.define_asset(ML, "Execution_Asset"),
        "Execution_Metadata": Table.define_asset(ML, "Execution_Metadata"),
    }
    domain_tables = {
        "Subject": Table.define("Subject", [Column.define("Name", builtin_types.text)]),
        "Image": Table.define_asset(domain, "Image", column_defs=image_metadata),
    }
    for name, cols in (extra_assets or {}).items():
        domain_tables[name] = Table.define_asset(domain, name, column_defs=cols)
    return {
        "schemas": {
            ML: {"schema_name": ML, "tables": {k: _rcb_fkeys_free(v) for k, v in ml_tables.items()}},
            domain: {"schema_name": domain, "tables": {k: _rcb_fkeys_free(v) for k, v in domain_tables.items()}},
        }
    }


def derivaml_model(**kwargs) -> DerivaModel:
    return DerivaModel.from_json(derivaml_schema_doc(**kwargs))
