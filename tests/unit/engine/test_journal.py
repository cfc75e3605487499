"""The SQLite journal: batched writes, resume data, corruption handling, keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from deriva_upload.engine.items import Digests
from deriva_upload.engine.journal import Journal, journal_key, journal_path

SPEC = {"asset_mappings": []}


def test_roundtrip_and_digest_validity(tmp_path: Path) -> None:
    j = Journal.for_upload(tmp_path, "http://h/ermrest/catalog/1", SPEC)
    assert j.created and not j.rebuilt
    j.update("a.txt", 3, 100, md5="m", sha256="s", state="hashed")
    j.update("b.bin", 9, 200, job_url="/hatrac/x;upload/J", job_chunk=4, chunks={0, 2}, state="putting")
    j.close()
    j2 = Journal.for_upload(tmp_path, "http://h/ermrest/catalog/1", SPEC)
    assert not j2.created
    got = j2.get_many(["a.txt", "b.bin", "nope"])
    assert got["a.txt"].digests_for(3, 100) == Digests("m", "s")
    assert got["a.txt"].digests_for(3, 101) is None  # mtime changed: stale digests are not reused
    assert got["b.bin"].chunks == frozenset({0, 2}) and got["b.bin"].job_chunk == 4
    assert "nope" not in got
    j2.close()


def test_changed_file_resets_its_entry(tmp_path: Path) -> None:
    j = Journal.memory()
    j.update("a", 1, 1, md5="m", sha256="s", url="/u:1", rid="1-X", state="done")
    e = j.update("a", 2, 2, state="hashed")
    assert (e.md5, e.url, e.rid) == (None, None, None)


def test_writes_are_batched(tmp_path: Path) -> None:
    j = Journal.for_upload(tmp_path, "k", SPEC, batch=3)
    path = j.path
    j.update("a", 1, 1, state="hashed")
    j.update("b", 1, 1, state="hashed")
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM files").fetchone()[0] == 0  # buffered
    j.update("c", 1, 1, state="hashed")  # third write fills the batch: one transaction
    assert other.execute("SELECT count(*) FROM files").fetchone()[0] == 3
    other.close()
    j.close()


def test_corrupt_journal_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "k", SPEC)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    j = Journal.for_upload(tmp_path, "k", SPEC)
    assert j.rebuilt and j.warnings and "moved to" in j.warnings[0]
    j.update("a", 1, 1, state="hashed")
    j.close()
    assert any(p.name.startswith(path.name + ".corrupt-") for p in path.parent.iterdir())
    assert Journal.for_upload(tmp_path, "k", SPEC).get("a") is not None


def test_truncated_journal_is_rebuilt(tmp_path: Path) -> None:
    j = Journal.for_upload(tmp_path, "k", SPEC)
    for i in range(50):
        j.update(f"f{i}", 1, 1, md5="m" * 32, state="hashed")
    j.close()
    path = journal_path(tmp_path, "k", SPEC)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    j2 = Journal.for_upload(tmp_path, "k", SPEC)
    assert j2.rebuilt
    j2.close()


def test_key_depends_on_destination_and_spec(tmp_path: Path) -> None:
    a = journal_key("http://h/ermrest/catalog/1", SPEC)
    assert a == journal_key("http://h/ermrest/catalog/1", {"asset_mappings": []})
    assert a != journal_key("http://h/ermrest/catalog/2", SPEC)
    assert a != journal_key("http://h/ermrest/catalog/1", {"asset_mappings": [{}]})
    assert journal_path(tmp_path, "k", SPEC).parent == tmp_path / ".deriva-upload"
    assert journal_path(tmp_path, "k", SPEC, tmp_path / "j").parent == tmp_path / "j"


def test_unwritable_location_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    j = Journal.for_upload(tmp_path, "k", SPEC, journal_dir=blocker / "sub")
    assert j.path is None and j.warnings
    j.update("a", 1, 1, state="hashed")
    assert j.get("a") is not None
