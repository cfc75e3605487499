"""Model edits on the stored schema document (protocol §3.3, §3.4)."""

from __future__ import annotations

import itertools

import pytest
from deriva.core.ermrest_model import Column, Key, Model, Table, builtin_types

from deriva_upload.catalog.ermrest.errors import BadRequest, Conflict, NotFound
from deriva_upload.catalog.ermrest.model import ModelEditor, digest, new_model_doc


def editor() -> ModelEditor:
    counter = itertools.count(1)
    return ModelEditor(digest(new_model_doc()), lambda: f"R{next(counter)}")


def base() -> ModelEditor:
    ed = editor()
    ed.create_schema({"schema_name": "public"})
    ed.create_table("public", Table.define("ERMrest_Client", column_defs=[Column.define("ID", builtin_types.text, nullok=False)],
                                           key_defs=[Key.define(["ID"])], provide_system_fkeys=False))
    ed.create_schema({"schema_name": "s"})
    ed.create_table("s", Table.define("Parent", column_defs=[Column.define("Name", builtin_types.text, nullok=False)], key_defs=[Key.define(["Name"])]))
    model = Model(None, ed.doc)
    ed.create_table("s", Table.define("Child", column_defs=[("Parent", True, model.schemas["s"].tables["Parent"])]))
    ed.finish()
    return ed


def test_table_define_doc_round_trip() -> None:
    ed = base()
    child = ed.table_doc("s", "Child")
    assert [c["name"] for c in child["column_definitions"]][:5] == ["RID", "RCT", "RMT", "RCB", "RMB"]
    # placeholder constraint schemas become the table's schema; empty key names are generated
    assert all(fk["names"][0][0] == "s" for fk in child["foreign_keys"])
    rid_key = next(k for k in child["keys"] if k["unique_columns"] == ["RID"])
    assert rid_key["names"] == [["s", "Child_RID_key"]]
    parent_ref = next(fk for fk in child["foreign_keys"] if fk["foreign_key_columns"][0]["column_name"] == "Parent")
    assert parent_ref["referenced_columns"][0] == {"schema_name": "s", "table_name": "Parent", "column_name": "Name"}
    # deriva-py parses what we store
    m = Model(None, ed.doc)
    assert m.schemas["s"].tables["Child"].foreign_keys[-1].pk_table.name in ("Parent", "ERMrest_Client")


def test_missing_system_columns_are_added() -> None:
    ed = base()
    t = ed.create_table("s", {"table_name": "Bare", "column_definitions": [{"name": "x", "type": {"typename": "int4"}}]})
    assert [c["name"] for c in t["column_definitions"]] == ["RID", "RCT", "RMT", "RCB", "RMB", "x"]
    assert t["keys"][0]["unique_columns"] == ["RID"] and t["kind"] == "table"


def test_renames_follow_references() -> None:
    ed = base()
    ed.alter_table("s", "Parent", {"table_name": "Mother"})
    ed.alter_column("s", "Mother", "Name", {"name": "Label"})
    ed.alter_schema("s", {"schema_name": "t"})
    state = ed.finish()
    child = state.table("t", "Child")
    fk = next(f for f in child.fkeys if f.columns == ("Parent",))
    assert (fk.ref_schema, fk.ref_table, fk.ref_columns) == ("t", "Mother", ("Label",))
    assert ("Label",) in state.table("t", "Mother").keys
    assert ed.table_doc("t", "Child")["foreign_keys"][-1]["names"][0][0] == "t"


def test_refusals() -> None:
    ed = base()
    with pytest.raises(Conflict):
        ed.drop_table("s", "Parent")  # still referenced
    with pytest.raises(Conflict):
        ed.drop_schema("s")  # not empty
    with pytest.raises(Conflict):
        ed.drop_column("s", "Parent", "Name")  # used by a key
    with pytest.raises(Conflict):
        ed.drop_key("s", "Parent", ["Name"])  # referenced by Child
    with pytest.raises(Conflict):
        ed.drop_column("s", "Child", "RID")
    with pytest.raises(Conflict):
        ed.create_table("s", {"table_name": "Child"})
    with pytest.raises(NotFound):
        ed.table_doc("s", "Nope")
    with pytest.raises(BadRequest):
        ed.create_column("s", "Child", {"name": "bad"})  # no type
    with pytest.raises(BadRequest):
        ed.alter_table("s", "Child", {"frobnicate": 1})
    for bad in ("a\x00b", "", "x" * 300, 7):
        with pytest.raises(BadRequest):
            ed.create_table("s", {"table_name": bad})
        with pytest.raises(BadRequest):
            ed.create_column("s", "Child", {"name": bad, "type": {"typename": "text"}})


def test_fkey_must_reference_a_key() -> None:
    ed = base()
    ed.create_column("s", "Child", {"name": "Other", "type": {"typename": "text"}})
    ed.create_fkey("s", "Child", {"foreign_key_columns": [{"column_name": "Other"}],
                                 "referenced_columns": [{"schema_name": "s", "table_name": "Parent", "column_name": "RCT"}]})
    with pytest.raises(Conflict):
        ed.finish()


def test_rebuild_plan_tracks_renamed_and_new_columns() -> None:
    ed = base()
    old = ed.finish()
    ed2 = ModelEditor(old, lambda: "RX")
    ed2.alter_column("s", "Parent", "Name", {"name": "Label"})
    ed2.create_column("s", "Parent", {"name": "Extra", "type": {"typename": "text"}})
    rid = ed2.table_doc("s", "Parent")["RID"]
    mapping = ed2.plan.rebuild[rid]
    assert mapping["Label"] == "Name" and mapping["Extra"] is None and mapping["RID"] == "RID"
