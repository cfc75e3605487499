"""One-pass digests, kept bodies, changing files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from deriva_upload.engine import hashing
from deriva_upload.engine.hashing import hash_file, hash_group, read_range
from deriva_upload.errors import IntegrityError


def test_small_file_kept_and_hashed(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"hello")
    r = hash_file(f, keep_limit=10)
    assert r.data == b"hello"
    assert r.digests.md5 == hashlib.md5(b"hello").hexdigest()
    assert r.digests.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert r.size == 5
    assert hash_file(f, keep_limit=4).data is None


def test_large_file_parallel_digests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "PARALLEL_DIGEST_MIN", 1000)
    monkeypatch.setattr(hashing.limits, "HASH_READ_SIZE", 4096)
    data = os.urandom(50_000)
    f = tmp_path / "big"
    f.write_bytes(data)
    r = hash_file(f)
    assert (r.digests.md5, r.digests.sha256) == (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    assert r.data is None


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "e"
    f.write_bytes(b"")
    r = hash_file(f, keep_limit=10)
    assert r.digests.md5_b64 == "1B2M2Y8AsgTpgAmY7PhCfg=="


def test_file_that_keeps_changing_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "log"
    f.write_bytes(b"a")
    calls = {"n": 0}
    real_digest = hashing.digest_bytes

    def growing(data: bytes):
        calls["n"] += 1
        with open(f, "ab") as g:  # the file grows while we hash it
            g.write(b"more")
        return real_digest(data)

    monkeypatch.setattr(hashing, "digest_bytes", growing)
    with pytest.raises(IntegrityError, match="kept changing"):
        hash_file(f, keep_limit=1000)
    assert calls["n"] == hashing.MAX_HASH_ATTEMPTS


def test_group_returns_errors_per_file(tmp_path: Path) -> None:
    good = tmp_path / "g"
    good.write_bytes(b"x")
    res = hash_group([good, tmp_path / "missing"], 10)
    assert res[0].data == b"x"
    assert isinstance(res[1], OSError)


def test_read_range(tmp_path: Path) -> None:
    f = tmp_path / "r"
    f.write_bytes(b"0123456789")
    assert read_range(f, 3, 4) == b"3456"
    with pytest.raises(IntegrityError):
        read_range(f, 8, 4)
