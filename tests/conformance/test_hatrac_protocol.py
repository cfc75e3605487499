"""The embedded Hatrac's wire behaviour, request by request (deriva-protocol.md §4, §10).

Raw httpx requests, so paths and headers are exactly what the test writes.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import httpx
import pytest

from deriva_upload.catalog.hatrac_store import open_jobs
from tests.support.hatrac_server import (  # noqa: F401  (fixtures)
    HatracServer,
    hatrac_server,
    standalone_hatrac,
)


def _b64(data: bytes, algo: str = "md5") -> str:
    return base64.b64encode(hashlib.new(algo, data).digest()).decode()


@pytest.fixture
def client(hatrac_server: HatracServer) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=hatrac_server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def ns() -> str:
    return "/hatrac/p" + uuid.uuid4().hex[:12]


def _raw(server: HatracServer, method: str, path: str, body: bytes | None = None) -> httpx.Response:
    """Send ``path`` byte for byte (httpx would normalise dot segments), via http.client."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        content = resp.read()
        return httpx.Response(resp.status, headers=resp.getheaders(), content=content)
    finally:
        conn.close()


def _put(client: httpx.Client, path: str, data: bytes, **headers: str) -> httpx.Response:
    return client.put(path, params={"parents": "true"}, content=data, headers=headers)


def _assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.endswith("\n")
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers.get("connection") != "close"  # small bodies are drained: keep-alive survives


# ---------------------------------------------------------------------------- objects
def test_put_response_and_headers(client: httpx.Client, ns: str) -> None:
    r = _put(client, f"{ns}/a/obj.txt", b"abc", **{"content-type": "text/plain", "content-md5": _b64(b"abc")})
    assert r.status_code == 201
    ver = r.text.strip().rsplit(":", 1)[1]
    assert r.text == f"{ns}/a/obj.txt:{ver}\n"
    assert r.headers["location"] == f"{ns}/a/obj.txt:{ver}"
    assert r.headers["content-type"] == "text/uri-list"
    assert re.fullmatch(r"[A-Z2-7]{26}", ver)
    for path in (f"{ns}/a/obj.txt", f"{ns}/a/obj.txt:{ver}"):
        h = client.head(path)
        assert h.status_code == 200
        assert h.headers["content-length"] == "3"
        assert h.headers["content-location"] == f"{ns}/a/obj.txt:{ver}"
        assert h.headers["etag"] == f'"{ver}"'
        assert h.headers["content-disposition"] == "filename*=UTF-8''obj.txt"
        assert client.get(path).content == b"abc"


def test_hex_digests_accepted(client: httpx.Client, ns: str) -> None:
    data = b"hex digests"
    r = _put(client, f"{ns}/h", data, **{"content-md5": hashlib.md5(data).hexdigest(),
                                          "content-sha256": hashlib.sha256(data).hexdigest()})
    assert r.status_code == 201
    assert client.head(f"{ns}/h").headers["content-sha256"] == _b64(data, "sha256")


@pytest.mark.parametrize("header,value", [
    ("content-md5", "not a digest"),
    ("content-md5", base64.b64encode(b"short").decode()),
    ("content-sha256", hashlib.md5(b"x").hexdigest()),
])
def test_malformed_digest_is_400(client: httpx.Client, ns: str, header: str, value: str) -> None:
    _assert_error(_put(client, f"{ns}/d", b"x", **{header: value}), 400)
    assert client.head(f"{ns}/d").status_code == 404


def test_empty_object_head_has_content_length(client: httpx.Client, ns: str) -> None:
    assert _put(client, f"{ns}/empty", b"").status_code == 201
    h = client.head(f"{ns}/empty")
    assert h.headers["content-length"] == "0"
    assert h.headers["content-md5"] == "1B2M2Y8AsgTpgAmY7PhCfg=="
    g = client.get(f"{ns}/empty")
    assert g.status_code == 200 and g.content == b""


def test_large_put_streams_and_range(client: httpx.Client, ns: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # above the in-memory threshold
    r = _put(client, f"{ns}/big", data, **{"content-sha256": _b64(data, "sha256")})
    assert r.status_code == 201
    g = client.get(f"{ns}/big")
    assert g.content == data and g.headers["content-length"] == str(len(data))
    part = client.get(f"{ns}/big", headers={"range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = client.get(f"{ns}/big", headers={"range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    big_range = client.get(f"{ns}/big", headers={"range": "bytes=1048570-"})
    assert big_range.status_code == 206 and big_range.content == data[1048570:]
    assert client.get(f"{ns}/big", headers={"range": f"bytes={len(data)}-"}).status_code == 416


def test_content_disposition_validated(client: httpx.Client, ns: str) -> None:
    _assert_error(_put(client, f"{ns}/cd", b"x", **{"content-disposition": "attachment; filename=x"}), 400)
    ok = _put(client, f"{ns}/cd", b"x", **{"content-disposition": "filename*=UTF-8''na%20me.txt"})
    assert ok.status_code == 201
    assert client.head(f"{ns}/cd").headers["content-disposition"] == "filename*=UTF-8''na%20me.txt"


def test_missing_parent_without_parents_is_404(client: httpx.Client, ns: str) -> None:
    _assert_error(client.put(f"{ns}/x/y", content=b"x"), 404)
    assert client.head(ns).status_code == 404  # nothing half-created


def test_conflicts(client: httpx.Client, ns: str) -> None:
    assert _put(client, f"{ns}/obj", b"x").status_code == 201
    _assert_error(_put(client, f"{ns}/obj/child", b"x"), 409)        # parent is an object
    _assert_error(_put(client, ns, b"x"), 409)                        # name is a namespace
    _assert_error(client.put(f"{ns}/obj", headers={"content-type": "application/x-hatrac-namespace"}), 409)
    _assert_error(client.get(f"{ns}/nope"), 404)
    _assert_error(client.get(f"{ns}/obj:AAAAAAAAAAAAAAAAAAAAAAAAAA"), 404)


def test_conditional_requests(client: httpx.Client, ns: str) -> None:
    first = _put(client, f"{ns}/c", b"1", **{"if-none-match": "*"})
    assert first.status_code == 201
    ver = first.text.strip().rsplit(":", 1)[1]
    _assert_error(_put(client, f"{ns}/c", b"2", **{"if-none-match": "*"}), 412)
    _assert_error(_put(client, f"{ns}/c", b"2", **{"if-match": '"NOTTHEVERSION"'}), 412)
    assert _put(client, f"{ns}/c", b"2", **{"if-match": f'"{ver}"'}).status_code == 201
    assert client.get(f"{ns}/c").content == b"2"
    big = os.urandom(200_000)  # the file-backed path checks the same way
    _assert_error(_put(client, f"{ns}/c", big, **{"if-match": f'"{ver}"'}), 412)
    cur = client.head(f"{ns}/c").headers["etag"]
    r = client.get(f"{ns}/c", headers={"if-none-match": cur})
    assert r.status_code == 304 and r.content == b""
    assert client.get(f"{ns}/c", headers={"if-none-match": f'"{ver}"'}).status_code == 200


def test_versions_delete_and_tombstone(client: httpx.Client, ns: str) -> None:
    v1 = _put(client, f"{ns}/o", b"one").text.strip()
    v2 = _put(client, f"{ns}/o", b"two").text.strip()
    assert client.get(f"{ns}/o;versions").json() == [v1, v2]
    assert client.get(v1).content == b"one"
    assert client.delete(v2).status_code == 204
    assert client.get(f"{ns}/o").content == b"one"
    assert client.delete(v1).status_code == 204
    _assert_error(client.get(f"{ns}/o"), 409)  # name exists, no content
    assert client.delete(f"{ns}/o").status_code == 204
    _assert_error(client.get(f"{ns}/o"), 404)
    r = _put(client, f"{ns}/o", b"again")
    _assert_error(r, 409)
    assert "not available" in r.text


def test_namespace_listing_and_root(client: httpx.Client, ns: str) -> None:
    r = client.put(ns, headers={"content-type": "application/x-hatrac-namespace"})
    assert r.status_code == 201 and r.text == f"{ns}\n"
    _put(client, f"{ns}/b", b"1")
    _put(client, f"{ns}/a/c", b"2")
    assert client.get(ns, headers={"accept": "application/json"}).json() == [f"{ns}/a", f"{ns}/b"]
    assert client.head(ns).status_code == 200
    assert "content-md5" not in client.head(ns).headers
    assert ns in client.get("/hatrac/").json()


# ---------------------------------------------------------------------------- names
@pytest.mark.parametrize("path", [
    "/hatrac/ns/../etc/passwd", "/hatrac/ns/./x", "/hatrac/ns//x", "/hatrac//x",
    "/hatrac/ns/%2e%2e/x", "/hatrac/ns/%2E%2E", "/hatrac/ns/.%2e/x", "/hatrac/ns/a%2fb",
    "/hatrac/ns/a%00b", "/hatrac/ns/a+b", "/hatrac/ns/a'b", "/hatrac/ns/a%zz", "/hatrac/ns/caf%C3%A9/a@b",
    "/hatrac/ns/a*b", "/hatrac/ns/a%5cb",
])
def test_bad_names_are_400(client: httpx.Client, path: str, hatrac_server: HatracServer) -> None:  # noqa: F811
    for method in ("PUT", "GET"):
        r = _raw(hatrac_server, method, path + "?parents=true", b"x" if method == "PUT" else None)
        _assert_error(r, 400)
    # Nothing escaped the store: the data folder only holds version-id file names.
    for p in hatrac_server.root.rglob("*"):
        assert ".." not in p.name and "passwd" not in p.name


def test_percent_encoded_names_round_trip(client: httpx.Client, ns: str,
                                          hatrac_server: HatracServer) -> None:  # noqa: F811
    r = _raw(hatrac_server, "PUT", f"{ns}/a%20b.txt?parents=true", b"x")
    assert r.status_code == 201
    assert r.text.startswith(f"{ns}/a%20b.txt:")
    assert _raw(hatrac_server, "GET", f"{ns}/a%20b.txt").content == b"x"
    assert client.get(ns).json() == [f"{ns}/a%20b.txt"]


# ---------------------------------------------------------------------------- upload jobs
def _job(client: httpx.Client, path: str, **doc) -> str:
    r = client.post(f"{path};upload", params={"parents": "true"}, json=doc)
    assert r.status_code == 201, r.text
    assert r.text.endswith("\n") and not r.text.endswith("\r\n") and r.text.count("\n") == 1
    assert r.text == f"{path};upload/{r.text.split('/')[-1][:-1]}\n"
    return r.text.strip()


def test_job_lifecycle_out_of_order(client: httpx.Client, ns: str, hatrac_server: HatracServer) -> None:  # noqa: F811
    data = os.urandom(2500)
    obj = f"{ns}/j.bin"
    job = _job(client, obj, **{"chunk-length": 1000, "content-length": 2500, "content-md5": _b64(data),
                               "content-sha256": _b64(data, "sha256"), "content-type": "x/y",
                               "content-disposition": "filename*=UTF-8''j.bin"})
    status = client.get(job)
    assert status.text.endswith("\n")
    doc = status.json()
    assert doc["url"] == job and doc["target"] == obj and doc["owner"] == ["local:user"]
    assert doc["chunk-length"] == 1000 and doc["content-length"] == 2500
    assert doc["content-md5"] == _b64(data) and doc["content-sha256"] == _b64(data, "sha256")
    assert client.get(f"{obj};upload").json() == [job]
    _assert_error(client.get(obj), 409)  # name exists, no content yet
    # Out of order, with a re-send of a chunk with different bytes first.
    assert client.put(f"{job}/2", content=data[2000:]).status_code == 204
    assert client.put(f"{job}/0", content=b"\0" * 1000).status_code == 204
    assert client.put(f"{job}/1", content=data[1000:2000]).status_code == 204
    assert client.put(f"{job}/0", content=data[:1000]).status_code == 204
    fin = client.post(job)
    assert fin.status_code == 201
    ver = job.rsplit("/", 1)[1]
    assert fin.text == f"{obj}:{ver}\n"
    h = client.head(obj)
    assert h.headers["content-type"] == "x/y" and h.headers["content-md5"] == _b64(data)
    assert h.headers["content-disposition"] == "filename*=UTF-8''j.bin"
    assert client.get(obj).content == data
    assert client.get(f"{obj};upload").json() == []


def test_job_chunk_errors(client: httpx.Client, ns: str) -> None:
    job = _job(client, f"{ns}/e", **{"chunk-length": 10, "content-length": 25})
    _assert_error(client.put(f"{job}/3", content=b"x" * 10), 409)    # out of range
    _assert_error(client.put(f"{job}/-1", content=b"x" * 10), 400)
    _assert_error(client.put(f"{job}/one", content=b"x" * 10), 400)
    _assert_error(client.put(f"{job}/0", content=b"x" * 9), 409)     # wrong length
    _assert_error(client.put(f"{job}/2", content=b"x" * 10), 409)    # last chunk is 5
    assert client.put(f"{job}/2", content=b"x" * 5).status_code == 204
    _assert_error(client.post(job), 409)                               # chunks 0, 1 missing
    _assert_error(client.put(f"{ns}/e;upload/NOSUCHJOB/0", content=b"x" * 10), 404)


def test_job_digest_mismatch_is_409(client: httpx.Client, ns: str) -> None:
    for field, algo in (("content-md5", "md5"), ("content-sha256", "sha256")):
        obj = f"{ns}/mm-{algo}"
        job = _job(client, obj, **{"chunk-length": 4, "content-length": 4, field: _b64(b"abcd", algo)})
        assert client.put(f"{job}/0", content=b"abce").status_code == 204
        _assert_error(client.post(job), 409)
        _assert_error(client.get(obj), 409)  # still no content


def test_job_create_validation(client: httpx.Client, ns: str) -> None:
    for doc in ({"content-length": 5}, {"chunk-length": 5}, {"chunk-length": "5", "content-length": 5},
                {"chunk-length": 0, "content-length": 5}, {"chunk-length": 5, "content-length": -1},
                {"chunk-length": 5, "content-length": 2**60}, {"chunk-length": 2**70, "content-length": 5},
                {"chunk-length": 5, "content-length": 5, "content-type": "text/\u4e2d"},
                {"chunk-length": 5, "content-length": 5, "content-type": "a\r\nX-Evil: 1"},
                {"chunk-length": 5, "content-length": 5, "content-disposition": "inline"},
                {"chunk-length": 5, "content-length": 5, "content-md5": "zz"}):
        _assert_error(client.post(f"{ns}/v;upload", params={"parents": "true"}, json=doc), 400)
    _assert_error(client.post(f"{ns}/v;upload", params={"parents": "true"}, content=b"[1]"), 400)
    _assert_error(client.post(f"{ns}/v;upload", params={"parents": "true"}, content=b"[" * 60000), 400)
    _assert_error(client.post(f"{ns}/v;upload", params={"parents": "true"}, content=b"\xff\xfe"), 400)
    # Deprecated aliases.
    job = _job(client, f"{ns}/v", chunk_bytes=5, total_bytes=5, content_md5=_b64(b"12345"))
    assert client.put(f"{job}/0", content=b"12345").status_code == 204
    assert client.post(job).status_code == 201


def test_job_cancel(client: httpx.Client, ns: str, hatrac_server: HatracServer) -> None:  # noqa: F811
    before = open_jobs(hatrac_server.root)
    job = _job(client, f"{ns}/c", **{"chunk-length": 4, "content-length": 8})
    assert open_jobs(hatrac_server.root) == before + 1
    assert client.delete(job).status_code == 204
    assert open_jobs(hatrac_server.root) == before
    _assert_error(client.get(job), 404)
    _assert_error(client.post(job), 404)


def test_parallel_chunks(client: httpx.Client, ns: str, hatrac_server: HatracServer) -> None:  # noqa: F811
    k = 64 * 1024
    data = os.urandom(k * 16 + 100)
    job = _job(client, f"{ns}/par", **{"chunk-length": k, "content-length": len(data),
                                       "content-sha256": _b64(data, "sha256"), "content-md5": _b64(data)})
    order = list(range(17))[::-1]
    with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=hatrac_server.base_url) as c2:
        codes = list(pool.map(lambda n: c2.put(f"{job}/{n}", content=data[n * k:(n + 1) * k]).status_code,
                              order))
    assert codes == [204] * 17
    assert client.post(job).status_code == 201
    assert client.get(f"{ns}/par").content == data


# ---------------------------------------------------------------------------- concurrency
def test_concurrent_puts_same_object(hatrac_server: HatracServer, ns: str) -> None:  # noqa: F811
    bodies = [bytes([i]) * (1000 + i) for i in range(24)]
    barrier = threading.Barrier(8)

    def put(i: int) -> str:
        with httpx.Client(base_url=hatrac_server.base_url) as c:
            if i < 8:
                barrier.wait()
            r = _put(c, f"{ns}/same", bodies[i], **{"content-md5": _b64(bodies[i])})
            assert r.status_code == 201, r.text
            return r.text.strip()

    with ThreadPoolExecutor(8) as pool:
        locs = list(pool.map(put, range(24)))
    assert len(set(locs)) == 24
    with httpx.Client(base_url=hatrac_server.base_url) as c:
        assert sorted(c.get(f"{ns}/same;versions").json()) == sorted(locs)
        for i, loc in enumerate(locs):
            assert c.get(loc).content == bodies[i]


def test_owner_from_scope_state(standalone_hatrac) -> None:  # type: ignore[no-untyped-def]
    """The job owner is the client id the auth middleware put in scope["state"]."""

    def who(app):  # type: ignore[no-untyped-def]
        async def wrapped(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                scope.setdefault("state", {})["client"] = {"id": "https://auth.example/u1"}
            await app(scope, receive, send)

        return wrapped

    server = standalone_hatrac(who)
    with httpx.Client(base_url=server.base_url) as c:
        r = c.post("/hatrac/x/o;upload?parents=true", content=json.dumps({"chunk-length": 1, "content-length": 1}))
        assert r.status_code == 201
        assert c.get(r.text.strip()).json()["owner"] == ["https://auth.example/u1"]
