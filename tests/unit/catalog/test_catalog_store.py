"""Catalog storage: transactions, the RID sequence, model edits over live data, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from deriva_upload.catalog.bootstrap import bootstrap_catalog
from deriva_upload.catalog.ermrest import data
from deriva_upload.catalog.ermrest.errors import BadRequest, Conflict, NotFound
from deriva_upload.catalog.ermrest.model import table_ddl
from deriva_upload.catalog.ermrest.rid import rid_decode
from deriva_upload.catalog.ermrest.store import Registry
from deriva_upload.catalog.ermrest.urlparse import DataRequest, TableRef, parse_data_request

CLIENT = {"id": "local:user", "display_name": "local user"}
SYS = {"RID", "RCT", "RMT", "RCB", "RMB"}


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    reg = Registry(tmp_path)
    s = reg.create("1")
    bootstrap_catalog(s, "demo")
    yield s
    reg.close()


def req(table: str, schema: str = "demo-schema") -> DataRequest:
    return DataRequest(api="entity", table=TableRef(table=table, schema=schema))


def names(store, table: str = "Subject") -> list[str]:  # type: ignore[no-untyped-def]
    _cols, tuples, _ = data.select(store, parse_data_request("attribute", f"demo-schema:{table}/Name@sort(Name)"), None)
    return [t[0] for t in tuples]


def insert(store, rows, table="Subject", **kw):  # type: ignore[no-untyped-def]
    return data.insert(store, req(table), rows, kw.get("defaults", set()), kw.get("nondefaults", set()), kw.get("skip", False), CLIENT)[1]


def test_failed_insert_keeps_nothing_and_rewinds_the_sequence(store) -> None:  # type: ignore[no-untyped-def]
    store.edit_model(lambda ed: ed.create_key("demo-schema", "Subject", {"unique_columns": ["Name"]}))
    insert(store, [{"Name": "a"}])
    seq = store.seq
    with pytest.raises(Conflict):
        insert(store, [{"Name": "b"}, {"Name": "c"}, {"Name": "a"}])
    assert names(store) == ["a"]
    assert store.seq == seq
    nxt = insert(store, [{"Name": "d"}])[0]["RID"]
    assert rid_decode(nxt) == seq


def test_bad_value_in_last_row_rejects_the_batch(store) -> None:  # type: ignore[no-untyped-def]
    rows = [{"URL": f"/u{i}", "Filename": "f", "Length": i, "MD5": "m"} for i in range(5)] + [{"URL": "/bad", "Filename": "f", "Length": "x", "MD5": "m"}]
    with pytest.raises(BadRequest):
        insert(store, rows, table="Image")
    assert data.select(store, parse_data_request("entity", "demo-schema:Image"), None)[1] == []


def test_ddl_has_constraints(store) -> None:  # type: ignore[no-untyped-def]
    info = store.model.table("demo-schema", "Image")
    stmts = table_ddl(store.model, info)
    assert '"URL" TEXT NOT NULL' in stmts[0] and '"Length" INTEGER NOT NULL' in stmts[0]
    assert "FOREIGN KEY" in stmts[0] and "REFERENCES" in stmts[0]
    assert any(s.startswith("CREATE UNIQUE INDEX") and '("URL")' in s for s in stmts)
    assert any('("MD5")' in s for s in stmts) and any('("Filename")' in s for s in stmts)


def test_add_not_null_column_to_non_empty_table(store) -> None:  # type: ignore[no-untyped-def]
    insert(store, [{"Name": "a"}])
    col = {"name": "Age", "type": {"typename": "int4"}, "nullok": False}
    with pytest.raises(Conflict):
        store.edit_model(lambda ed: ed.create_column("demo-schema", "Subject", col))
    assert "Age" not in store.model.table("demo-schema", "Subject").colmap
    store.edit_model(lambda ed: ed.create_column("demo-schema", "Subject", dict(col, default=7)))
    row = data.select(store, parse_data_request("entity", "demo-schema:Subject"), None)
    assert row[1][0][-1] == 7 and names(store) == ["a"]


def test_fkey_over_violating_data_is_refused(store) -> None:  # type: ignore[no-untyped-def]
    store.edit_model(lambda ed: ed.create_column("demo-schema", "Subject", {"name": "Buddy", "type": {"typename": "text"}}))
    insert(store, [{"Name": "a", "Buddy": "NOPE"}])
    fk = {"foreign_key_columns": [{"column_name": "Buddy"}], "referenced_columns": [{"schema_name": "demo-schema", "table_name": "Subject", "column_name": "RID"}]}
    with pytest.raises(Conflict):
        store.edit_model(lambda ed: ed.create_fkey("demo-schema", "Subject", fk))
    assert store.model.table("demo-schema", "Subject").fkeys[-1].columns != ("Buddy",)
    assert names(store) == ["a"]
    # foreign keys are still enforced after the failed edit
    with pytest.raises(Conflict):
        insert(store, [{"URL": "/x", "Filename": "f", "Length": 1, "MD5": "m", "Subject": "NOPE"}], table="Image")


def test_model_survives_reopen(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    s = reg.create("1")
    bootstrap_catalog(s, "deriva-ml")
    s.edit_model(lambda ed: ed.create_schema({"schema_name": "x", "tables": {"T": {"column_definitions": [{"name": "v", "type": {"typename": "text"}}]}}}))
    data.insert(s, req("T", "x"), [{"v": "kept"}], set(), set(), False, CLIENT)
    seq = s.seq
    reg.close()
    reg2 = Registry(tmp_path)
    s2 = reg2.get("1")
    assert s2.seq == seq
    assert data.select(s2, parse_data_request("attribute", "x:T/v"), None)[1] == [("kept",)]
    reg2.close()


def test_registry_ids_and_delete(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    a, b = reg.create(), reg.create()
    assert (a.id, b.id) == ("1", "2") and reg.ids() == ["1", "2"]
    reg.delete("1")
    assert reg.ids() == ["2"] and not a.path.exists()
    with pytest.raises(NotFound):
        reg.get("1")
    assert reg.create().id == "3"  # ids are never reused
    with pytest.raises(Conflict):
        reg.create("2")
    reg.close()


def test_concurrent_writers_are_serialized(store) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                insert(store, [{"Name": f"w{k}-{i}-{j}"} for j in range(5)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    _c, tuples, _ = data.select(store, parse_data_request("attribute", "demo-schema:Subject/RID"), None)
    rids = [t[0] for t in tuples]
    assert len(rids) == 300 and len(set(rids)) == 300


def test_readers_do_not_see_uncommitted_writes(store) -> None:  # type: ignore[no-untyped-def]
    insert(store, [{"Name": "before"}])
    seen: list[list[str]] = []
    inside = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with store.transaction() as conn:
            conn.execute(f'INSERT INTO "{store.model.table("demo-schema", "Subject").phys}" ("RID","RCT","RMT","Name") VALUES (\'X\',\'t\',\'t\',\'during\')')
            inside.set()
            release.wait(5)

    t = threading.Thread(target=writer)
    t.start()
    inside.wait(5)
    seen.append(names(store))
    release.set()
    t.join()
    assert seen == [["before"]]
    assert names(store) == ["before", "during"]


def test_client_registered_once(store) -> None:  # type: ignore[no-untyped-def]
    insert(store, [{"Name": "a"}])
    insert(store, [{"Name": "b"}])
    _c, tuples, _ = data.select(store, parse_data_request("attribute", "public:ERMrest_Client/ID,Display_Name"), None)
    assert tuples == [("local:user", "local user")]


def test_csv_parser_null_semantics() -> None:
    header, rows = data.parse_csv(b'a,b,c\n1,,""\n"x,y","q""uote",\n')
    assert header == ["a", "b", "c"]
    assert rows == [["1", None, ""], ["x,y", 'q"uote', None]]
    header, rows = data.parse_csv(b"a,b\r\n1,\r\n")
    assert rows == [["1", None]]
    with pytest.raises(BadRequest):
        data.parse_csv(b"a,a\n1,2\n")
    with pytest.raises(BadRequest):
        data.parse_csv(b"a,b\n1\n")
