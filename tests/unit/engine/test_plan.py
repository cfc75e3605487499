"""The planning rule shared by upload, dry run and verify."""

from __future__ import annotations

from pathlib import Path

from deriva_upload.engine import limits
from deriva_upload.engine.items import Digests, Item
from deriva_upload.engine.journal import Entry
from deriva_upload.engine.plan import Decision, Plan, decide, find_row, group_rows, is_chunked

D = Digests("a" * 32, "b" * 64)


def item(size: int = 10, **kw) -> Item:
    base = dict(path=Path("/r/f.txt"), rel="f.txt", size=size, mtime_ns=5, kind="asset", schema="s", table="T")
    base.update(kw)
    return Item(**base)


def test_existing_row_by_md5_and_filename() -> None:
    rows = [{"RID": "1", "MD5": D.md5, "Filename": "other.txt"}, {"RID": "2", "MD5": D.md5, "Filename": "f.txt"}]
    row, conflict = find_row(item(), D, group_rows(rows, "MD5"), {})
    assert row is not None and row["RID"] == "2" and conflict == ""
    row, _ = find_row(item(file_name="x.txt"), D, group_rows(rows, "MD5"), {})
    assert row is None


def test_rid_holding_other_content_is_a_conflict() -> None:
    by_rid = {"1-R": {"RID": "1-R", "MD5": "c" * 32, "Filename": "z"}}
    row, conflict = find_row(item(rid="1-R"), D, {}, by_rid)
    assert row is None and "1-R" in conflict
    assert decide(item(rid="1-R"), D, None, None, conflict).action == "conflict"
    same = {"1-R": {"RID": "1-R", "MD5": D.md5, "Filename": "z"}}
    assert find_row(item(rid="1-R"), D, {}, same)[0] is not None


def test_decide_present_insert_resume_upload() -> None:
    it = item()
    assert decide(it, D, None, {"RID": "1", "URL": "/u:1"}).action == "present"
    stored = Entry("f.txt", 10, 5, D.md5, D.sha256, url="/u:2", state="stored")
    d = decide(it, D, stored, None)
    assert (d.action, d.url) == ("insert", "/u:2")
    job = Entry("f.txt", 10, 5, D.md5, D.sha256, job_url="/h;upload/J", job_chunk=4, state="putting")
    assert decide(it, D, job, None) == Decision("resume", job="/h;upload/J", head=True)
    # a changed file (mtime differs from the journal) does not reuse the old object
    old = Entry("f.txt", 10, 4, D.md5, D.sha256, url="/u:2", state="stored")
    assert decide(it, D, old, None).action == "upload"


def test_head_policy() -> None:
    it = item()
    assert decide(it, D, None, None).head is False  # fresh journal: nothing can be stored yet
    assert decide(it, D, None, None, journal_rebuilt=True).head is True
    putting = Entry("f.txt", 10, 5, D.md5, D.sha256, state="putting")
    assert decide(it, D, putting, None).head is True  # a crash mid-PUT
    assert decide(it, D, None, None, head_policy="always").head is True
    assert decide(it, D, putting, None, head_policy="never").head is False


def test_table_files() -> None:
    t = item(kind="table")
    assert decide(t, D, None, None).action == "table"
    assert decide(t, D, Entry("f.txt", 10, 5, state="done"), None).action == "table-done"
    assert decide(t, D, Entry("f.txt", 11, 5, state="done"), None).action == "table"


def test_chunking_threshold() -> None:
    assert is_chunked(item(size=0), None) == (True, limits.DEFAULT_CHUNK_SIZE)
    assert is_chunked(item(size=limits.DEFAULT_CHUNK_SIZE), None)[0] is False
    assert is_chunked(item(size=limits.DEFAULT_CHUNK_SIZE + 1), None)[0] is True
    assert is_chunked(item(size=3000), 1024) == (True, 1024)  # below GenericUploader's 25 MiB
    assert is_chunked(item(size=3000, chunk_size=2048), None) == (True, 2048)  # the spec's chunk_size
    assert is_chunked(item(size=30 * limits.MiB), 100 * limits.MiB) == (True, 100 * limits.MiB)


def test_plan_counts() -> None:
    p = Plan()
    p.add(item(), Decision("present"), D)
    p.add(item(size=20), Decision("upload"), D)
    p.add(item(kind="table"), Decision("table"), None)
    t = p.tables["s:T"]
    assert (t.files, t.bytes, t.present, t.to_upload, t.upload_bytes, t.to_insert) == (3, 40, 1, 1, 20, 2)
    d = p.to_dict()
    assert d["total_files"] == 3 and len(d["files"]) == 3
    assert '"action": "upload"' in p.to_json()
