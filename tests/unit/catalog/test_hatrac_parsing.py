"""Pure request parsing of the embedded Hatrac: names, targets, digests, ranges."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deriva_upload.catalog.hatrac import (
    Target,
    check_disposition,
    parse_digest,
    parse_etags,
    parse_name,
    parse_range,
    parse_target,
)
from deriva_upload.catalog.hatrac_store import HatracError, new_id


@pytest.mark.parametrize("path,name", [
    ("", ""), ("/", ""), ("/ns", "/ns"), ("/ns/", "/ns"), ("/a/b.c/d-e_f~g", "/a/b.c/d-e_f~g"),
    ("/a%20b/%41", "/a%20b/%41"), ("/.hidden/x..y", "/.hidden/x..y"),
])
def test_valid_names(path: str, name: str) -> None:
    assert parse_name(path) == name


@pytest.mark.parametrize("path", [
    "ns", "/ns//x", "//x", "/ns/..", "/ns/../x", "/./x", "/ns/.", "/ns/%2e%2e", "/ns/%2E%2e/x", "/ns/.%2e",
    "/ns/%2e", "/a%2fb", "/a%2Fb", "/a%00", "/a%5cb", "/a%5C..", "/a b", "/a+b", "/a@b", "/a%zz", "/a%4",
    "/caf\u00e9", "/a:b", "/a;b", "/ns/x//",
])
def test_invalid_names(path: str) -> None:
    with pytest.raises(HatracError) as e:
        parse_name(path)
    assert e.value.status == 400


@given(st.text(min_size=1, max_size=30))
def test_accepted_names_never_traverse(seg: str) -> None:
    """Whatever gets through decodes to a plain segment: no '/', '.', '..' or NUL."""
    from urllib.parse import unquote_to_bytes

    try:
        name = parse_name("/" + seg)
    except HatracError:
        return
    for part in name[1:].split("/"):
        raw = unquote_to_bytes(part)
        assert raw not in (b"", b".", b"..") and b"/" not in raw and b"\0" not in raw


def test_parse_target() -> None:
    assert parse_target("/ns/obj") == Target("/ns/obj")
    assert parse_target("/ns/obj:ABC234") == Target("/ns/obj", "ABC234")
    assert parse_target("/ns/obj;versions") == Target("/ns/obj", None, "versions")
    assert parse_target("/ns/obj;upload") == Target("/ns/obj", None, "upload")
    assert parse_target("/ns/obj;upload/JOB1") == Target("/ns/obj", None, "upload", "JOB1")
    assert parse_target("/ns/obj;upload/JOB1/7") == Target("/ns/obj", None, "upload", "JOB1", "7")
    assert parse_target("/ns/obj;upload/JOB1/-1").chunk == "-1"  # the handler answers 400
    assert parse_target("").name == "" and parse_target("/").name == ""
    assert Target("/a/b").url == "/hatrac/a/b"


@pytest.mark.parametrize("path", [
    "/ns/obj:", "/ns/obj:AB-C", "/ns/obj;acl", "/ns/obj;metadata/x", "/ns/obj;upload/J/1/2",
    "/ns/obj;upload/J%2e", "/ns/obj:V;versions", ";versions", "/ns/../obj;upload",
])
def test_bad_targets(path: str) -> None:
    with pytest.raises(HatracError) as e:
        parse_target(path)
    assert e.value.status == 400


def test_parse_digest_base64_and_hex() -> None:
    data = b"some bytes"
    md5 = hashlib.md5(data).digest()
    sha = hashlib.sha256(data).digest()
    assert parse_digest(base64.b64encode(md5).decode(), "md5") == md5
    assert parse_digest(md5.hex(), "md5") == md5
    assert parse_digest(md5.hex().upper(), "md5") == md5
    assert parse_digest(base64.b64encode(sha).decode(), "sha256") == sha
    assert parse_digest(sha.hex(), "sha256") == sha
    assert parse_digest(" " + sha.hex() + " ", "sha256") == sha


@pytest.mark.parametrize("value,algo", [
    ("", "md5"), ("xyz", "md5"), ("not base64!!", "md5"), (base64.b64encode(b"x" * 15).decode(), "md5"),
    (hashlib.sha256(b"").hexdigest(), "md5"), (hashlib.md5(b"").hexdigest(), "sha256"),
    (base64.b64encode(hashlib.md5(b"").digest()).decode(), "sha256"),
])
def test_parse_digest_rejects(value: str, algo: str) -> None:
    with pytest.raises(HatracError) as e:
        parse_digest(value, algo)
    assert e.value.status == 400


def test_disposition() -> None:
    assert check_disposition("filename*=UTF-8''a%20b.txt") == "filename*=UTF-8''a%20b.txt"
    for bad in ("attachment; filename=a", "filename*=UTF-8''", "filename*=UTF-8''a b", "filename=a"):
        with pytest.raises(HatracError):
            check_disposition(bad)


@pytest.mark.parametrize("value,size,expected", [
    ("bytes=0-9", 100, (0, 10)), ("bytes=10-", 100, (10, 100)), ("bytes=-5", 100, (95, 100)),
    ("bytes=-500", 100, (0, 100)), ("bytes=90-1000", 100, (90, 100)), ("bytes=5-5", 100, (5, 6)),
    ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None), ("bytes=9-2", 100, None), ("bytes=x-", 100, None),
    ("bytes=-", 100, None),
])
def test_parse_range(value: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(value, size) == expected


@pytest.mark.parametrize("value", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable_range(value: str) -> None:
    with pytest.raises(HatracError) as e:
        parse_range(value, 100)
    assert e.value.status == 416


def test_ids_look_like_hatrac() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100
    for i in ids:
        assert len(i) == 26 and set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def test_parse_etags() -> None:
    assert parse_etags(None) is None
    assert parse_etags(" * ") == "*"
    assert parse_etags('"A"') == frozenset({"A"})
    assert parse_etags('"A", W/"B" ,"C"') == frozenset({"A", "B", "C"})
