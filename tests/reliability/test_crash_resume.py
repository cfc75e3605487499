"""Issue #8 item 2: kill -9 the uploading process at several points, rerun, check exactly-once.

The upload runs in a real subprocess (``tests/reliability/crash_driver.py``) that dies by
SIGKILL at a chosen point (self-sent at a wrapped engine function, or sent from here on
observed progress in the server's request log). The rerun is a second subprocess.
Everything asserted comes from the catalog: rows, object versions, open jobs, and the
server's request log (what was sent twice).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.driving import (
    DRIVER_TIMEOUT,
    JOB_CREATE,
    REPO,
    chunk_indices,
    driver_cmd,
    crash_at,
    driver_env,
    object_puts,
    driver_report,
    drive,
)
from tests.reliability.helpers import CatalogView, LogLine, check_catalog, model_and_spec, open_job_count
from tests.support.trees import LocalFile, build_asset_tree, write_large

def _assert_exactly_once(rcat: Any, cid: str, files: list[LocalFile], run1: list[LogLine],
                         run2: list[LogLine], jobs_before: int) -> dict[str, Any]:
    with CatalogView(rcat.base_url, cid) as view:
        check = check_catalog(view, files, check_versions=True)
    puts = object_puts(run1) + object_puts(run2)
    twice = {name: n for name, n in puts.items() if n > 1}
    assert check.missing == [], f"{len(check.missing)} file(s) without a row after the rerun"
    assert check.rows == len(files) and check.duplicates == 0
    assert check.digest_mismatches == []
    assert twice == {}, f"objects stored twice across the crash: {twice}"
    assert check.extra_versions == 0
    assert open_job_count(rcat) - jobs_before == 0, "an upload job was left open"
    return check.as_dict()


@pytest.mark.parametrize("crash,n_files,options", [
    ("hash:6", 300, {"window_files": 100}),                 # while hashing the third window
    ("before_insert", 120, {}),                             # objects stored, rows not inserted
    ("insert:2", 120, {"insert_batch": 30, "window_files": 30}),  # 2nd of 4 batches committed
], ids=["while-hashing", "objects-stored-rows-not-inserted", "mid-batch-insert"])
def test_kill_then_rerun_is_exactly_once(tmp_path: Path, rcat: Any, rcid: str, salt: str, request_log: Any,
                                         record_figures: Any, crash: str, n_files: int,
                                         options: dict[str, Any]) -> None:
    model, _ = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-CRS", n_files, size=300, salt=salt)
    jobs_before = open_job_count(rcat)
    m0 = request_log.mark()
    crash_at(root, rcat, rcid, crash=crash, options=options)
    time.sleep(0.3)  # let the server finish logging the requests the dead client left behind
    m1 = request_log.mark()
    with CatalogView(rcat.base_url, rcid) as view:
        rows_after_crash = len(view.rows())
    rerun = driver_report(drive(root, rcat.hostname, rcid, options=options))
    run1, run2 = request_log.since(m0)[: m1 - m0], request_log.since(m1)
    facts = _assert_exactly_once(rcat, rcid, files, run1, run2, jobs_before)
    stored_before = set(object_puts(run1))
    assert not (set(object_puts(run2)) & stored_before), "the rerun sent objects the server already had"
    record_figures(f"crash_{crash.replace(':', '_')}", {
        "files": n_files, "rows_after_crash": rows_after_crash, "objects_stored_before_crash": len(stored_before),
        "rerun_object_puts": sum(object_puts(run2).values()), "rerun_requests": len(run2),
        "rerun_actions": rerun["actions"], **facts})
    if crash == "before_insert":  # the first rows were about to be inserted: objects exist, no row
        assert rows_after_crash == 0 and len(stored_before) > 0
        assert sum(object_puts(run2).values()) == n_files - len(stored_before)
    if crash.startswith("insert"):
        assert 0 < rows_after_crash < n_files
        # only the objects of windows the dead run never reached are sent
        assert sum(object_puts(run2).values()) == n_files - len(stored_before)


@pytest.mark.parametrize("chunks_in_flight", [1, 4])
def test_kill_mid_chunk_resumes_the_job_and_resends_at_most_the_chunks_in_flight(
        tmp_path: Path, rcat: Any, rcid: str, salt: str, request_log: Any, record_figures: Any,
        chunks_in_flight: int) -> None:
    chunk = 2 * 1024 * 1024  # two 1 MiB pieces per chunk: the kill lands inside a chunk
    n_chunks = 6
    model, _ = model_and_spec(rcat.hostname, rcid, chunk_size=chunk)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-CHK", 10, size=300, salt=salt)
    files.append(write_large(root, model, "1-CHK", (n_chunks - 1) * chunk + 4321, seed=5,
                             file_name=f"big-{chunks_in_flight}.bin"))
    options = {"chunks_in_flight": chunks_in_flight}
    jobs_before = open_job_count(rcat)
    m0 = request_log.mark()
    crash_at(root, rcat, rcid, crash="chunk:3", chunk=chunk, options=options)
    time.sleep(0.3)
    m1 = request_log.mark()
    driver_report(drive(root, rcat.hostname, rcid, chunk=chunk, options=options))
    run1, run2 = request_log.since(m0)[: m1 - m0], request_log.since(m1)
    facts = _assert_exactly_once(rcat, rcid, files, run1, run2, jobs_before)
    acked = set(chunk_indices(run1, ok_only=True))
    sent_again = [i for i in chunk_indices(run2, ok_only=False) if i in acked]
    new_jobs = sum(1 for ln in run2 if ln.method == "POST" and JOB_CREATE.search(ln.path))
    record_figures(f"crash_mid_chunk_{chunks_in_flight}_in_flight", {
        "chunks": n_chunks, "acked_before_kill": sorted(acked), "rerun_chunk_puts": sorted(chunk_indices(run2, False)),
        "acked_chunks_sent_again": len(sent_again), "rerun_new_jobs": new_jobs, **facts})
    assert 3 not in acked, "chunk 3 was being sent when the process died"
    assert new_jobs == 0, "the rerun must resume the open job, not start a new one"
    assert len(sent_again) <= chunks_in_flight - 1 if chunks_in_flight > 1 else len(sent_again) == 0, (
        f"chunks the server had acknowledged before the kill were sent again: {sorted(sent_again)} "
        f"(acknowledged: {sorted(acked)})")


def test_external_kill_9_on_observed_progress(tmp_path: Path, rcat: Any, rcid: str, salt: str, request_log: Any,
                                              record_figures: Any) -> None:
    """The plain case: an outside ``kill -9`` once the server has stored 60 objects."""
    model, _ = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-EXT", 400, size=300, salt=salt)
    jobs_before = open_job_count(rcat)
    m0 = request_log.mark()
    proc = subprocess.Popen(driver_cmd(root, rcat.hostname, rcid, options={"window_files": 100, "workers": 4}),
                            cwd=REPO, env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + DRIVER_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(object_puts(request_log.since(m0)).values()) >= 60:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL, "the upload finished before it could be killed"
    time.sleep(0.3)
    m1 = request_log.mark()
    driver_report(drive(root, rcat.hostname, rcid, options={"window_files": 100, "workers": 4}))
    run1, run2 = request_log.since(m0)[: m1 - m0], request_log.since(m1)
    facts = _assert_exactly_once(rcat, rcid, files, run1, run2, jobs_before)
    record_figures("crash_external_kill", {"files": len(files), "objects_before_kill": len(object_puts(run1)),
                                           "rerun_object_puts": sum(object_puts(run2).values()), **facts})


def test_kill_9_of_the_real_cli_then_rerun(tmp_path: Path, rcat: Any, rcid: str, salt: str, request_log: Any,
                                           record_figures: Any) -> None:
    """``deriva-upload upload`` itself (execution tree: assets + links), killed and run again."""
    import httpx

    model, _ = model_and_spec(rcat.hostname, rcid)
    r = httpx.post(f"{rcat.base_url}/ermrest/catalog/{rcid}/entity/deriva-ml:Execution",
                   json=[{"Description": "crash test"}], timeout=30)
    r.raise_for_status()
    exec_rid = r.json()[0]["RID"]
    root = tmp_path / "up"
    files = build_asset_tree(root, model, exec_rid, 400, size=300, salt=salt)
    cmd = [sys.executable, "-m", "deriva_upload.cli", "upload", str(root), "--host", rcat.hostname,
           "--catalog", rcid, "--workers", "4", "--quiet"]
    jobs_before = open_job_count(rcat)
    m0 = request_log.mark()
    proc = subprocess.Popen(cmd, cwd=REPO, env=driver_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + DRIVER_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(object_puts(request_log.since(m0)).values()) >= 80:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the upload finished before it could be killed"
    time.sleep(0.3)
    m1 = request_log.mark()
    rerun = subprocess.run(cmd, cwd=REPO, env=driver_env(), capture_output=True, text=True, timeout=DRIVER_TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    run1, run2 = request_log.since(m0)[: m1 - m0], request_log.since(m1)
    facts = _assert_exactly_once(rcat, rcid, files, run1, run2, jobs_before)
    links = httpx.get(f"{rcat.base_url}/ermrest/catalog/{rcid}/entity/demo-schema:Image_Execution", timeout=30).json()
    assert len(links) == len(files) and len({(x["Image"], x["Execution"]) for x in links}) == len(files), \
        "one execution link per asset, none twice"
    record_figures("crash_cli_kill", {"files": len(files), "objects_before_kill": len(object_puts(run1)),
                                      "rerun_object_puts": sum(object_puts(run2).values()), **facts})
