"""ERMrest wire behaviour of the embedded catalog, request by request (protocol §3)."""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import httpx
import pytest

from deriva_upload.catalog.ermrest import api as ermrest_api
from deriva_upload.catalog.ermrest.rid import rid_decode, rid_encode

JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}
SYS = "defaults=RID,RCT,RMT,RCB,RMB"


@pytest.fixture
def http(fresh_catalog):  # type: ignore[no-untyped-def]
    with fresh_catalog.server.http_client() as c:
        c.base_url = httpx.URL(fresh_catalog.catalog_url + "/")
        yield c


def q(s: str) -> str:
    return quote(s, safe="")


def file_row(i: int, **extra) -> dict:  # type: ignore[no-untyped-def]
    row = {"URL": f"/hatrac/File/{i}", "Filename": f"f{i}.txt", "Length": str(i), "MD5": f"{i:032x}"}
    row.update(extra)
    return row


def post(http: httpx.Client, table: str, rows, params: str = SYS, headers=JSON) -> httpx.Response:  # type: ignore[no-untyped-def]
    body = rows if isinstance(rows, (str, bytes)) else json.dumps(rows)
    return http.post(f"entity/{table}?{params}", content=body, headers=headers)


def assert_error(r: httpx.Response, status: int, prefix: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith(prefix) and r.text.endswith("\n")


# --------------------------------------------------------------------------- catalogs and model

def test_catalog_resource(http, fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    base = fresh_catalog.catalog_url
    for url in (base, base + "/"):
        r = http.get(url)
        assert r.status_code == 200
        doc = r.json()
        assert doc["id"] == fresh_catalog.catalog_id and rid_decode(doc["snaptime"]) > 0
    assert http.get(fresh_catalog.base_url + "/ermrest/catalog/99999").status_code == 404
    r = http.post(fresh_catalog.base_url + "/ermrest/catalog")
    assert r.status_code == 201 and r.headers["location"] == f"/ermrest/catalog/{r.json()['id']}"
    assert http.delete(fresh_catalog.base_url + r.headers["location"]).status_code == 204


def test_schema_document_shape(http) -> None:  # type: ignore[no-untyped-def]
    r = http.get("schema")
    assert r.status_code == 200 and r.text.endswith("\n")
    doc = r.json()
    assert "snaptime" in doc
    t = doc["schemas"]["demo-schema"]["tables"]["Image"]
    assert t["kind"] == "table" and t["schema_name"] == "demo-schema" and t["RID"]
    fk = next(f for f in t["foreign_keys"] if f["foreign_key_columns"][0]["column_name"] == "Subject")
    assert fk["names"] == [["demo-schema", "Image_Subject_fkey"]]
    assert fk["referenced_columns"] == [{"schema_name": "demo-schema", "table_name": "Subject", "column_name": "RID"}]
    rid_key = next(k for k in t["keys"] if k["unique_columns"] == ["RID"])
    assert rid_key["names"][0][0] == "demo-schema"
    col = next(c for c in t["column_definitions"] if c["name"] == "RID")
    assert col["type"]["typename"] == "ermrest_rid" and col["nullok"] is False


def test_model_element_urls(http) -> None:  # type: ignore[no-untyped-def]
    assert http.get("schema/demo-schema").json()["schema_name"] == "demo-schema"
    assert http.get("schema/demo-schema/table/Image").json()["table_name"] == "Image"
    assert http.get("schema/demo-schema/table/Image/column/MD5").json()["type"]["typename"] == "text"
    assert http.get("schema/demo-schema/table/Image/key/URL").json()["unique_columns"] == ["URL"]
    fk = http.get("schema/demo-schema/table/Image/foreignkey/Subject/reference/demo-schema:Subject/RID")
    assert fk.status_code == 200 and fk.json()["on_delete"] == "CASCADE"  # what deriva-py's Table.define sends
    for missing in ("schema/nope", "schema/demo-schema/table/Nope", "schema/demo-schema/table/Image/column/Nope"):
        assert_error(http.get(missing), 404, "Resource not found.")


def test_annotations_and_comments(http) -> None:  # type: ignore[no-untyped-def]
    tag = q("tag:example.org,2024:x")
    assert http.put(f"schema/demo-schema/table/Subject/annotation/{tag}", json={"a": 1}).status_code in (200, 201, 204)
    assert http.get(f"schema/demo-schema/table/Subject/annotation/{tag}").json() == {"a": 1}
    assert http.put("annotation", json={"tag:isrd.isi.edu,2017:bulk-upload": {"asset_mappings": []}}).status_code == 204
    assert "tag:isrd.isi.edu,2017:bulk-upload" in http.get("schema").json()["annotations"]
    r = http.put("schema/demo-schema/table/Subject", json={"comment": "people"})
    assert r.status_code == 200 and r.json()["comment"] == "people"


def test_model_post_errors(http) -> None:  # type: ignore[no-untyped-def]
    r = http.post("schema", json=[{"schema_name": "demo-schema"}])
    assert_error(r, 409, "Request conflicts with state of server.")
    r = http.post("schema/demo-schema/table", json={"table_name": "T", "column_definitions": [{"name": "x", "type": {"typename": "text"}}],
                                                     "foreign_keys": [{"foreign_key_columns": [{"column_name": "x"}],
                                                                       "referenced_columns": [{"schema_name": "demo-schema", "table_name": "Nope", "column_name": "RID"}]}]})
    assert r.status_code == 409
    assert "T" not in http.get("schema").json()["schemas"]["demo-schema"]["tables"]  # nothing half-created
    r = http.post("schema/demo-schema/table", content=b"{not json", headers=JSON)
    assert_error(r, 400, "Request malformed.")


# --------------------------------------------------------------------------- entity insert

def test_insert_returns_full_rows_in_order_with_cast_values(http) -> None:  # type: ignore[no-untyped-def]
    rows = [file_row(i, Extra="ignored") for i in (5, 1, 3)]
    r = post(http, "deriva-ml:File", rows)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [o["Filename"] for o in out] == ["f5.txt", "f1.txt", "f3.txt"]
    assert out[0]["Length"] == 5 and out[0]["Description"] is None and "Extra" not in out[0]
    assert list(out[0])[:5] == ["RID", "RCT", "RMT", "RCB", "RMB"]
    assert out[0]["RCB"] == out[0]["RMB"] == "local:user"
    assert out[0]["RCT"].endswith("+00:00") and "T" in out[0]["RCT"]
    seq = [rid_decode(o["RID"]) for o in out]
    assert seq == sorted(seq)


def test_insert_explicit_defaults_and_errors(http) -> None:  # type: ignore[no-untyped-def]
    r = post(http, "deriva-ml:Asset_Type", [{"Name": "T1", "Description": "d", "ID": "ignored"}], params="defaults=ID,URI")
    row = r.json()[0]
    assert row["ID"] == f"deriva-ml:{row['RID']}" and row["URI"] == f"/id/{row['RID']}"
    assert_error(post(http, "deriva-ml:File", [file_row(1)], params="defaults=Nope"), 409, "Request conflicts")
    assert_error(post(http, "deriva-ml:File", [file_row(1)], params="onconflict=maybe"), 400, "Request malformed.")
    assert_error(post(http, "deriva-ml:File", [file_row(1)], params="nondefaults=RMT"), 403, "Access forbidden.")
    every = "defaults=" + ",".join(["URL", "Filename", "Description", "Length", "MD5"])
    assert_error(post(http, "deriva-ml:File", [file_row(1)], params=every), 409, "Request conflicts")


def test_client_supplied_rid_bumps_sequence(http) -> None:  # type: ignore[no-untyped-def]
    far = rid_encode(10_000_000)
    r = post(http, "demo-schema:Subject", [{"RID": far, "Name": "x"}], params="nondefaults=RID")
    assert r.status_code == 200 and r.json()[0]["RID"] == far
    nxt = post(http, "demo-schema:Subject", [{"Name": "y"}]).json()[0]["RID"]
    assert rid_decode(nxt) > 10_000_000
    assert_error(post(http, "demo-schema:Subject", [{"RID": "not-a-rid!", "Name": "z"}], params="nondefaults=RID"), 400, "Request malformed.")


def test_rid_lease_flow(http) -> None:  # type: ignore[no-untyped-def]
    r = post(http, "public:ERMrest_RID_Lease", [{"ID": None}] * 3)
    assert r.status_code == 200
    leased = [row["RID"] for row in r.json()]
    assert len(set(leased)) == 3
    r = post(http, "demo-schema:Subject", [{"RID": leased[1], "Name": "leased"}], params="nondefaults=RID")
    assert r.status_code == 200 and r.json()[0]["RID"] == leased[1]
    assert http.get(f"entity_rid/{leased[1]}").json() == {"schema_name": "demo-schema", "table_name": "Subject", "RID": leased[1]}
    # the owner's lease stays (observed ERMrest behaviour for owners)
    assert len(http.get("entity/public:ERMrest_RID_Lease").json()) == 3
    assert http.get(f"entity_rid/{rid_encode(99_999_999)}").status_code == 404


def test_violations_are_409_and_atomic(http) -> None:  # type: ignore[no-untyped-def]
    assert post(http, "deriva-ml:File", [file_row(1)]).status_code == 200
    before = http.get("aggregate/deriva-ml:File/n:=cnt(*)").json()[0]["n"]
    # duplicate key with an existing row, in the middle of a batch
    r = post(http, "deriva-ml:File", [file_row(2), file_row(1), file_row(3)])
    assert_error(r, 409, "Request conflicts with state of server. Detail: ")
    assert "File" in r.text and "t_" not in r.text
    # not-null violation, bad cast and fkey violation, each in a batch
    assert_error(post(http, "deriva-ml:File", [file_row(4), {"URL": "/x", "Length": 1}]), 409, "Request conflicts")
    assert_error(post(http, "deriva-ml:File", [file_row(5), file_row(6, Length="six")]), 400, "Request malformed.")
    r = post(http, "demo-schema:Image", [file_row(7), file_row(8, Subject="NOPE")])
    assert_error(r, 409, "Request conflicts")
    assert "Key (Subject)=(NOPE) is not present" in r.text
    # duplicate keys inside the input
    assert_error(post(http, "deriva-ml:File", [file_row(9), file_row(9)]), 400, "Request malformed.")
    assert http.get("aggregate/deriva-ml:File/n:=cnt(*)").json()[0]["n"] == before
    assert http.get("aggregate/demo-schema:Image/n:=cnt(*)").json()[0]["n"] == 0


def test_onconflict_skip_returns_only_new_rows(http) -> None:  # type: ignore[no-untyped-def]
    post(http, "deriva-ml:File", [file_row(1)])
    r = post(http, "deriva-ml:File", [file_row(1), file_row(2)], params=SYS + "&onconflict=skip")
    assert [o["Filename"] for o in r.json()] == ["f2.txt"]


def test_onconflict_skip_with_client_rids(http) -> None:  # type: ignore[no-untyped-def]
    existing = post(http, "deriva-ml:File", [file_row(1)]).json()[0]
    r1, r2, r3 = (rid_encode(5_000_000 + i) for i in range(3))
    rows = [dict(file_row(2), RID=r1), dict(file_row(3), RID=existing["RID"]), dict(file_row(1), RID=r2), dict(file_row(4), RID=r3)]
    r = post(http, "deriva-ml:File", rows, params=SYS.replace("RID,", "") + "&nondefaults=RID&onconflict=skip")
    assert r.status_code == 200, r.text
    assert [(o["RID"], o["Filename"]) for o in r.json()] == [(r1, "f2.txt"), (r3, "f4.txt")]
    assert http.get(f"entity/deriva-ml:File/RID={r2}").json() == []
    assert http.get(f"entity/deriva-ml:File/RID={existing['RID']}").json()[0]["Filename"] == "f1.txt"


def test_csv_and_json_stream_input(http) -> None:  # type: ignore[no-untyped-def]
    body = 'URL,Filename,Length,MD5,Description\n/h/1,a.txt,1,' + "1" * 32 + ',""\n/h/2,"b,c.txt",2,' + "2" * 32 + ",\n"
    r = post(http, "deriva-ml:File", body, headers=CSV)
    assert r.status_code == 200, r.text
    got = {row["URL"]: row for row in http.get("entity/deriva-ml:File").json()}
    assert got["/h/1"]["Description"] == "" and got["/h/2"]["Description"] is None
    assert got["/h/2"]["Filename"] == "b,c.txt" and got["/h/2"]["Length"] == 2
    assert_error(post(http, "deriva-ml:File", "URL,Filename\n/h/3,x\n", headers=CSV), 400, "Request malformed.")
    assert_error(post(http, "deriva-ml:File", "URL,Bogus,Filename,Length,MD5,Description\n/h/3,x,y,1,z,\n", headers=CSV), 409, "Request conflicts")
    stream = "\n".join(json.dumps(file_row(i)) for i in (10, 11)) + "\n"
    r = post(http, "deriva-ml:File", stream, headers={"content-type": "application/x-json-stream"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-json-stream")
    assert [json.loads(x)["Filename"] for x in r.text.splitlines()] == ["f10.txt", "f11.txt"]


def test_malformed_and_oversized_bodies(http, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert_error(post(http, "deriva-ml:File", "[{"), 400, "Request malformed.")
    assert_error(post(http, "deriva-ml:File", '{"a": 1} trailing'), 400, "Request malformed.")
    assert_error(post(http, "deriva-ml:File", "[1, 2]"), 400, "Request malformed.")
    assert_error(post(http, "deriva-ml:File", "[" * 100_000 + "]" * 100_000), 400, "Request malformed.")
    assert_error(post(http, "deriva-ml:File", b"\xff\xfe", headers=CSV), 400, "Request malformed.")
    assert post(http, "deriva-ml:File", "x", headers={"content-type": "application/xml"}).status_code == 415
    monkeypatch.setattr(ermrest_api, "MAX_BODY_BYTES", 1000)
    assert_error(post(http, "deriva-ml:File", [file_row(i) for i in range(50)]), 400, "Request malformed.")


# --------------------------------------------------------------------------- retrieval

@pytest.fixture
def files(http):  # type: ignore[no-untyped-def]
    rows = [file_row(i, Description=None if i % 3 == 0 else f"d{i}") for i in range(10)]
    return post(http, "deriva-ml:File", rows).json()


def names(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [row["Filename"] for row in r.json()]


def test_filters(http, files) -> None:  # type: ignore[no-untyped-def]
    assert names(http.get("entity/deriva-ml:File/Length=3")) == ["f3.txt"]
    assert names(http.get("entity/deriva-ml:File/Description::null::@sort(Length)")) == ["f0.txt", "f3.txt", "f6.txt", "f9.txt"]
    assert names(http.get("entity/deriva-ml:File/Length::lt::2@sort(Length)")) == ["f0.txt", "f1.txt"]
    assert names(http.get("entity/deriva-ml:File/Length::geq::8@sort(Length)")) == ["f8.txt", "f9.txt"]
    assert names(http.get("entity/deriva-ml:File/Length=1;Length=2@sort(Length)")) == ["f1.txt", "f2.txt"]
    assert names(http.get("entity/deriva-ml:File/Length::gt::1&Length::lt::4@sort(Length)")) == ["f2.txt", "f3.txt"]
    assert names(http.get("entity/deriva-ml:File/Length::gt::1/Length::lt::4/!Length=2")) == ["f3.txt"]
    assert names(http.get("entity/deriva-ml:File/(Length=1;Length=2)&!(Filename=f1.txt)")) == ["f2.txt"]
    assert names(http.get(f"entity/deriva-ml:File/Filename::regexp::{q('^f[45]')}@sort(Filename)")) == ["f4.txt", "f5.txt"]
    md5s = ",".join(files[i]["MD5"] for i in (2, 7))
    assert names(http.get(f"entity/deriva-ml:File/MD5=any({md5s})@sort(Length)")) == ["f2.txt", "f7.txt"]
    assert names(http.get(f"entity/A:=deriva-ml:File/A:Filename={q('f1.txt')}")) == ["f1.txt"]
    assert names(http.get("entity/deriva-ml:File/Filename=nothing")) == []


def test_data_path_errors(http, files) -> None:  # type: ignore[no-untyped-def]
    assert_error(http.get("entity/deriva-ml:Nope"), 409, "Request conflicts")
    assert_error(http.get("entity/nope:File"), 409, "Request conflicts")
    assert_error(http.get("entity/deriva-ml:File/Nope=1"), 409, "Request conflicts")
    assert_error(http.get("entity/deriva-ml:File/Length=abc"), 400, "Request malformed.")
    assert_error(http.get("entity/deriva-ml:File?limit=ten"), 400, "Request malformed.")
    assert_error(http.get("entity/deriva-ml:File/deriva-ml:Execution"), 409, "Request conflicts")
    assert_error(http.get("entity/deriva-ml:File/Filename::regexp::%28"), 400, "Request malformed.")


@pytest.mark.parametrize(
    "path",
    [
        "entity/..%2F..%2Fetc:passwd",
        "entity/deriva-ml:File%22%3B%20DROP%20TABLE%20x%3B--",
        "entity/deriva-ml:File/Filename%22=1",
        "entity/deriva-ml:File/%00=1",
        "entity/" + "x" * 300 + ":File",
    ],
)
def test_odd_names_are_rejected_cleanly(http, path) -> None:  # type: ignore[no-untyped-def]
    r = http.get(path)
    assert r.status_code in (400, 409), r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert http.get("entity/deriva-ml:File").status_code == 200


def test_traversal_outside_ermrest_is_404(http, fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    for path in ("/ermrest/catalog/1/../../etc/passwd", "/ermrest/catalog/..%2F..%2Fx/schema", "/ermrest/catalog/1/%2E%2E/schema"):
        r = httpx.get(fresh_catalog.base_url + path)
        assert r.status_code in (404, 400), (path, r.status_code)


def test_sort_paging_limit(http, files) -> None:  # type: ignore[no-untyped-def]
    page1 = http.get("entity/deriva-ml:File@sort(RID)?limit=4").json()
    page2 = http.get(f"entity/deriva-ml:File@sort(RID)@after({page1[-1]['RID']})?limit=4").json()
    page3 = http.get(f"entity/deriva-ml:File@sort(RID)@after({page2[-1]['RID']})?limit=none").json()
    assert [r["RID"] for r in page1 + page2 + page3] == [f["RID"] for f in files]
    desc = names(http.get("entity/deriva-ml:File@sort(Description::desc::,Length)?limit=5"))
    assert desc[:4] == ["f0.txt", "f3.txt", "f6.txt", "f9.txt"]  # NULLs first when descending
    after_null = names(http.get("entity/deriva-ml:File@sort(Description::desc::,Length)@after(::null::,9)"))
    assert after_null[0] == "f8.txt" and len(after_null) == 6
    before = names(http.get("entity/deriva-ml:File@sort(Length)@before(2)"))
    assert before == ["f0.txt", "f1.txt"]


def test_attribute_group_aggregate_and_csv(http, files) -> None:  # type: ignore[no-untyped-def]
    r = http.get("attribute/deriva-ml:File/Length::lt::2/n:=Filename,Length@sort(Length)")
    assert r.json() == [{"n": "f0.txt", "Length": 0}, {"n": "f1.txt", "Length": 1}]
    r = http.get("aggregate/deriva-ml:File/n:=cnt(*),mx:=max(Length),d:=cnt_d(Description),s:=sum(Length)")
    assert r.json() == [{"n": 10, "mx": 9, "d": 6, "s": 45}]
    r = http.get("attributegroup/deriva-ml:File/Description;c:=cnt(*)@sort(Description)")
    groups = r.json()
    assert groups[-1] == {"Description": None, "c": 4} and len(groups) == 7
    r = http.get("entity/deriva-ml:File/Length::lt::2@sort(Length)?accept=csv")
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].split(",")[:6] == ["RID", "RCT", "RMT", "RCB", "RMB", "URL"]
    header = lines[0].split(",")
    first = lines[1].split(",")
    assert len(lines) == 3 and first[header.index("Description")] == ""  # NULL is an empty field
    assert first[header.index("Length")] == "0" and first[header.index("RCB")] == "local:user"
    r = http.get("entity/deriva-ml:File/Length=1", headers={"accept": "application/x-json-stream"})
    assert [json.loads(x)["Filename"] for x in r.text.splitlines()] == ["f1.txt"]


# --------------------------------------------------------------------------- updates and deletes

def test_attributegroup_update_like_the_uploader(http, files) -> None:  # type: ignore[no-untyped-def]
    old, new = files[1], dict(files[1], Length=99, MD5="f" * 32)
    path = "attributegroup/deriva-ml:File/o0:=Filename,o1:=Length,o2:=MD5,o3:=URL;n0:=Filename,n1:=Length,n2:=MD5,n3:=URL"
    body = [{"o0": old["Filename"], "o1": old["Length"], "o2": old["MD5"], "o3": old["URL"],
             "n0": new["Filename"], "n1": str(new["Length"]), "n2": new["MD5"], "n3": new["URL"]},
            {"o0": "missing", "o1": 1, "o2": "x", "o3": "y", "n0": "a", "n1": 1, "n2": "b", "n3": "c"}]
    r = http.put(path, json=body)
    assert r.status_code == 200
    assert r.json() == [{"o0": "f1.txt", "o1": 1, "o2": old["MD5"], "o3": old["URL"], "n0": "f1.txt", "n1": 99, "n2": "f" * 32, "n3": old["URL"]}]
    row = http.get(f"entity/deriva-ml:File/RID={old['RID']}").json()[0]
    assert row["Length"] == 99 and row["RMT"] >= row["RCT"]
    assert http.put(path, json=body[1:]).json() == []
    assert_error(http.put(path, json=[body[0], body[0]]), 400, "Request malformed.")


def test_entity_put_upserts(http, files) -> None:  # type: ignore[no-untyped-def]
    r = http.put("entity/deriva-ml:File", json=[{"RID": files[0]["RID"], "URL": files[0]["URL"], "Filename": "renamed", "Length": 0, "MD5": files[0]["MD5"]}])
    assert r.status_code == 200 and r.json()[0]["Filename"] == "renamed"
    r = http.put("entity/deriva-ml:File", json=[file_row(100)])
    assert r.status_code == 200 and r.json()[0]["RID"]
    assert len(http.get("entity/deriva-ml:File").json()) == 11


def test_deletes(http, files) -> None:  # type: ignore[no-untyped-def]
    assert http.delete("entity/deriva-ml:File/Length::lt::3").status_code == 204
    assert len(http.get("entity/deriva-ml:File").json()) == 7
    assert_error(http.delete("entity/deriva-ml:File/Length::lt::3"), 404, "Resource not found.")
    assert http.delete("attribute/deriva-ml:File/Length=5/Description").status_code == 204
    assert http.get("entity/deriva-ml:File/Length=5").json()[0]["Description"] is None


def test_fkey_cascade_and_restrict(http) -> None:  # type: ignore[no-untyped-def]
    subj = post(http, "demo-schema:Subject", [{"Name": "s"}]).json()[0]
    img = post(http, "demo-schema:Image", [file_row(1, Subject=subj["RID"])]).json()[0]
    ex = post(http, "deriva-ml:Execution", [{"Description": "e"}]).json()[0]
    post(http, "demo-schema:Image_Execution", [{"Image": img["RID"], "Execution": ex["RID"], "Asset_Role": "Output"}])
    assert_error(post(http, "demo-schema:Image_Execution", [{"Image": img["RID"], "Execution": ex["RID"], "Asset_Role": "Sideways"}]), 409, "Request conflicts")
    # RCB/RMB reference ERMrest_Client with NO ACTION: deleting the client is refused
    assert_error(http.delete("entity/public:ERMrest_Client/ID=local%3Auser"), 409, "Request conflicts")
    # deriva-py's references cascade: the association row goes with the image, the image with its subject
    assert http.delete(f"entity/demo-schema:Subject/RID={subj['RID']}").status_code == 204
    assert http.get("entity/demo-schema:Image").json() == []
    assert http.get("entity/demo-schema:Image_Execution").json() == []


def test_concurrent_inserts_of_the_same_key(http, fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        with httpx.Client(base_url=fresh_catalog.catalog_url + "/", timeout=30) as c:
            r = c.post(f"entity/deriva-ml:File?{SYS}", json=[file_row(42), file_row(1000 + i)])
            with lock:
                statuses.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [409] * 7
    rows = http.get("entity/deriva-ml:File").json()
    assert len(rows) == 2 and sum(r["Filename"] == "f42.txt" for r in rows) == 1
    assert http.get(f"entity/deriva-ml:File/MD5={42:032x}").status_code == 200
