"""The upload engine against the embedded catalog: rows, objects, resume, idempotence."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from deriva_upload.engine.ermrest import ErmrestClient
from deriva_upload.engine.journal import journal_path
from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import plan_upload, run_upload, status, verify
from deriva_upload.engine.transport import Transport
from deriva_upload.progress import UploadState

from tests.integration.engine_support import (
    DOMAIN,
    ML,
    Target,
    asset_rel,
    b64,
    make_target,
    md5,
    write,
)

OPTS = UploadOptions(retry_delay=0.05, max_retries=2)


@pytest.fixture(scope="module")
def server(embedded_catalog):
    """The shared session catalog (tests/conftest.py); each test makes its own catalog id."""
    return embedded_catalog


@pytest.fixture
def target(server) -> Target:
    return make_target(server)


def _tree(root: Path, subject_rid: str | None = None) -> dict[str, bytes]:
    files = {
        asset_rel("Image", "2024-01-02", "__NULL__", subject_rid or "__NULL__", "scan 01.png"): b"png-one",
        asset_rel("Image", "__NULL__", "__NULL__", "__NULL__", "two.png"): b"png-two",
        asset_rel("Execution_Metadata", "model.tar.gz", schema=ML): b"tarball",
        asset_rel("Execution_Metadata", "README", schema=ML): b"readme",
    }
    for rel, data in files.items():
        write(root, rel, data)
    return files


def test_upload_small_files_metadata_null_and_tables(tmp_path: Path, target: Target) -> None:
    subject = target.insert(DOMAIN, "Subject", [{"Name": "s1"}])[0]["RID"]
    files = _tree(tmp_path, subject)
    write(tmp_path, f"deriva-ml/execution/1-EXE/table/{DOMAIN}/Subject/Subject.csv", b"Name\nalice\nbob\n")
    write(tmp_path, "stray.txt", b"not placed")

    report = run_upload(tmp_path, target.spec(), target.dest, OPTS)

    assert report.failed == {}, report.to_json()
    assert [p for p, _ in report.unmatched] == ["stray.txt"]
    images = {r["Filename"]: r for r in target.rows(DOMAIN, "Image")}
    assert set(images) == {"scan 01.png", "two.png"}
    one = images["scan 01.png"]
    assert (one["Acquisition_Date"], one["Acquisition_Time"], one["Subject"]) == ("2024-01-02", None, subject)
    assert images["two.png"]["Acquisition_Date"] is None and images["two.png"]["Subject"] is None
    assert one["MD5"] == md5(b"png-one") and one["Length"] == len(b"png-one")
    assert one["URL"].startswith(f"/hatrac/Image/{md5(b'png-one')}.scan%2001.png:")
    head = target.head(one["URL"])
    assert head.status_code == 200
    assert head.headers["Content-MD5"] == b64(hashlib.md5(b"png-one").digest())
    assert head.headers["Content-SHA256"] == b64(hashlib.sha256(b"png-one").digest())
    assert head.headers["Content-Type"] == "image/png"
    assert {r["Filename"] for r in target.rows(ML, "Execution_Metadata")} == {"model.tar.gz", "README"}
    assert sorted(r["Name"] for r in target.rows(DOMAIN, "Subject")) == ["alice", "bob", "s1"]
    assert report.tables[f"{DOMAIN}:Image"].inserted == 2
    assert report.tables[f"{DOMAIN}:Subject"].inserted == 2
    res = report.files[asset_rel("Image", "2024-01-02", "__NULL__", subject, "scan 01.png")]
    assert res.state == UploadState.success and res.rid == one["RID"] and res.record["URL"] == one["URL"]
    assert len(report.files) == len(files) + 1


def test_rerun_sends_no_new_rows_or_objects(tmp_path: Path, target: Target) -> None:
    _tree(tmp_path)
    spec = target.spec()
    first = run_upload(tmp_path, spec, target.dest, OPTS)
    assert first.failed == {}
    before = {r["URL"] for r in target.rows(DOMAIN, "Image")}
    versions = {url: target.versions(url) for url in before}  # Hatrac is shared by every catalog of a host
    second = run_upload(tmp_path, spec, target.dest, OPTS)
    assert second.failed == {}
    assert {r["URL"] for r in target.rows(DOMAIN, "Image")} == before
    assert all(r.action == "present" for r in second.files.values())
    assert second.stats.requests <= 3  # look-ups only: no HEAD, PUT or POST
    for url in before:
        assert target.versions(url) == versions[url]


def test_chunked_upload_with_small_chunk_size(tmp_path: Path, target: Target) -> None:
    data = os.urandom(10_000)
    rel = asset_rel("Execution_Asset", "big.bin", schema=ML)
    write(tmp_path, rel, data)
    empty = asset_rel("Execution_Asset", "empty.bin", schema=ML)
    write(tmp_path, empty, b"")
    report = run_upload(tmp_path, target.spec(chunk_size=4096), target.dest, OPTS)
    assert report.failed == {}, report.to_json()
    rows = {r["Filename"]: r for r in target.rows(ML, "Execution_Asset")}
    assert rows["big.bin"]["Length"] == 10_000 and rows["big.bin"]["MD5"] == md5(data)
    head = target.head(rows["big.bin"]["URL"])
    assert head.headers["Content-SHA256"] == b64(hashlib.sha256(data).digest())
    assert int(head.headers["Content-Length"]) == 10_000
    assert rows["empty.bin"]["Length"] == 0


def test_pre_allocated_rid_from_the_path(tmp_path: Path, target: Target) -> None:
    async def lease() -> list[str]:
        async with Transport(target.dest) as tr:
            return await ErmrestClient(tr).lease_rids(1)

    import asyncio

    [rid] = asyncio.run(lease())
    write(tmp_path, asset_rel("Execution_Metadata", rid, "config.json", schema=ML), b"{}")
    report = run_upload(tmp_path, target.spec(), target.dest, OPTS)
    assert report.failed == {}, report.to_json()
    [row] = target.rows(ML, "Execution_Metadata")
    assert row["RID"] == rid
    again = run_upload(tmp_path, target.spec(), target.dest, OPTS)
    assert [r.action for r in again.files.values()] == ["present"]
    assert len(target.rows(ML, "Execution_Metadata")) == 1


_CRASH = textwrap.dedent("""
    import os, sys
    from deriva_upload.engine import pipeline
    from deriva_upload.engine.destination import Destination
    from deriva_upload.engine.options import UploadOptions
    import json

    async def die(self, rows):
        os._exit(9)  # like kill -9 between the object PUTs and the row insert

    pipeline._Run.insert_rows = die
    root, spec_file, scheme, host, cid = sys.argv[1:]
    spec = json.loads(open(spec_file).read())
    pipeline.run_upload(root, spec, Destination(scheme, host, cid), UploadOptions(retry_delay=0.05))
""")


@pytest.mark.parametrize("lose_journal", [False, True])
def test_crash_between_put_and_insert_then_rerun(tmp_path: Path, target: Target, lose_journal: bool) -> None:
    import json

    root = tmp_path / "root"
    files = _tree(root)
    spec = target.spec()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(root), str(spec_file), target.dest.scheme,
                           target.dest.host, target.catalog_id], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert target.rows(DOMAIN, "Image") == []  # objects stored, no rows
    if lose_journal:
        journal_path(root, target.dest.key(), spec).unlink()
    objects = {p: f"/hatrac/Image/{md5(d)}.{quote(Path(p).name)}" for p, d in files.items() if "/Image/" in p}
    versions = {o: target.versions(o) for o in objects.values()}
    report = run_upload(root, spec, target.dest, OPTS)
    assert report.failed == {}, report.to_json()
    rows = target.rows(DOMAIN, "Image")
    assert sorted(r["Filename"] for r in rows) == ["scan 01.png", "two.png"]  # exactly one row each
    if not lose_journal:
        for o in objects.values():  # the journal said "putting": HEAD found the objects, no new version
            assert target.versions(o) == versions[o]
    assert len(run_upload(root, spec, target.dest, OPTS).files) == 4
    assert len(target.rows(DOMAIN, "Image")) == 2


def test_second_catalog_gets_everything(tmp_path: Path, server) -> None:
    a, b = make_target(server), make_target(server)
    _tree(tmp_path)
    assert run_upload(tmp_path, a.spec(), a.dest, OPTS).failed == {}
    report = run_upload(tmp_path, b.spec(), b.dest, OPTS)
    assert report.failed == {}
    assert len(b.rows(DOMAIN, "Image")) == 2 and len(b.rows(ML, "Execution_Metadata")) == 2


def test_corrupt_journal_is_rebuilt_from_the_catalog(tmp_path: Path, target: Target) -> None:
    _tree(tmp_path)
    spec = target.spec()
    assert run_upload(tmp_path, spec, target.dest, OPTS).failed == {}
    jp = journal_path(tmp_path, target.dest.key(), spec)
    for suffix in ("-wal", "-shm"):
        Path(str(jp) + suffix).unlink(missing_ok=True)
    jp.write_bytes(b"garbage" * 1000)
    report = run_upload(tmp_path, spec, target.dest, OPTS)
    assert report.failed == {}
    assert any("moved to" in w for w in report.warnings)
    assert all(r.action == "present" for r in report.files.values())
    assert len(target.rows(DOMAIN, "Image")) == 2


def test_changed_file_is_rehashed(tmp_path: Path, target: Target) -> None:
    rel = asset_rel("Execution_Metadata", "log.txt", schema=ML)
    f = write(tmp_path, rel, b"v1")
    spec = target.spec()
    assert run_upload(tmp_path, spec, target.dest, OPTS).failed == {}
    f.write_bytes(b"version two")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10_000_000))
    report = run_upload(tmp_path, spec, target.dest, OPTS)
    assert report.files[rel].md5 == md5(b"version two")
    assert sorted(r["MD5"] for r in target.rows(ML, "Execution_Metadata")) == sorted([md5(b"v1"), md5(b"version two")])


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path, target: Target) -> None:
    # Subject is an FK to Subject.RID: an unknown value makes that row's insert fail (409)
    write(tmp_path, asset_rel("Image", "__NULL__", "__NULL__", "NO-SUCH", "bad.png"), b"bad")
    write(tmp_path, asset_rel("Image", "__NULL__", "__NULL__", "__NULL__", "good.png"), b"good")
    report = run_upload(tmp_path, target.spec(), target.dest, OPTS)
    assert set(report.failed) == {asset_rel("Image", "__NULL__", "__NULL__", "NO-SUCH", "bad.png")}
    assert report.failed[asset_rel("Image", "__NULL__", "__NULL__", "NO-SUCH", "bad.png")].error
    assert [r["Filename"] for r in target.rows(DOMAIN, "Image")] == ["good.png"]


def test_plan_writes_nothing_and_verify_checks_objects(tmp_path: Path, target: Target) -> None:
    _tree(tmp_path)
    spec = target.spec()
    plan = plan_upload(tmp_path, spec, target.dest, OPTS)
    assert not (tmp_path / ".deriva-upload").exists()
    assert target.rows(DOMAIN, "Image") == []
    assert plan.tables[f"{DOMAIN}:Image"].to_upload == 2 and plan.total_files == 4
    assert run_upload(tmp_path, spec, target.dest, OPTS).failed == {}
    plan2 = plan_upload(tmp_path, spec, target.dest, OPTS)
    assert plan2.tables[f"{DOMAIN}:Image"].present == 2 and plan2.tables[f"{DOMAIN}:Image"].to_upload == 0
    st = status(tmp_path, target.dest, spec)
    assert st.exists and st.counts == {"done": 4}
    v = verify(tmp_path, spec, target.dest, OPTS)
    assert v.passed and len(v.ok) == 4
    # a local file changed after upload: verify reports it
    f = tmp_path / asset_rel("Image", "__NULL__", "__NULL__", "__NULL__", "two.png")
    f.write_bytes(b"tampered")
    v2 = verify(tmp_path, spec, target.dest, OPTS)
    assert not v2.passed and list(v2.problems) == [asset_rel("Image", "__NULL__", "__NULL__", "__NULL__", "two.png")]


_CHUNK_CRASH = textwrap.dedent("""
    import json, os, sys
    from deriva_upload.engine import hatrac, pipeline
    from deriva_upload.engine.destination import Destination
    from deriva_upload.engine.options import UploadOptions

    real = hatrac.HatracClient.put_chunk
    sent = []

    async def put_chunk(self, job, index, data, length):
        if len(sent) == 2:
            os._exit(9)  # killed with two chunks stored
        await real(self, job, index, data, length)
        sent.append(index)

    hatrac.HatracClient.put_chunk = put_chunk
    root, spec_file, scheme, host, cid = sys.argv[1:]
    spec = json.loads(open(spec_file).read())
    pipeline.run_upload(root, spec, Destination(scheme, host, cid), UploadOptions(chunks_in_flight=1))
""")


def test_interrupted_chunked_upload_resumes_missing_chunks(tmp_path: Path, target: Target,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from deriva_upload.engine import hatrac

    root = tmp_path / "root"
    data = os.urandom(5 * 1024 + 100)
    rel = asset_rel("Execution_Asset", "resume.bin", schema=ML)
    write(root, rel, data)
    spec = target.spec(chunk_size=1024)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-c", _CHUNK_CRASH, str(root), str(spec_file), target.dest.scheme,
                           target.dest.host, target.catalog_id], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    sent: list[int] = []
    real = hatrac.HatracClient.put_chunk

    async def counting(self, job, index, body, length):
        sent.append(index)
        await real(self, job, index, body, length)

    monkeypatch.setattr(hatrac.HatracClient, "put_chunk", counting)
    report = run_upload(root, spec, target.dest, OPTS)
    assert report.failed == {}, report.to_json()
    assert report.files[rel].action == "resumed"
    assert sorted(sent) == [2, 3, 4, 5]  # chunks 0 and 1 were kept by the server
    [row] = target.rows(ML, "Execution_Asset")
    assert row["MD5"] == md5(data)
    assert target.head(row["URL"]).headers["Content-SHA256"] == b64(hashlib.sha256(data).digest())


def test_shards_split_the_work_between_runs(tmp_path: Path, target: Target) -> None:
    for i in range(12):
        write(tmp_path, asset_rel("Execution_Metadata", f"s{i}.txt", schema=ML), f"shard {i}".encode())
    spec = target.spec()
    seen: set[str] = set()
    for i in range(3):
        report = run_upload(tmp_path, spec, target.dest, OPTS.with_(shard=(i, 3)))
        assert report.failed == {}
        assert not seen & set(report.files)  # each file goes to exactly one shard
        seen |= set(report.files)
    assert len(seen) == 12 and len(target.rows(ML, "Execution_Metadata")) == 12


def test_head_always_reuses_an_existing_object_version(tmp_path: Path, server) -> None:
    a, b = make_target(server), make_target(server)
    write(tmp_path, asset_rel("Execution_Metadata", "shared.txt", schema=ML), os.urandom(64))
    assert run_upload(tmp_path, a.spec(), a.dest, OPTS).failed == {}
    # a second catalog on the same host: GenericUploader's HEAD-then-PUT finds the object and reuses it
    report = run_upload(tmp_path, b.spec(), b.dest, OPTS.with_(head_before_put="always"))
    [res] = report.files.values()
    assert res.action == "inserted"
    assert b.rows(ML, "Execution_Metadata")[0]["URL"] == a.rows(ML, "Execution_Metadata")[0]["URL"]


def test_json_table_file_and_rerun(tmp_path: Path, target: Target) -> None:
    import json

    rel = f"deriva-ml/execution/1-EXE/table/{DOMAIN}/Subject/Subject.json"
    write(tmp_path, rel, json.dumps([{"Name": "j1"}, {"Name": "j2"}]).encode())
    spec = target.spec()
    report = run_upload(tmp_path, spec, target.dest, OPTS)
    assert report.failed == {} and report.tables[f"{DOMAIN}:Subject"].inserted == 2
    again = run_upload(tmp_path, spec, target.dest, OPTS)  # the journal knows it was inserted
    assert again.files[rel].action == "present"
    assert sorted(r["Name"] for r in target.rows(DOMAIN, "Subject")) == ["j1", "j2"]


def test_events_reach_the_callback(tmp_path: Path, target: Target) -> None:
    _tree(tmp_path)
    events = []
    report = run_upload(tmp_path, target.spec(), target.dest, OPTS, on_event=events.append)
    assert report.failed == {}
    phases = {e.phase for e in events}
    assert {"hash", "upload", "done"} <= phases
    last_upload = [e for e in events if e.phase == "upload"][-1]
    assert last_upload.files_done == last_upload.files_total == 4
    assert events[-1].phase == "done" and "4 file(s) ok" in events[-1].message


def test_noop_rerun_trusts_the_journal_after_one_sample_per_table(tmp_path: Path, target: Target) -> None:
    many = {asset_rel("Image", "__NULL__", "__NULL__", "__NULL__", f"f{i:03}.png"): f"img {i}".encode()
            for i in range(250)}
    for rel, data in many.items():
        write(tmp_path, rel, data)
    spec = target.spec()
    assert run_upload(tmp_path, spec, target.dest, OPTS).failed == {}
    # 250 files would need 3 look-ups of 100; the trusted journal needs one sample per table
    again = run_upload(tmp_path, spec, target.dest, OPTS)
    assert again.failed == {} and all(r.action == "present" for r in again.files.values())
    assert again.stats.requests == 1
    assert {r.rid for r in again.files.values()} == {r["RID"] for r in target.rows(DOMAIN, "Image")}


def test_rows_deleted_behind_the_journal_are_found_and_reinserted(tmp_path: Path, target: Target) -> None:
    files = _tree(tmp_path)
    spec = target.spec()
    assert run_upload(tmp_path, spec, target.dest, OPTS).failed == {}
    with target.client() as c:  # someone empties the table: the journal's "done" is now false
        c.delete(f"/ermrest/catalog/{target.catalog_id}/entity/{DOMAIN}:Image").raise_for_status()
    again = run_upload(tmp_path, spec, target.dest, OPTS)
    assert again.failed == {}
    images = target.rows(DOMAIN, "Image")
    assert sorted(r["Filename"] for r in images) == ["scan 01.png", "two.png"]
    assert again.tables[f"{DOMAIN}:Image"].inserted == 2
    assert len(again.files) == len(files)
