"""Issue #8 item 4: the journal is keyed by destination, and a broken journal never hurts.

* the same folder uploaded to a second catalog uploads everything there;
* a corrupt or truncated journal is moved aside with a warning and rebuilt from the
  catalog (by checksums): no crash, no duplicate row, no object sent twice;
* a journal that cannot be written (disk full) costs resume information, nothing else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from deriva_upload.engine.journal import JOURNAL_DIR
from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import run_upload
from tests.reliability.helpers import CatalogView, check_catalog, count_log, destination, model_and_spec
from tests.reliability.driving import crash_at, drive, driver_report, object_puts
from tests.support.trees import build_asset_tree

N = 60


def _journals(root: Path) -> list[Path]:
    d = root / JOURNAL_DIR
    return sorted(p for p in d.glob("journal-*.sqlite")) if d.is_dir() else []


def test_same_folder_to_a_second_catalog_uploads_everything_there(tmp_path: Path, rcat: Any, salt: str) -> None:
    first, second = rcat.create_catalog(), rcat.create_catalog()
    model, spec1 = model_and_spec(rcat.hostname, first)
    _, spec2 = model_and_spec(rcat.hostname, second)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-JRN", N, size=100, salt=salt)
    r1 = run_upload(root, spec1, destination(rcat.hostname, first), UploadOptions())
    r2 = run_upload(root, spec2, destination(rcat.hostname, second), UploadOptions())
    assert r1.ok and r2.ok
    assert {r.action for r in r2.files.values()} <= {"uploaded", "inserted"}, "nothing may be skipped"
    for cid in (first, second):
        with CatalogView(rcat.base_url, cid) as view:
            check = check_catalog(view, files)
        assert check.missing == [] and check.rows == N and check.duplicates == 0, cid
    assert len(_journals(root)) == 2, "one journal per destination"


def test_a_different_spec_gets_its_own_journal(tmp_path: Path, rcat: Any, rcid: str, salt: str) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    _, spec_chunked = model_and_spec(rcat.hostname, rcid, chunk_size=1024 * 1024)
    root = tmp_path / "up"
    build_asset_tree(root, model, "1-JRN", 5, size=100, salt=salt)
    assert run_upload(root, spec, destination(rcat.hostname, rcid), UploadOptions()).ok
    assert run_upload(root, spec_chunked, destination(rcat.hostname, rcid), UploadOptions()).ok
    assert len(_journals(root)) == 2


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\x00" * 200)


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(max(1, os.path.getsize(path) // 2))


def _zero_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"\x00" * 100)


@pytest.mark.parametrize("damage", [_garbage, _truncate, _zero_header], ids=["garbage", "truncated", "bad-header"])
def test_corrupt_journal_is_moved_aside_and_rebuilt_from_the_catalog(tmp_path: Path, rcat: Any, rcid: str, salt: str,
                                                                     request_log: Any, damage: Any) -> None:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-JRN", N, size=100, salt=salt)
    assert run_upload(root, spec, destination(rcat.hostname, rcid), UploadOptions()).ok
    [journal] = _journals(root)
    for suffix in ("-wal", "-shm"):
        Path(str(journal) + suffix).unlink(missing_ok=True)
    damage(journal)
    m = request_log.mark()
    report = run_upload(root, spec, destination(rcat.hostname, rcid), UploadOptions())
    time.sleep(0.2)
    log = request_log.since(m)
    assert report.ok
    warnings = [w for w in report.warnings if "journal" in w]
    assert warnings and "moved to" in warnings[0] and "rebuilt" in warnings[0], report.warnings
    aside = [p for p in (root / JOURNAL_DIR).glob("journal-*.sqlite.corrupt-*")
             if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1, "the damaged journal is kept aside for inspection"
    assert count_log(log, "PUT") == 0 and count_log(log, "POST") == 0, "rebuilt by checksum: nothing re-sent"
    with CatalogView(rcat.base_url, rcid) as view:
        check = check_catalog(view, files)
    assert check.missing == [] and check.rows == N and check.duplicates == 0
    assert run_upload(root, spec, destination(rcat.hostname, rcid), UploadOptions()).warnings == [], \
        "the rebuilt journal is healthy"


def test_corrupt_journal_after_a_crash_between_objects_and_rows(tmp_path: Path, rcat: Any, rcid: str, salt: str,
                                                                request_log: Any) -> None:
    """The worst moment: objects stored, rows missing, and the journal that knew it is gone."""
    model, _ = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-JRN", N, size=100, salt=salt)
    m0 = request_log.mark()
    crash_at(root, rcat, rcid, crash="before_insert")
    time.sleep(0.3)
    m1 = request_log.mark()
    [journal] = _journals(root)
    for suffix in ("-wal", "-shm"):
        Path(str(journal) + suffix).unlink(missing_ok=True)
    _garbage(journal)
    rerun = driver_report(drive(root, rcat.hostname, rcid))
    assert any("journal" in w for w in rerun["warnings"])
    run1, run2 = request_log.since(m0)[: m1 - m0], request_log.since(m1)
    assert len(object_puts(run1)) == N and sum(object_puts(run2).values()) == 0, \
        "objects already stored are found by checksum (HEAD), not sent again"
    with CatalogView(rcat.base_url, rcid) as view:
        check = check_catalog(view, files, check_versions=True)
    assert check.missing == [] and check.duplicates == 0 and check.extra_versions == 0


def test_full_disk_for_the_journal_costs_resume_information_only(tmp_path: Path, rcat: Any, rcid: str,
                                                                 salt: str) -> None:
    model, _ = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-JRN", 400, size=100, salt=salt)
    # every file the uploader writes is capped at 24 KiB: the journal's first big write fails
    proc = drive(root, rcat.hostname, rcid, extra=("--fsize-limit", str(24 * 1024)))
    report = driver_report(proc)
    assert any("journal" in w for w in report["warnings"]), report["warnings"]
    with CatalogView(rcat.base_url, rcid) as view:
        check = check_catalog(view, files)
    assert check.missing == [] and check.rows == 400 and check.duplicates == 0
    again = driver_report(drive(root, rcat.hostname, rcid))  # disk has room again: the next run works
    assert again["ok"] and set(again["actions"]) == {"present"}
