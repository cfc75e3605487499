"""deriva-py 1.7.12, unchanged, against the embedded catalog's ERMrest."""

from __future__ import annotations

import pytest
from deriva.core import DerivaServer, ErmrestCatalog, get_credential
from deriva.core.datapath import Cnt, DataPathException, Max
from deriva.core.ermrest_model import Column, Key, Schema, Table, builtin_types
from requests import HTTPError

from deriva_upload.catalog.ermrest.rid import rid_decode


def test_model_document_parses(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    cat = fresh_catalog.ermrest_catalog()
    model = cat.getCatalogModel()
    assert {"public", "deriva-ml", "demo-schema"} <= set(model.schemas)
    ml = model.schemas["deriva-ml"]
    for t in ("Execution", "Workflow", "Dataset", "Execution_Status", "Asset_Type", "Asset_Role", "Feature_Name",
              "Execution_Asset", "Execution_Metadata", "File", "File_Asset_Type", "File_Execution"):
        assert t in ml.tables, t
    image = model.schemas["demo-schema"].tables["Image"]
    cols = {c.name: c for c in image.columns}
    assert "tag:isrd.isi.edu,2017:asset" in cols["URL"].annotations
    assert cols["Acquisition_Date"].type.typename == "date" and cols["Acquisition_Date"].nullok
    assert cols["Acquisition_Time"].type.typename == "timestamptz"
    fk_targets = {(fk.foreign_key_columns[0].name, fk.pk_table.schema.name, fk.pk_table.name, fk.referenced_columns[0].name) for fk in image.foreign_keys}
    assert ("Subject", "demo-schema", "Subject", "RID") in fk_targets
    assert ("RCB", "public", "ERMrest_Client", "ID") in fk_targets
    # associations are found by deriva-py's own heuristics
    assert image.find_associations()
    ie = model.schemas["demo-schema"].tables["Image_Execution"]
    assert {c.name for c in ie.columns} >= {"Image", "Execution", "Asset_Role"}
    assert not cols["URL"].nullok
    assert {"RID", "URL"} <= {k.unique_columns[0].name for k in image.keys if len(k.unique_columns) == 1}
    feature = model.schemas["demo-schema"].tables["Execution_Image_Quality"]
    assert {c.name for c in feature.columns} >= {"Execution", "Image", "Feature_Name", "ImageQuality"}


def test_catalog_info_and_snapshot(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    cat = fresh_catalog.ermrest_catalog()
    assert cat.exists()
    snap = cat.latest_snapshot()
    assert snap.snaptime
    info = cat.get("/").json()
    assert info["id"] == fresh_catalog.catalog_id and isinstance(info["id"], str)


def test_vocabulary_terms_seeded(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    pb = fresh_catalog.ermrest_catalog().getPathBuilder()
    roles = {r["Name"]: r for r in pb.schemas["deriva-ml"].tables["Asset_Role"].entities()}
    assert set(roles) == {"Input", "Output"}
    r = roles["Input"]
    assert r["ID"] == f"deriva-ml:{r['RID']}" and r["URI"] == f"/id/{r['RID']}"
    types = {r["Name"] for r in pb.schemas["deriva-ml"].tables["Asset_Type"].entities()}
    assert {"Execution_Config", "Runtime_Env", "Hydra_Config", "Deriva_Config", "Metrics_File", "Execution_Metadata",
            "Execution_Asset", "File", "Input_File", "Output_File", "Model_File", "Notebook_Output", "Image"} <= types
    statuses = {r["Name"] for r in pb.schemas["deriva-ml"].tables["Execution_Status"].entities()}
    assert {"Created", "Running", "Failed", "Pending_Upload", "Uploaded", "Aborted"} <= statuses


def test_pathbuilder_insert_query_update_delete(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    pb = fresh_catalog.ermrest_catalog().getPathBuilder()
    subject = pb.schemas["demo-schema"].tables["Subject"]
    inserted = list(subject.insert([{"Name": f"s{i}"} for i in range(5)]))
    assert [r["Name"] for r in inserted] == [f"s{i}" for i in range(5)]
    assert all(r["RCB"] == "local:user" and r["RID"] for r in inserted)
    rids = [rid_decode(r["RID"]) for r in inserted]
    assert rids == sorted(rids) and len(set(rids)) == 5

    assert [r["Name"] for r in subject.filter(subject.Name == "s3").entities()] == ["s3"]
    got = subject.filter((subject.Name == "s1") | (subject.Name == "s2")).entities().sort(subject.Name)
    assert [r["Name"] for r in got] == ["s1", "s2"]
    assert len(list(subject.filter(subject.Name.ciregexp("S[0-2]")).entities())) == 3
    assert len(list(subject.entities().fetch(limit=2))) == 2
    attrs = list(subject.attributes(subject.RID, subject.Name).sort(subject.Name.desc))
    assert attrs[0] == {"RID": inserted[4]["RID"], "Name": "s4"}
    agg = subject.aggregates(Cnt(subject.RID).alias("n"), Max(subject.Name).alias("m")).fetch()[0]
    assert agg == {"n": 5, "m": "s4"}
    groups = list(subject.groupby(subject.Name).attributes(Cnt(subject.RID).alias("c")).sort(subject.Name))
    assert groups[0] == {"Name": "s0", "c": 1} and len(groups) == 5

    updated = list(subject.update([{"RID": inserted[0]["RID"], "Name": "renamed"}]))
    assert updated == [{"RID": inserted[0]["RID"], "Name": "renamed"}]
    row = list(subject.filter(subject.RID == inserted[0]["RID"]).entities())[0]
    assert row["Name"] == "renamed" and row["RCT"] == inserted[0]["RCT"]

    subject.filter(subject.Name == "s4").delete()
    assert len(list(subject.entities())) == 4
    with pytest.raises(DataPathException):
        subject.filter(subject.Name == "nope").delete()  # 404 when nothing matches


def test_insert_with_onconflict_skip(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    pb = fresh_catalog.ermrest_catalog().getPathBuilder()
    types = pb.schemas["deriva-ml"].tables["Asset_Type"]
    out = list(types.insert([{"Name": "File", "Description": "dup"}, {"Name": "New_Type", "Description": "x"}],
                            defaults={"ID", "URI"}, on_conflict_skip=True))
    assert [r["Name"] for r in out] == ["New_Type"]


def test_model_create_table_and_columns(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    cat = fresh_catalog.ermrest_catalog()
    model = cat.getCatalogModel()
    schema = model.create_schema(Schema.define("extra", comment="added by a test"))
    subject = model.schemas["demo-schema"].tables["Subject"]
    table = schema.create_table(
        Table.define(
            "Sample",
            column_defs=[
                Column.define("Label", builtin_types.text, nullok=False),
                Column.define("Count", builtin_types.int4),
                Column.define("Ok", builtin_types.boolean),
                Column.define("Tags", builtin_types["text[]"]),
                ("Subject", True, subject),
            ],
            key_defs=[Key.define(["Label"])],
        )
    )
    assert table.name == "Sample" and {"RID", "Label", "Count", "Subject"} <= {c.name for c in table.columns}
    col = table.create_column(Column.define("Extra", builtin_types.float8))
    assert col.name == "Extra"
    table.alter(comment="a comment")

    fresh = ErmrestCatalog(fresh_catalog.scheme, fresh_catalog.hostname, fresh_catalog.catalog_id, credentials=fresh_catalog.credentials).getCatalogModel()
    t2 = fresh.schemas["extra"].tables["Sample"]
    assert t2.comment == "a comment"
    assert [c.name for c in t2.columns][-1] == "Extra"
    assert any([c.name for c in k.unique_columns] == ["Label"] for k in t2.keys)

    pb = cat.getPathBuilder()
    s_rid = list(pb.schemas["demo-schema"].tables["Subject"].insert([{"Name": "x"}]))[0]["RID"]
    rows = list(pb.schemas["extra"].tables["Sample"].insert([
        {"Label": "a", "Count": "3", "Ok": "true", "Tags": ["p", "q"], "Subject": s_rid, "Extra": 1.5},
        {"Label": "b", "Count": None, "Ok": False, "Tags": None, "Subject": None, "Extra": None},
    ]))
    assert rows[0]["Count"] == 3 and rows[0]["Ok"] is True and rows[0]["Tags"] == ["p", "q"]
    assert rows[1]["Ok"] is False and rows[1]["Count"] is None

    # drop a column that has data, then the whole table and schema
    fresh.schemas["extra"].tables["Sample"].columns["Extra"].drop()
    again = cat.getCatalogModel()
    assert "Extra" not in {c.name for c in again.schemas["extra"].tables["Sample"].columns}
    kept = list(cat.getPathBuilder().schemas["extra"].tables["Sample"].entities())
    assert {r["Label"] for r in kept} == {"a", "b"} and "Extra" not in kept[0]
    again.schemas["extra"].tables["Sample"].drop()
    again.schemas["extra"].drop()
    assert "extra" not in cat.getCatalogModel().schemas


def test_model_rename_table_and_column_keeps_data(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    cat = fresh_catalog.ermrest_catalog()
    pb = cat.getPathBuilder()
    list(pb.schemas["demo-schema"].tables["Subject"].insert([{"Name": "keep"}]))
    model = cat.getCatalogModel()
    subject = model.schemas["demo-schema"].tables["Subject"]
    subject.columns["Name"].alter(name="Label")
    subject.alter(table_name="Person")
    model2 = cat.getCatalogModel()
    person = model2.schemas["demo-schema"].tables["Person"]
    assert "Label" in {c.name for c in person.columns}
    # the Image fkey now points at the renamed table
    image = model2.schemas["demo-schema"].tables["Image"]
    assert any(fk.pk_table.name == "Person" for fk in image.foreign_keys)
    rows = cat.get("/entity/demo-schema:Person").json()
    assert [r["Label"] for r in rows] == ["keep"]


def test_fkey_and_key_creation(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    cat = fresh_catalog.ermrest_catalog()
    model = cat.getCatalogModel()
    subject = model.schemas["demo-schema"].tables["Subject"]
    subject.create_key(Key.define(["Name"]))
    image = model.schemas["demo-schema"].tables["Image"]
    image.create_column(Column.define("Subject_Name", builtin_types.text))
    image.create_fkey(
        {"foreign_key_columns": [{"column_name": "Subject_Name"}],
         "referenced_columns": [{"schema_name": "demo-schema", "table_name": "Subject", "column_name": "Name"}]}
    )
    pb = cat.getPathBuilder()
    img = pb.schemas["demo-schema"].tables["Image"]
    with pytest.raises(DataPathException) as e:
        img.insert([{"URL": "/hatrac/x", "Filename": "x", "Length": 1, "MD5": "0" * 32, "Subject_Name": "ghost"}])
    assert "409" in str(e.value) or "violates" in str(e.value)
    list(pb.schemas["demo-schema"].tables["Subject"].insert([{"Name": "real"}]))
    out = list(img.insert([{"URL": "/hatrac/x", "Filename": "x", "Length": 1, "MD5": "0" * 32, "Subject_Name": "real"}]))
    assert out[0]["Subject_Name"] == "real"


def test_server_create_and_delete_catalog(embedded_catalog) -> None:  # type: ignore[no-untyped-def]
    server = DerivaServer(embedded_catalog.scheme, embedded_catalog.hostname, credentials={"cookie": "webauthn=x"})
    cat = server.create_ermrest_catalog()
    cid = cat.catalog_id
    assert isinstance(cid, str) and cid.isdigit()
    model = cat.getCatalogModel()
    assert set(model.schemas) == {"public"}
    assert {"ERMrest_Client", "ERMrest_RID_Lease"} <= set(model.schemas["public"].tables)
    cat.delete_ermrest_catalog(really=True)
    assert not ErmrestCatalog(embedded_catalog.scheme, embedded_catalog.hostname, cid).exists()
    with pytest.raises(HTTPError) as e:
        ErmrestCatalog(embedded_catalog.scheme, embedded_catalog.hostname, cid).get("/schema")
    assert e.value.response.status_code == 404


def test_credential_file_lookup(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    cred = get_credential(fresh_catalog.hostname, credential_file=str(fresh_catalog.credential_file))
    assert cred == fresh_catalog.credentials
    cat = ErmrestCatalog(fresh_catalog.scheme, fresh_catalog.hostname, fresh_catalog.catalog_id, credentials=cred)
    assert cat.get_authn_session().json()["client"]["id"] == "local:user"
