"""deriva-py's unchanged HatracStore against the embedded Hatrac.

Each test uses its own namespace, so they share one server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from pathlib import Path

import pytest
import requests
from deriva.core import HatracStore
from deriva.core.hatrac_store import HatracHashMismatch

from deriva_upload.catalog.hatrac_store import open_jobs

from tests.support.hatrac_server import HatracServer, hatrac_server  # noqa: F401  (fixture)


def _b64(data: bytes, algo: str) -> str:
    return base64.b64encode(hashlib.new(algo, data).digest()).decode()


@pytest.fixture
def store(hatrac_server: HatracServer) -> HatracStore:  # noqa: F811
    return HatracStore("http", hatrac_server.hostname)


@pytest.fixture
def ns() -> str:
    return "/hatrac/t" + uuid.uuid4().hex[:12]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_obj_small_then_get_and_head(store: HatracStore, ns: str, tmp_path: Path) -> None:
    data = b"hello hatrac\n"
    src = _write(tmp_path / "small.txt", data)
    loc = store.put_obj(f"{ns}/small.txt", str(src), content_type="text/plain",
                        content_disposition="filename*=UTF-8''small.txt")
    assert loc.startswith(f"{ns}/small.txt:") and len(loc.split(":")[-1]) == 26

    head = store.head(f"{ns}/small.txt")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Content-Type"] == "text/plain"
    assert head.headers["Content-MD5"] == _b64(data, "md5")
    assert head.headers["Content-SHA256"] == _b64(data, "sha256")
    assert head.headers["Content-Location"] == loc
    assert head.headers["Content-Disposition"] == "filename*=UTF-8''small.txt"
    assert head.headers["Accept-Ranges"] == "bytes"

    dest = tmp_path / "down.txt"
    r = store.get_obj(loc, destfilename=str(dest))
    assert r.status_code == 200
    assert dest.read_bytes() == data


def test_reput_identical_is_skipped(store: HatracStore, ns: str, tmp_path: Path) -> None:
    src = _write(tmp_path / "a.bin", os.urandom(4096))
    first = store.put_obj(f"{ns}/a.bin", str(src))
    again = store.put_obj(f"{ns}/a.bin", str(src))
    assert again == first
    assert store.get(f"{ns}/a.bin;versions").json() == [first]
    # Same name, new content: a second version, which becomes current.
    _write(src, b"other")
    second = store.put_obj(f"{ns}/a.bin", str(src))
    assert second != first
    assert store.get(f"{ns}/a.bin;versions").json() == [first, second]
    assert store.get(f"{ns}/a.bin").content == b"other"


def test_put_loc_chunked(store: HatracStore, ns: str, tmp_path: Path,
                         hatrac_server: HatracServer) -> None:  # noqa: F811
    data = os.urandom(10_000 + 123)
    src = _write(tmp_path / "big.bin", data)
    jobs_before = open_jobs(hatrac_server.root)
    sha = _b64(data, "sha256")
    loc = store.put_loc(f"{ns}/big.bin", str(src), sha256=sha, md5=_b64(data, "md5"), chunked=True,
                        chunk_size=1000, content_disposition="filename*=UTF-8''big.bin")
    assert loc.startswith(f"{ns}/big.bin:")
    head = store.head(f"{ns}/big.bin")
    assert head.headers["Content-SHA256"] == sha
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Content-Location"] == loc
    dest = tmp_path / "big.down"
    store.get_obj(f"{ns}/big.bin", destfilename=str(dest))
    assert dest.read_bytes() == data
    assert open_jobs(hatrac_server.root) == jobs_before  # the job is gone once finalized
    # Chunked re-upload of identical content is skipped by the client's HEAD check.
    assert store.put_loc(f"{ns}/big.bin", str(src), chunked=True, chunk_size=1000) == loc


def test_put_loc_chunked_empty_file(store: HatracStore, ns: str, tmp_path: Path) -> None:
    src = _write(tmp_path / "empty.bin", b"")
    loc = store.put_loc(f"{ns}/empty.bin", str(src), chunked=True, chunk_size=1000)
    head = store.head(loc)
    assert head.headers["Content-Length"] == "0"
    assert head.headers["Content-MD5"] == "1B2M2Y8AsgTpgAmY7PhCfg=="
    assert store.get(loc).content == b""


def test_get_obj_detects_corruption(store: HatracStore, ns: str, tmp_path: Path,
                                    hatrac_server: HatracServer) -> None:  # noqa: F811
    data = os.urandom(100_000)  # above the inline limit: stored as a file under data/
    src = _write(tmp_path / "c.bin", data)
    loc = store.put_obj(f"{ns}/c.bin", str(src))
    version = loc.rsplit(":", 1)[1]
    stored = hatrac_server.root / "data" / version[:2] / version
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(HatracHashMismatch):
        store.get_obj(loc, destfilename=str(tmp_path / "c.down"))


def test_namespaces(store: HatracStore, ns: str, tmp_path: Path) -> None:
    assert not store.is_valid_namespace(ns)
    store.create_namespace(f"{ns}/a/b")  # parents=True
    assert store.is_valid_namespace(ns)
    assert store.is_valid_namespace(f"{ns}/a/b")
    assert store.retrieve_namespace(ns) == [f"{ns}/a"]
    store.put_obj(f"{ns}/a/obj", str(_write(tmp_path / "o", b"x")))
    assert store.retrieve_namespace(f"{ns}/a") == [f"{ns}/a/b", f"{ns}/a/obj"]
    with pytest.raises(requests.HTTPError) as e:
        store.create_namespace(f"{ns}/a")
    assert e.value.response.status_code == 409
    with pytest.raises(requests.HTTPError) as e:
        store.delete_namespace(f"{ns}/a")
    assert e.value.response.status_code == 409  # not empty
    store.delete_namespace(f"{ns}/a/b")
    store.del_obj(f"{ns}/a/obj")
    store.delete_namespace(f"{ns}/a")
    assert store.retrieve_namespace(ns) == []
    # Deleted names are tombstoned.
    with pytest.raises(requests.HTTPError) as e:
        store.create_namespace(f"{ns}/a")
    assert e.value.response.status_code == 409
    assert "not available" in e.value.response.text


def test_uri_list_negotiation(store: HatracStore, ns: str) -> None:
    store.create_namespace(f"{ns}/x")
    r = store.get(ns, headers={"Accept": "text/uri-list"})
    assert r.headers["Content-Type"] == "text/uri-list"
    assert r.text == f"{ns}/x\n"


def test_content_mismatch_stores_nothing(store: HatracStore, ns: str, tmp_path: Path) -> None:
    src = _write(tmp_path / "m.bin", b"actual content")
    with pytest.raises(requests.HTTPError) as e:
        store.put_obj(f"{ns}/m.bin", str(src), md5=_b64(b"something else", "md5"))
    assert e.value.response.status_code == 400
    assert e.value.response.text.endswith("\n")
    r = requests.head(store._server_uri + f"{ns}/m.bin")
    assert r.status_code == 404
    with pytest.raises(requests.HTTPError) as e:
        store.put_obj(f"{ns}/m.bin", str(src), sha256=_b64(b"something else", "sha256"))
    assert e.value.response.status_code == 400
    assert requests.head(store._server_uri + f"{ns}/m.bin").status_code == 404
