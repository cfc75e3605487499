"""Bad-input corpus, part 2: cases that need a catalog (engine, execution upload).

In every case: a clear error naming the file or field (exact text asserted), nothing
partial in the catalog (rows, objects, open jobs checked on the server), and the next
run works. Cases decided before anything is sent are in ``test_corpus_offline.py``;
CLI exit codes are in ``test_corpus_cli.py``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from deriva_upload.engine import pipeline
from deriva_upload.engine.items import Item
from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import run_upload
from deriva_upload.errors import ConfigError
from deriva_upload.execution import ExecutionValidationError, upload_execution
from tests.reliability.helpers import (
    AWKWARD_NAMES,
    CatalogView,
    check_catalog,
    count_log,
    destination,
    model_and_spec,
    open_job_count,
)
from tests.support.faultproxy import FaultPlan, FaultProxy, Rule
from tests.support.trees import local_file, random_bytes, write_asset, write_large

EMPTY_MD5 = hashlib.md5(b"").hexdigest()
CHUNK = 64 * 1024
IMAGE_COLUMNS = "URL,Filename,Length,MD5,Description,Acquisition_Date,Acquisition_Time,Subject\n"


def _opts(**kw: Any) -> UploadOptions:
    return UploadOptions(**{"max_retries": 1, "retry_delay": 0.01, **kw})


def _table_file(root: Path, table: str, text: str, exec_rid: str = "1-TBL") -> Path:
    p = root / "deriva-ml" / "execution" / exec_rid / "table" / "demo-schema" / table / f"{table}.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# -- awkward file names, end to end ---------------------------------------------------------


@pytest.mark.parametrize("case", sorted(AWKWARD_NAMES))
def test_awkward_file_name_round_trips_through_the_catalog(tmp_path: Path, rcat: Any, rcid: str, salt: str,
                                                           case: str) -> None:
    name = AWKWARD_NAMES[case]
    model, spec = model_and_spec(rcat.hostname, rcid)
    data = f"content of {name} {salt}".encode()
    f = write_asset(tmp_path / "up", model, "1-NAM", name, data)
    report = run_upload(tmp_path / "up", spec, destination(rcat.hostname, rcid), _opts())
    assert report.ok, {k: r.error for k, r in report.failed.items()}
    with CatalogView(rcat.base_url, rcid) as view:
        [row] = view.rows()
        assert row["Filename"] == name and row["MD5"] == f.md5 and row["Length"] == len(data)
        assert view.get_bytes(row["URL"]) == data
        disp = view.head(row["URL"]).headers["Content-Disposition"]
        assert unquote(disp.split("''", 1)[1]) == name
    again = run_upload(tmp_path / "up", spec, destination(rcat.hostname, rcid), _opts())
    assert {r.action for r in again.files.values()} == {"present"}


# -- file contents ----------------------------------------------------------------------------


def test_empty_file_gets_a_zero_length_object_and_row(tmp_path: Path, rcat: Any, rcid: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    write_asset(tmp_path / "up", model, "1-EMP", "empty.txt", b"")
    report = run_upload(tmp_path / "up", spec, destination(rcat.hostname, rcid), _opts())
    assert report.ok, {k: r.error for k, r in report.failed.items()}
    with CatalogView(rcat.base_url, rcid) as view:
        [row] = view.rows()
        assert (row["Filename"], row["Length"], row["MD5"]) == ("empty.txt", 0, EMPTY_MD5)
        assert view.get_bytes(row["URL"]) == b""


def test_file_that_vanished_before_hashing_fails_naming_the_file(tmp_path: Path, rcat: Any, rcid: str,
                                                                 salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    good = write_asset(root, model, "1-VAN", "good.txt", salt.encode())
    gone = write_asset(root, model, "1-VAN", "gone.txt", b"soon gone " + salt.encode())
    items = [Item.for_file(f.path, root, "demo-schema", "Image") for f in (good, gone)]
    gone.path.unlink()
    report = run_upload(root, spec, destination(rcat.hostname, rcid), _opts(), items=items)
    failed = {Path(p).name: r.error for p, r in report.failed.items()}
    assert list(failed) == ["gone.txt"]
    assert "gone.txt" in failed["gone.txt"] and "No such file" in failed["gone.txt"], failed
    with CatalogView(rcat.base_url, rcid) as view:
        assert [r["Filename"] for r in view.rows()] == ["good.txt"]
    gone.path.write_bytes(b"soon gone " + salt.encode())  # back again: the next run uploads it
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts()).ok
    with CatalogView(rcat.base_url, rcid) as view:
        assert sorted(r["Filename"] for r in view.rows()) == ["gone.txt", "good.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_fails_naming_the_file(tmp_path: Path, rcat: Any, rcid: str, salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    f = write_asset(root, model, "1-UNR", "secret.txt", salt.encode())
    f.path.chmod(0)
    try:
        report = run_upload(root, spec, destination(rcat.hostname, rcid), _opts())
    finally:
        f.path.chmod(0o644)
    [(path, result)] = report.failed.items()
    assert "secret.txt" in result.error and "Permission denied" in result.error
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts()).ok


def _after_hashing(monkeypatch: Any, name: str, change: Any) -> None:
    """Change file ``name`` right after the engine hashed it (a writer still busy with it)."""
    real = pipeline.hash_group

    def hash_then_change(paths: Any, *a: Any, **kw: Any) -> Any:
        out = real(paths, *a, **kw)
        for p in paths:
            if Path(p).name == name:
                change(Path(p))
        return out

    monkeypatch.setattr(pipeline, "hash_group", hash_then_change)


def _grow(p: Path) -> None:
    with open(p, "ab") as f:
        f.write(b"appended while uploading")


def _shrink(p: Path) -> None:
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) // 2)


@pytest.mark.parametrize("change", [_grow, _shrink], ids=["growing", "shrinking"])
def test_large_file_changing_during_upload_is_not_stored_with_wrong_checksums(
        tmp_path: Path, rcat: Any, rcid: str, salt: str, monkeypatch: Any, change: Any) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid, chunk_size=CHUNK)
    root = tmp_path / "up"
    big = write_large(root, model, "1-GRW", 5 * CHUNK + 10, seed=len(salt), file_name=f"live-{change.__name__}.bin")
    jobs_before = open_job_count(rcat)
    _after_hashing(monkeypatch, big.path.name, change)
    report = run_upload(root, spec, destination(rcat.hostname, rcid), _opts(chunk_size=CHUNK))
    [(rel, result)] = report.failed.items()
    assert rel.endswith(big.path.name)
    assert big.path.name in result.error and ("changed while" in result.error or "shrank while" in result.error), \
        result.error
    with CatalogView(rcat.base_url, rcid) as view:
        assert view.rows() == [], "no row for a file that changed under the upload"
        assert view.head(f"/hatrac/Image/{big.md5}.{big.path.name}").status_code in (404, 409)
    assert open_job_count(rcat) - jobs_before == 0, "the abandoned upload job must be cancelled"
    monkeypatch.undo()
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts(chunk_size=CHUNK)).ok
    now = local_file(big.path)
    with CatalogView(rcat.base_url, rcid) as view:
        check = check_catalog(view, [now])
    assert check.missing == [] and check.digest_mismatches == [] and check.rows == 1


def test_small_file_changing_after_hashing_is_stored_consistently(tmp_path: Path, rcat: Any, rcid: str, salt: str,
                                                                  monkeypatch: Any) -> None:
    """The bytes sent are the bytes hashed: the row's MD5 always matches the stored object."""
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    f = write_asset(root, model, "1-SML", "note.txt", b"version one " + salt.encode())
    _after_hashing(monkeypatch, "note.txt", lambda p: p.write_bytes(b"version two, longer " + salt.encode()))
    run_upload(root, spec, destination(rcat.hostname, rcid), _opts())
    monkeypatch.undo()
    with CatalogView(rcat.base_url, rcid) as view:
        for row in view.rows():
            body = view.get_bytes(row["URL"])
            assert hashlib.md5(body).hexdigest() == row["MD5"] and len(body) == row["Length"]
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts()).ok  # the new content goes up
    with CatalogView(rcat.base_url, rcid) as view:
        assert local_file(f.path).md5 in {r["MD5"] for r in view.rows()}


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_of_the_wrong_type_fails_that_file_naming_the_column(tmp_path: Path, rcat: Any, rcid: str,
                                                                      salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    bad = write_asset(root, model, "1-MET", "bad.png", b"bad " + salt.encode(), metadata={"Acquisition_Date": "yesterday"})
    write_asset(root, model, "1-MET", "good.png", b"good " + salt.encode(), metadata={"Acquisition_Date": "2024-05-01"})
    report = run_upload(root, spec, destination(rcat.hostname, rcid), _opts())
    failed = {Path(p).name: r.error for p, r in report.failed.items()}
    assert list(failed) == ["bad.png"]
    assert failed["bad.png"].endswith('-> 400: Request malformed. Detail: Bad input for column Acquisition_Date. '
                                      'Invalid date input: "yesterday".'), failed["bad.png"]
    with CatalogView(rcat.base_url, rcid) as view:
        rows = view.rows()
    assert [(r["Filename"], r["Acquisition_Date"]) for r in rows] == [("good.png", "2024-05-01")]
    # fixed by the user (moved to a valid date): the next run works
    fixed = write_asset(root, model, "1-MET", "bad.png", bad.path.read_bytes(), metadata={"Acquisition_Date": "2024-05-02"})
    bad.path.unlink()
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts()).ok
    with CatalogView(rcat.base_url, rcid) as view:
        assert check_catalog(view, [fixed]).missing == []


def test_null_sentinel_directory_means_null(tmp_path: Path, rcat: Any, rcid: str, salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    f = write_asset(tmp_path / "up", model, "1-NUL", "n.png", salt.encode(),
                    metadata={"Acquisition_Date": None, "Subject": None})
    assert "__NULL__" in f.path.parts
    assert run_upload(tmp_path / "up", spec, destination(rcat.hostname, rcid), _opts()).ok
    with CatalogView(rcat.base_url, rcid) as view:
        [row] = view.rows()
    assert (row["Acquisition_Date"], row["Acquisition_Time"], row["Subject"]) == (None, None, None)


def test_directory_that_does_not_match_the_spec_is_reported_not_uploaded(tmp_path: Path, rcat: Any, rcid: str,
                                                                         salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    write_asset(root, model, "1-UNM", "ok.png", salt.encode())
    stray = root / "deriva-ml/execution/1-UNM/asset/demo-schema/Image/2024-05-01/stray.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"stray")
    report = run_upload(root, spec, destination(rcat.hostname, rcid), _opts())
    assert report.ok and report.unmatched == [(
        "deriva-ml/execution/1-UNM/asset/demo-schema/Image/2024-05-01/stray.png",
        "demo-schema:Image expects 3 metadata directories (Acquisition_Date, Acquisition_Time, Subject) plus an "
        "optional RID directory before the file name; found 1")]
    with CatalogView(rcat.base_url, rcid) as view:
        assert [r["Filename"] for r in view.rows()] == ["ok.png"]


# -- table files --------------------------------------------------------------------------------

# (table, CSV text, what the one-line error must say). The server's wording after
# "Detail:" belongs to the catalog; we pin the status, the ERMrest description and the
# field it names.
TABLE_CASES = {
    "unknown-column": ("Subject", "Name,Colour\nx,red\n",
                       ("-> 409: Request conflicts with state of server.", "Colour")),
    "wrong-type": ("Image", IMAGE_COLUMNS + "/hatrac/x,a.png,big,0123,,,,\n",
                   ("-> 400: Request malformed.", "Length", "big")),
    "key-violation": ("Image", IMAGE_COLUMNS + "/hatrac/y,a.png,1,0123,,,,\n/hatrac/y,b.png,1,0124,,,,\n",
                      ("-> 400: Request malformed.", "unique key")),
    "foreign-key-violation": ("Image", IMAGE_COLUMNS + "/hatrac/z,a.png,1,0123,,,,NOPE\n",
                              ("-> 409: Request conflicts with state of server.", "oreign key", "Subject")),
    "not-null-violation": ("Image", IMAGE_COLUMNS + ",a.png,1,0123,,,,\n",
                           ("-> 409: Request conflicts with state of server.", "URL")),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_bad_table_csv_fails_with_the_servers_message_and_inserts_nothing(tmp_path: Path, rcat: Any, rcid: str,
                                                                         case: str) -> None:
    table, text, says = TABLE_CASES[case]
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    p = _table_file(root, table, text)
    report = run_upload(root, spec, destination(rcat.hostname, rcid), _opts())
    [(rel, result)] = report.failed.items()
    assert rel == p.relative_to(root).as_posix()
    assert result.error.startswith(f"POST /ermrest/catalog/{rcid}/entity/demo-schema:{table}?"), result.error
    assert all(s in result.error for s in says), (says, result.error)
    assert "\n" not in result.error, "one line"
    with CatalogView(rcat.base_url, rcid) as view:
        assert view.rows("demo-schema", table) == [], "an ERMrest batch is all-or-nothing"
    p.write_text("Name\nfixed\n" if table == "Subject" else IMAGE_COLUMNS + "/hatrac/ok,a.png,1,0123,,,,\n")
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts()).ok
    with CatalogView(rcat.base_url, rcid) as view:
        assert len(view.rows("demo-schema", table)) == 1


def test_table_csv_whose_insert_answer_was_lost_is_not_inserted_twice(tmp_path: Path, rcat: Any, rcid: str,
                                                                      salt: str) -> None:
    """Table rows have no natural key here (RID is a default column): a blind re-POST duplicates them."""
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    _table_file(root, "Subject", f"Name\n{salt}-a\n{salt}-b\n")
    plan = FaultPlan(rules=(Rule("delay_after_commit", method="POST", path="/entity/demo-schema:Subject", times=1),),
                     hold_seconds=1.5)
    with FaultProxy(rcat.port, plan) as proxy:
        first = run_upload(root, spec, destination(proxy.hostname, rcid), _opts(timeout=1.0, max_retries=3))
        assert first.ok and first.stats.retries >= 1, "the lost answer was retried"
        with CatalogView(rcat.base_url, rcid) as view:
            names = sorted(r["Name"] for r in view.rows("demo-schema", "Subject"))
        assert names == [f"{salt}-a", f"{salt}-b"], f"rows inserted more than once: {names}"
        for j in (root / ".deriva-upload").glob("journal-*"):  # even when the journal forgot the file ...
            j.unlink()
        second = run_upload(root, spec, destination(proxy.hostname, rcid), _opts())  # ... a rerun adds nothing
    assert second.ok
    with CatalogView(rcat.base_url, rcid) as view:
        names = sorted(r["Name"] for r in view.rows("demo-schema", "Subject"))
    assert names == [f"{salt}-a", f"{salt}-b"], f"rows inserted more than once: {names}"


# -- executions ---------------------------------------------------------------------------------


def _execution(rcat: Any, cid: str) -> str:
    r = httpx.post(f"{rcat.base_url}/ermrest/catalog/{cid}/entity/deriva-ml:Execution",
                   json=[{"Description": "reliability corpus"}], timeout=30)
    r.raise_for_status()
    return r.json()[0]["RID"]


def test_unknown_execution_rid_is_refused_before_anything_is_written(tmp_path: Path, rcat: Any, rcid: str,
                                                                     salt: str, request_log: Any) -> None:
    model, _ = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    write_asset(root, model, "1-ZZZZ", "c.png", salt.encode())
    m = request_log.mark()
    with pytest.raises(ExecutionValidationError) as exc:
        upload_execution(model, root, "1-ZZZZ", dest=destination(rcat.hostname, rcid))
    assert str(exc.value) == ("execution 1-ZZZZ: 1 problem(s), nothing uploaded: deriva-ml/execution/1-ZZZZ: "
                              "execution 1-ZZZZ does not exist in deriva-ml:Execution")
    log = request_log.since(m)
    assert count_log(log, "PUT") == 0 and count_log(log, "POST") == 0


def test_missing_execution_directory_is_refused(tmp_path: Path, rcat: Any, rcid: str) -> None:
    model, _ = model_and_spec(rcat.hostname, rcid)
    rid = _execution(rcat, rcid)
    with pytest.raises(ConfigError) as exc:
        upload_execution(model, tmp_path / "nothing-here", rid, dest=destination(rcat.hostname, rcid))
    assert rid in str(exc.value) and "nothing-here" in str(exc.value), str(exc.value)


def test_execution_table_csv_with_unknown_column_is_refused_naming_file_and_line(
        tmp_path: Path, rcat: Any, rcid: str, salt: str, request_log: Any) -> None:
    model, _ = model_and_spec(rcat.hostname, rcid)
    rid = _execution(rcat, rcid)
    root = tmp_path / "up"
    write_asset(root, model, rid, "d.png", salt.encode())
    _table_file(root, "Subject", "Name,Colour\nx,red\n", exec_rid=rid)
    m = request_log.mark()
    with pytest.raises(ExecutionValidationError) as exc:
        upload_execution(model, root, rid, dest=destination(rcat.hostname, rcid))
    assert str(exc.value) == (f"execution {rid}: 1 problem(s), nothing uploaded: deriva-ml/execution/{rid}/table/"
                              f"demo-schema/Subject/Subject.csv:2: demo-schema:Subject has no column(s) ['Colour']")
    log = request_log.since(m)
    assert count_log(log, "PUT") == 0 and count_log(log, "POST") == 0, "validation happens before any write"


# -- the network and the server -----------------------------------------------------------------


def test_html_error_page_from_a_proxy_is_summarised_not_dumped(tmp_path: Path, rcat: Any, rcid: str,
                                                                salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    write_asset(root, model, "1-HTM", "h.png", salt.encode())
    plan = FaultPlan(rules=(Rule("http_502", method="PUT"),))
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, rcid), _opts(max_retries=2))
    [(rel, result)] = report.failed.items()
    assert result.error.endswith("-> 502 after 3 attempt(s): 502 Bad Gateway"), result.error
    assert "<" not in result.error
    with CatalogView(rcat.base_url, rcid) as view:
        assert view.rows() == []
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts()).ok


def test_server_closing_the_connection_mid_body_fails_cleanly_then_works(tmp_path: Path, rcat: Any, rcid: str,
                                                                         salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    files = [write_asset(root, model, "1-CUT", f"c{i}.png", f"{salt}{i}".encode()) for i in range(3)]
    plan = FaultPlan(rules=(Rule("truncate", method="GET", path="/entity/"),))  # every look-up answer cut short
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, rcid), _opts(max_retries=2))
    assert len(report.failed) == 3
    assert all("after 3 attempt(s)" in r.error and "disconnect" in r.error for r in report.failed.values()), \
        [r.error for r in report.failed.values()]
    with CatalogView(rcat.base_url, rcid) as view:
        assert view.rows() == []
    assert run_upload(root, spec, destination(rcat.hostname, rcid), _opts()).ok
    with CatalogView(rcat.base_url, rcid) as view:
        check = check_catalog(view, files)
    assert check.missing == [] and check.duplicates == 0


def test_random_bytes_helper_is_deterministic() -> None:
    assert random_bytes(100, 1) == random_bytes(100, 1) != random_bytes(100, 2)
