"""Issue #8 item 7: the embedded catalog refuses hostile or broken requests and serializes races.

Path traversal (plain and percent-encoded) in Hatrac and ERMrest paths, oversized and
malformed JSON, bodies whose checksum does not match their header, concurrent PUTs of
one object, concurrent inserts of one key: each is rejected or serialized, nothing is
written outside the data directory, and the server keeps serving.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest


def _b64(data: bytes, algo: str) -> str:
    return base64.b64encode(hashlib.new(algo, data).digest()).decode()


@pytest.fixture
def client(rcat: Any) -> Any:
    with httpx.Client(base_url=rcat.base_url, timeout=30, trust_env=False) as c:
        yield c


def _raw(port: int, request: bytes, read_timeout: float = 10.0) -> bytes:
    """Send bytes exactly as given (httpx would normalize the path) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                    if length and len(body) >= int(length[0].split(b":")[1]):
                        break
        except socket.timeout:
            pass
    return b"".join(chunks)


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0


def _alive(client: httpx.Client) -> None:
    assert client.get("/authn/session").status_code == 200, "the server must keep serving"


TRAVERSALS = [
    "/hatrac/../../../escape-{tag}",
    "/hatrac/ns-{tag}/../../escape-{tag}",
    "/hatrac/ns-{tag}/%2e%2e/%2e%2e/escape-{tag}",
    "/hatrac/ns-{tag}/%2E%2E%2F%2E%2E%2Fescape-{tag}",
    "/hatrac/ns-{tag}/..%2f..%2fescape-{tag}",
    "/hatrac/ns-{tag}/%252e%252e/escape-{tag}",
    "/hatrac/ns-{tag}/a%00b",
    "/hatrac/ns-{tag}/a%5c..%5c..%5cescape-{tag}",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_hatrac_path_traversal_is_refused_and_writes_nothing(rcat: Any, client: httpx.Client, path: str,
                                                             request: pytest.FixtureRequest) -> None:
    tag = f"t{abs(hash(request.node.name)) % 10**8}"
    target = path.format(tag=tag).encode()
    body = b"evil"
    raw = _raw(rcat.port, b"PUT " + target + b"?parents=true HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\n" + body)
    status = _status(raw)
    if status in (200, 201):
        # a name with %252e is legal ("%2e" literally): then it must stay inside the store
        assert b"%252e" in target
    else:
        assert 400 <= status < 500, raw[:300]
    data_root = Path(rcat.data_dir).parent
    escaped = [p for p in data_root.rglob(f"*escape-{tag}*")]
    assert escaped == [], f"a file was created from a traversal path: {escaped}"
    _alive(client)


ERMREST_TRAVERSALS = [
    "/ermrest/catalog/../../etc/passwd",
    "/ermrest/catalog/%2e%2e%2f%2e%2e/schema",
    "/ermrest/catalog/1/entity/..%2f..%2fetc:passwd",
    "/ermrest/catalog/1/entity/%2e%2e:%2e%2e",
    "/ermrest/catalog/..%2f1/schema",
    "/ermrest/catalog/1%00/schema",
]


@pytest.mark.parametrize("path", ERMREST_TRAVERSALS)
def test_ermrest_path_traversal_is_refused(rcat: Any, client: httpx.Client, path: str) -> None:
    raw = _raw(rcat.port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    assert 400 <= _status(raw) < 500, raw[:300]
    assert b"root:" not in raw
    _alive(client)


def test_ermrest_catalog_id_traversal_cannot_create_files_outside(rcat: Any, client: httpx.Client) -> None:
    before = set(Path(rcat.data_dir).parent.iterdir())
    raw = _raw(rcat.port, b"DELETE /ermrest/catalog/..%2f..%2fdata HTTP/1.1\r\nHost: localhost\r\n"
               b"Connection: close\r\n\r\n")
    assert 400 <= _status(raw) < 500, raw[:300]
    assert set(Path(rcat.data_dir).parent.iterdir()) == before
    assert Path(rcat.data_dir).is_dir()
    _alive(client)


@pytest.mark.parametrize("body", [b"{not json", b"[{\"Name\": ", b"\xff\xfe\x00", b"[" * 200_000, b"42"],
                         ids=["broken", "truncated", "not-utf8", "deeply-nested", "scalar"])
def test_malformed_json_insert_is_a_400_and_inserts_nothing(rcat: Any, rcid: str, client: httpx.Client,
                                                            body: bytes) -> None:
    url = f"/ermrest/catalog/{rcid}/entity/demo-schema:Subject"
    r = client.post(url, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert client.get(url).json() == []
    _alive(client)


def test_oversized_ermrest_body_is_refused_before_it_is_read(rcat: Any, rcid: str, client: httpx.Client) -> None:
    declared = 300 * 1024 * 1024  # above the server's 256 MiB limit; we never send it
    raw = _raw(rcat.port, (f"POST /ermrest/catalog/{rcid}/entity/demo-schema:Subject HTTP/1.1\r\nHost: localhost\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n[").encode(),
               read_timeout=10)
    assert _status(raw) in (400, 413), raw[:300]
    _alive(client)


def test_oversized_hatrac_job_document_is_refused(rcat: Any, client: httpx.Client) -> None:
    doc = json.dumps({"chunk-length": 1024, "content-length": 4096, "content-type": "x" * (200 * 1024)})
    r = client.post("/hatrac/big-json/obj;upload?parents=true", content=doc,
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 413), r.text[:200]
    assert client.head("/hatrac/big-json/obj").status_code == 404
    _alive(client)


@pytest.mark.parametrize("header,algo", [("Content-MD5", "md5"), ("Content-SHA256", "sha256")])
def test_body_not_matching_its_checksum_header_is_refused_and_not_stored(client: httpx.Client, header: str,
                                                                         algo: str) -> None:
    name = f"/hatrac/digest-{algo}/obj.bin"
    r = client.put(f"{name}?parents=true", content=b"the real body",
                   headers={header: _b64(b"another body", algo), "Content-Type": "application/octet-stream"})
    assert r.status_code == 400, r.text
    assert client.head(name).status_code == 404, "no version may exist after a refused PUT"
    ok = client.put(f"{name}?parents=true", content=b"the real body", headers={header: _b64(b"the real body", algo)})
    assert ok.status_code == 201


def test_finalize_of_a_job_whose_chunks_do_not_match_the_declared_md5_is_refused(client: httpx.Client) -> None:
    name = "/hatrac/job-digest/obj.bin"
    good = os.urandom(3000)
    job = client.post(f"{name};upload?parents=true", json={
        "chunk-length": 1000, "content-length": 3000, "content-md5": _b64(good, "md5"),
        "content-type": "application/octet-stream"}).text.strip()
    for i in range(3):
        part = good[i * 1000:(i + 1) * 1000] if i != 1 else b"\x00" * 1000  # chunk 1 corrupted
        assert client.put(f"{job}/{i}", content=part).status_code == 204
    r = client.post(job)
    assert r.status_code == 409, r.text
    assert client.head(name).status_code in (404, 409)


def test_concurrent_puts_of_one_object_each_make_an_intact_version(client: httpx.Client, rcat: Any) -> None:
    name = "/hatrac/race/obj.bin"
    bodies = [os.urandom(50_000 + i) for i in range(12)]

    def put(body: bytes) -> str:
        with httpx.Client(base_url=rcat.base_url, timeout=60, trust_env=False) as c:
            r = c.put(f"{name}?parents=true", content=body, headers={"Content-MD5": _b64(body, "md5")})
            assert r.status_code == 201, r.text
            return r.text.strip()

    with ThreadPoolExecutor(12) as pool:
        versions = list(pool.map(put, bodies))
    assert len(set(versions)) == 12
    assert sorted(client.get(f"{name};versions").json()) == sorted(versions)
    for body, version in zip(bodies, versions):
        got = client.get(version)
        assert got.content == body and got.headers["Content-MD5"] == _b64(body, "md5")


def test_concurrent_inserts_of_one_key_make_exactly_one_row(rcat: Any, rcid: str, client: httpx.Client) -> None:
    url = f"/ermrest/catalog/{rcid}/entity/demo-schema:Image"
    row = {"URL": "/hatrac/race/key", "Filename": "k.bin", "Length": 1, "MD5": "0" * 32}

    def insert(skip: bool) -> int:
        with httpx.Client(base_url=rcat.base_url, timeout=60, trust_env=False) as c:
            return c.post(url + ("?onconflict=skip" if skip else ""), json=[row]).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(insert, [i % 2 == 0 for i in range(32)]))
    assert all(c in (200, 201, 409) for c in codes), codes
    assert sum(1 for i, c in enumerate(codes) if i % 2 == 1 and c == 201) <= 1
    assert [r["URL"] for r in client.get(url).json()] == ["/hatrac/race/key"]


def test_concurrent_chunk_puts_to_one_job_assemble_correctly(client: httpx.Client, rcat: Any) -> None:
    name = "/hatrac/race-job/obj.bin"
    data = os.urandom(16 * 4096 + 123)
    job = client.post(f"{name};upload?parents=true", json={
        "chunk-length": 4096, "content-length": len(data), "content-md5": _b64(data, "md5")}).text.strip()

    def chunk(i: int) -> int:
        with httpx.Client(base_url=rcat.base_url, timeout=60, trust_env=False) as c:
            return c.put(f"{job}/{i}", content=data[i * 4096:(i + 1) * 4096]).status_code

    n = (len(data) + 4095) // 4096
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(chunk, list(range(n)) * 2)) == {204}  # every chunk twice, in parallel
    version = client.post(job).text.strip()
    assert client.get(version).content == data
