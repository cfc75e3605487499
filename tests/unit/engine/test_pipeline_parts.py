"""Small parts of the pipeline: the memory budget, chunk streams, compact rows, options."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from deriva_upload.engine.items import Digests
from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import ByteBudget, _compact_row, _transports, file_stream
from deriva_upload.engine.destination import Destination
from deriva_upload.errors import ConfigError, IntegrityError


def test_byte_budget_never_overcommits() -> None:
    b = ByteBudget(10)
    assert b.try_take(6) and not b.try_take(5) and b.try_take(4)
    b.give(6)
    assert b.used == 4 and b.try_take(6)
    b.give(100)
    assert b.used == 0


def test_file_stream_is_replayable_and_exact(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(bytes(range(256)) * 100)

    async def collect(factory) -> bytes:
        return b"".join([piece async for piece in factory()])

    factory = file_stream(f, 100, 5000)
    first = asyncio.run(collect(factory))
    again = asyncio.run(collect(factory))  # a retry gets a fresh stream over the same bytes
    assert first == again == f.read_bytes()[100:5100]
    with pytest.raises(IntegrityError, match="shrank"):
        asyncio.run(collect(file_stream(f, 25_000, 1000)))


def test_compact_rows_share_names_and_values() -> None:
    d = Digests(hashlib.md5(b"x").hexdigest(), hashlib.sha256(b"x").hexdigest())
    a = _compact_row({"RID": "1", "RCB": "local:user", "MD5": hashlib.md5(b"x").hexdigest()}, d)
    b = _compact_row({"RID": "2", "RCB": "local:" + "user", "MD5": hashlib.md5(b"x").hexdigest()}, d)
    assert a == {"RID": "1", "RCB": "local:user", "MD5": d.md5}
    assert a["RCB"] is b["RCB"] and a["MD5"] is d.md5
    assert [k for k in a][1] is [k for k in b][1]


def test_ermrest_and_object_transports() -> None:
    dest = Destination("http", "localhost:1", "1")
    erm, objects = _transports(dest, UploadOptions(workers=16))
    assert erm.destination == objects.destination == dest
    assert objects._slots._value == 16  # object requests get every worker


@pytest.mark.parametrize("bad", [dict(workers=0), dict(chunk_size=0), dict(shard=(2, 2)), dict(max_retries=-1),
                                 dict(head_before_put="sometimes"), dict(window_files=0)])
def test_options_are_validated(bad: dict) -> None:
    with pytest.raises(ConfigError):
        UploadOptions(**bad)


def test_options_timeout_forms() -> None:
    assert UploadOptions(timeout=(6, 63)).request_timeout == 63.0
    assert UploadOptions(timeout=5).request_timeout == 5.0
    assert UploadOptions().request_timeout is None


def test_file_result_path_and_dict() -> None:
    from deriva_upload.engine.report import FileResult, UploadReport
    from deriva_upload.progress import UploadState

    r = FileResult(rel="a/b.txt", state=UploadState.success, root="/data/up", md5="m")
    assert r.path == "/data/up/a/b.txt"
    assert FileResult(rel="x", state=UploadState.failed, abs_path="/else/x").path == "/else/x"
    d = r.to_dict()
    assert d["path"] == "/data/up/a/b.txt" and d["state"] == "success" and "root" not in d
    rep = UploadReport(files={"a/b.txt": r, "x": FileResult(rel="x", state=UploadState.failed, error="boom")})
    assert list(rep.failed) == ["x"] and not rep.ok
    assert '"failed": ["x"]' in rep.to_json()
