"""Bootstrap a catalog: ERMrest's ``public`` tables, the DerivaML ML schema, the demo domain.

The table documents come from deriva-py's own ``Table.define_vocabulary/define_asset/
define_association/define`` so they are exactly what a deriva-py client would send, and
they are loaded through the same model-edit and entity-insert code that HTTP requests use.
"""

from __future__ import annotations

from typing import Any

from deriva.core.ermrest_model import Column, Key, Model, Table, builtin_types

from .ermrest import data
from .ermrest.errors import BadRequest
from .ermrest.store import CatalogStore
from .ermrest.urlparse import DataRequest, TableRef

ML_SCHEMA = "deriva-ml"
DEMO_SCHEMA = "demo-schema"
ML_CURIE = "deriva-ml:{RID}"
DEMO_CURIE = "demo-schema:{RID}"
BOOTSTRAP_CLIENT = {"id": "local:user", "display_name": "local user", "full_name": "Local User", "email": None}

ML_ASSET_TABLES = ("Execution_Metadata", "Execution_Asset", "File")
ASSET_TYPE_TERMS = (
    "Execution_Config",
    "Runtime_Env",
    "Hydra_Config",
    "Deriva_Config",
    "Metrics_File",
    "Execution_Metadata",
    "Execution_Asset",
    "File",
    "Input_File",
    "Output_File",
    "Model_File",
    "Notebook_Output",
)
TERMS: dict[str, tuple[str, ...]] = {
    "Asset_Role": ("Input", "Output"),
    "Execution_Status": ("Created", "Running", "Stopped", "Failed", "Pending_Upload", "Uploaded", "Aborted"),
    "Dataset_Type": ("Complete", "File", "Directory", "Training", "Testing", "Validation", "Split", "Labeled", "Unlabeled"),
    "Workflow_Type": (
        "Training",
        "Testing",
        "Prediction",
        "Feature_Creation",
        "Visualization",
        "Analysis",
        "Ingest",
        "Data_Cleaning",
        "Dataset_Management",
    ),
    "Feature_Name": (),
}
BOOTSTRAP_KINDS = ("none", "deriva-ml", "demo")


def bootstrap_catalog(store: CatalogStore, kind: str = "demo") -> None:
    """Populate a new catalog. ``kind``: "none" (public only), "deriva-ml", or "demo" (ML + demo domain)."""
    if kind not in BOOTSTRAP_KINDS:
        raise BadRequest(f"Unknown bootstrap kind {kind!r}; use one of {', '.join(BOOTSTRAP_KINDS)}.")
    create_public_schema(store)
    if kind in ("deriva-ml", "demo"):
        create_ml_schema(store)
    if kind == "demo":
        create_demo_schema(store)


# ---------------------------------------------------------------------------


def _col(name: str, typename: str, nullok: bool = True, default: Any = None) -> dict:
    return Column.define(name, builtin_types[typename], nullok=nullok, default=default)


def _model(store: CatalogStore) -> Model:
    return Model(None, store.model.doc)


def _rid_key(table: Table) -> Key:
    return table.key_by_columns(["RID"])


def _create_tables(store: CatalogStore, sname: str, docs: list[dict]) -> None:
    store.edit_model(lambda ed: [ed.create_table(sname, d) for d in docs])


def _insert_terms(store: CatalogStore, sname: str, tname: str, names: tuple[str, ...] | list[str]) -> None:
    if not names:
        return
    rows = [{"Name": n, "Description": f"{n.replace('_', ' ')}"} for n in names]
    req = DataRequest(api="entity", table=TableRef(table=tname, schema=sname))
    data.insert(store, req, rows, {"ID", "URI"}, set(), True, BOOTSTRAP_CLIENT)


def create_public_schema(store: CatalogStore) -> None:
    """``public:ERMrest_Client``, ``ERMrest_Group`` and ``ERMrest_RID_Lease`` (protocol §3.3, §3.11)."""
    client = Table.define(
        "ERMrest_Client",
        column_defs=[
            _col("ID", "text", nullok=False),
            _col("Display_Name", "text"),
            _col("Full_Name", "text"),
            _col("Email", "text"),
            _col("Client_Object", "jsonb"),
        ],
        key_defs=[Key.define(["ID"], constraint_name="ERMrest_Client_ID_key")],
        provide_system_fkeys=False,
    )
    group = Table.define(
        "ERMrest_Group",
        column_defs=[_col("ID", "text", nullok=False), _col("URL", "text"), _col("Display_Name", "text"), _col("Description", "text")],
        key_defs=[Key.define(["ID"], constraint_name="ERMrest_Group_ID_key")],
        provide_system_fkeys=False,
    )
    lease = Table.define(
        "ERMrest_RID_Lease",
        column_defs=[_col("ID", "text")],
        key_defs=[Key.define(["RCB", "ID"], constraint_name="ERMrest_RID_Lease_RCB_ID_key")],
    )

    def edit(ed):  # type: ignore[no-untyped-def]
        if "public" not in ed.doc["schemas"]:
            ed.create_schema({"schema_name": "public", "comment": "standard public schema"})
        for d in (client, group, lease):
            if d["table_name"] not in ed.doc["schemas"]["public"]["tables"]:
                ed.create_table("public", d)

    store.edit_model(edit)


def create_ml_schema(store: CatalogStore) -> None:
    """The DerivaML ``deriva-ml`` schema (derivaml-upload.md §1.2, §1.8) and its seeded terms."""
    s = ML_SCHEMA
    vocabs = [
        Table.define_vocabulary(name, ML_CURIE)
        for name in ("Feature_Name", "Asset_Type", "Asset_Role", "Execution_Status", "Workflow_Type", "Dataset_Type")
    ]
    workflow = Table.define(
        "Workflow",
        column_defs=[
            _col("Name", "text"),
            _col("Description", "markdown"),
            _col("URL", "ermrest_uri"),
            _col("Checksum", "text"),
            _col("Version", "text"),
        ],
    )
    store.edit_model(lambda ed: [ed.create_schema({"schema_name": s, "comment": "DerivaML machine-learning schema"})])
    _create_tables(store, s, vocabs + [workflow])

    m = _model(store).schemas[s]
    wf, status = m.tables["Workflow"], m.tables["Execution_Status"]
    execution = Table.define(
        "Execution",
        column_defs=[
            ("Workflow", True, _rid_key(wf)),
            _col("Description", "markdown"),
            _col("Execution_Duration", "text"),
            _col("Download_Duration", "text"),
            _col("Upload_Duration", "text"),
            ("Status", True, status),
            _col("Status_Detail", "text"),
        ],
    )
    dataset = Table.define("Dataset", column_defs=[_col("Description", "markdown"), _col("Deleted", "boolean")])
    _create_tables(
        store,
        s,
        [
            execution,
            dataset,
            Table.define_association([("Workflow", _rid_key(wf)), m.tables["Workflow_Type"]], table_name="Workflow_Workflow_Type"),
        ],
    )

    m = _model(store).schemas[s]
    execution_t, dataset_t = m.tables["Execution"], m.tables["Dataset"]
    docs = [
        Table.define_association([("Dataset", _rid_key(dataset_t)), m.tables["Dataset_Type"]], table_name="Dataset_Dataset_Type"),
        Table.define(
            "Dataset_Version",
            column_defs=[
                _col("Version", "text", default="0.1.0"),
                _col("Description", "markdown"),
                ("Dataset", True, _rid_key(dataset_t)),
                ("Execution", True, _rid_key(execution_t)),
                _col("Minid", "text"),
                _col("Minid_Spec_Hash", "text"),
                _col("Snapshot", "text"),
            ],
            key_defs=[Key.define(["Dataset", "Version"], constraint_name="Dataset_Version_Dataset_Version_key")],
        ),
        Table.define_association(
            [("Execution", _rid_key(execution_t)), ("Nested_Execution", _rid_key(execution_t))],
            metadata=[_col("Sequence", "int4")],
            table_name="Execution_Execution",
        ),
        Table.define_association([("Dataset", _rid_key(dataset_t)), ("Nested_Dataset", _rid_key(dataset_t))], table_name="Dataset_Dataset"),
    ]
    docs += [Table.define_asset(s, t, hatrac_template=f"/hatrac/{t}/{{{{{{MD5}}}}}}.{{{{{{Filename}}}}}}") for t in ML_ASSET_TABLES]
    _create_tables(store, s, docs)

    m = _model(store).schemas[s]
    version_t = m.tables["Dataset_Version"]
    version_ref_cols, version_ref_fkey = _reference_defs(m.tables["Dataset"], ("Version", True, _rid_key(version_t)), on_delete="CASCADE")

    def add_version(ed):  # type: ignore[no-untyped-def]
        for c in version_ref_cols:
            ed.create_column(s, "Dataset", c)
        ed.create_fkey(s, "Dataset", version_ref_fkey)

    store.edit_model(add_version)

    m = _model(store).schemas[s]
    execution_t, dataset_t, version_t = m.tables["Execution"], m.tables["Dataset"], m.tables["Dataset_Version"]
    docs = [
        Table.define_association(
            [("Dataset", _rid_key(dataset_t)), ("Execution", _rid_key(execution_t))],
            metadata=[("Dataset_Version", True, _rid_key(version_t))],
            table_name="Dataset_Execution",
        ),
        Table.define(
            "Directory_Dataset",
            column_defs=[("Dataset", False, _rid_key(dataset_t)), _col("Path", "text")],
            key_defs=[Key.define(["Dataset"], constraint_name="Directory_Dataset_Dataset_key")],
        ),
        Table.define_association([("Dataset", _rid_key(dataset_t)), ("File", _rid_key(m.tables["File"]))], table_name="Dataset_File"),
    ]
    _create_tables(store, s, docs)
    add_asset_associations(store, s, list(ML_ASSET_TABLES))

    for vocab, terms in TERMS.items():
        _insert_terms(store, s, vocab, terms)
    _insert_terms(store, s, "Asset_Type", ASSET_TYPE_TERMS)


def _reference_defs(table: Table, target: tuple, on_delete: str = "NO ACTION") -> tuple[list[dict], dict]:
    """Column and fkey docs like ``Table.create_reference`` would send, without a live catalog."""
    name, nullok, key = target
    cols = [_col(name, "text", nullok=nullok)]
    fkey = {
        "foreign_key_columns": [{"column_name": name}],
        "referenced_columns": [
            {"schema_name": key.table.schema.name, "table_name": key.table.name, "column_name": c.name} for c in key.unique_columns
        ],
        "names": [[table.schema.name, f"{table.name}_{name}_fkey"]],
        "on_delete": on_delete,
        "on_update": "CASCADE",
    }
    return cols, fkey


def add_asset_associations(store: CatalogStore, sname: str, asset_tables: list[str]) -> None:
    """``<T>_Asset_Type`` and ``<T>_Execution`` (with a NOT NULL ``Asset_Role``) for each asset table."""
    model = _model(store)
    ml = model.schemas[ML_SCHEMA]
    asset_type, execution, role = ml.tables["Asset_Type"], ml.tables["Execution"], ml.tables["Asset_Role"]
    docs = []
    for t in asset_tables:
        at = model.schemas[sname].tables[t]
        docs.append(Table.define_association([(t, _rid_key(at)), ("Asset_Type", asset_type)], table_name=f"{t}_Asset_Type"))
        docs.append(
            Table.define_association(
                [(t, _rid_key(at)), ("Execution", _rid_key(execution))],
                metadata=[("Asset_Role", False, role)],
                table_name=f"{t}_Execution",
            )
        )
    _create_tables(store, sname, docs)


def create_demo_schema(store: CatalogStore) -> None:
    """The demo domain schema ``demo-schema`` (COMMON.md; derivaml-upload.md §1.7 subset)."""
    s = DEMO_SCHEMA
    store.edit_model(lambda ed: [ed.create_schema({"schema_name": s, "comment": "demo domain schema"})])
    _create_tables(
        store,
        s,
        [
            Table.define("Subject", column_defs=[_col("Name", "text")]),
            Table.define_vocabulary("ImageQuality", DEMO_CURIE),
        ],
    )
    subject = _model(store).schemas[s].tables["Subject"]
    image = Table.define_asset(
        s,
        "Image",
        hatrac_template="/hatrac/Image/{{{MD5}}}.{{{Filename}}}",
        column_defs=[
            _col("Acquisition_Date", "date"),
            _col("Acquisition_Time", "timestamptz"),
            ("Subject", True, _rid_key(subject)),
        ],
    )
    _create_tables(store, s, [image])
    add_asset_associations(store, s, ["Image"])
    _insert_terms(store, ML_SCHEMA, "Asset_Type", ["Image"])
    _insert_terms(store, ML_SCHEMA, "Feature_Name", ["Quality"])
    _insert_terms(store, s, "ImageQuality", ["Good", "Bad"])

    model = _model(store)
    ml = model.schemas[ML_SCHEMA]
    feature = Table.define_association(
        [
            ("Execution", _rid_key(ml.tables["Execution"])),
            ("Image", _rid_key(model.schemas[s].tables["Image"])),
            ("Feature_Name", ml.tables["Feature_Name"]),
        ],
        metadata=[("ImageQuality", False, model.schemas[s].tables["ImageQuality"])],
        table_name="Execution_Image_Quality",
    )
    for c in feature["column_definitions"]:
        if c["name"] == "Feature_Name":
            c["default"] = "Quality"
    _create_tables(store, s, [feature])
