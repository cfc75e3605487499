"""Issue #8 item 1: an upload through a proxy that faults 20 % of requests is exactly-once.

The engine talks to the embedded catalog through :class:`FaultProxy`; afterwards the
catalog is inspected directly (not through the proxy): exactly one row per file, every
object's server-side MD5/SHA-256 equal to the local file, no upload job left open, and
the report's request and retry counts agree with what the proxy saw and injected.

The issue's run (2,000 small files + 1 chunked file) takes about 45 s on 2 cores and is
marked ``slow`` (deselect with ``-m "not slow"``); a 300-file variant asserts the same
in about 10 s. The proxy's faults depend only on the seed and the requests, so both
runs inject the same faults every time; docs/reliability.md quotes their figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import run_upload
from tests.reliability.helpers import (
    CatalogView,
    Check,
    check_catalog,
    destination,
    model_and_spec,
    open_job_count,
)
from tests.support.faultproxy import FaultPlan, FaultProxy
from tests.support.trees import build_asset_tree, write_large

FAULT_RATE = 0.20
CHUNK = 256 * 1024
# Client read timeout vs how long the proxy holds a "timeout" fault: the hold must be
# longer, and the timeout long enough for a 500-row insert on a busy 2-core machine.
CLIENT_TIMEOUT = 3.0
HOLD = 3.5
# Enough retries that a request failing 20 % of the time gets through (0.2**13 ~ 1e-9).
MAX_RETRIES = 12


@dataclass
class FaultRun:
    report: Any
    summary: dict[str, Any]
    check: Check
    jobs_left: int
    elapsed: float
    figures: dict[str, Any]


def _run(root: Path, rcat: Any, cid: str, salt: str, n_files: int, seed: int) -> FaultRun:
    model, spec = model_and_spec(rcat.hostname, cid, chunk_size=CHUNK)
    files = build_asset_tree(root, model, "1-FLT", n_files, size=200, salt=salt)
    files.append(write_large(root, model, "1-FLT", 9 * CHUNK + 1234, seed=seed, file_name=f"big-{salt}.bin"))
    jobs_before = open_job_count(rcat)
    plan = FaultPlan.uniform(FAULT_RATE, seed=seed, hold_seconds=HOLD, retry_after="1")
    options = UploadOptions(chunk_size=CHUNK, max_retries=MAX_RETRIES, retry_delay=0.01, timeout=CLIENT_TIMEOUT)
    t0 = time.perf_counter()
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, cid), options)
    elapsed = time.perf_counter() - t0
    summary = proxy.summary()
    with CatalogView(rcat.base_url, cid) as view:
        check = check_catalog(view, files, check_versions=True)
    jobs_left = open_job_count(rcat) - jobs_before
    figures = {
        "files": len(files), "fault_rate": FAULT_RATE, "seed": seed,
        "proxy_requests": summary["requests"], "faults_injected": summary["faults_total"],
        "faults_by_kind": summary["faults"], "engine_requests": report.stats.requests,
        "engine_retries": report.stats.retries, "failed_files": len(report.failed),
        "open_jobs_left": jobs_left, "elapsed_s": round(elapsed, 2), **check.as_dict(),
    }
    return FaultRun(report, summary, check, jobs_left, elapsed, figures)


def _assert_exactly_once(run: FaultRun) -> None:
    assert run.summary["stopped_reason"] is None
    assert run.summary["faults_total"] >= 0.1 * run.summary["requests"], "the proxy did not inject enough faults"
    assert {k: r.error for k, r in run.report.failed.items()} == {}
    assert run.check.missing == [] and run.check.rows == run.check.files, "every file must have its row"
    assert run.check.duplicates == 0
    assert run.check.digest_mismatches == []
    assert run.jobs_left == 0, "no upload job may stay open"
    # Every injected fault reached the client as a failure and all files made it, so each
    # was answered by a retry, except lost answers the engine recovered by a look-up.
    after_commit = run.summary["faults"].get("delay_after_commit", 0) + run.summary["faults"].get("truncate", 0)
    assert run.summary["faults_total"] - after_commit <= run.report.stats.retries <= run.summary["faults_total"]


@pytest.fixture(scope="module")
def run_300(rcat: Any, tmp_path_factory: pytest.TempPathFactory) -> FaultRun:
    return _run(tmp_path_factory.mktemp("faults300") / "up", rcat, rcat.create_catalog(), "faults-300", 300,
                seed=20261126)


def test_exactly_once_under_20_percent_faults(run_300: FaultRun, record_figures: Any) -> None:
    record_figures("faults_300", run_300.figures)
    _assert_exactly_once(run_300)


def _assert_accounted(run: FaultRun) -> None:
    assert run.report.stats.requests == run.summary["requests"], (
        f"report says {run.report.stats.requests} requests, the proxy saw {run.summary['requests']}; "
        f"retries {run.report.stats.retries} for {run.summary['faults_total']} injected faults")


def test_the_report_counts_every_request_the_server_side_saw(run_300: FaultRun) -> None:
    """Requests and retries in the report are the ones on the wire (the proxy's count)."""
    _assert_accounted(run_300)


@pytest.fixture(scope="module")
def run_2000(rcat: Any, tmp_path_factory: pytest.TempPathFactory) -> FaultRun:
    return _run(tmp_path_factory.mktemp("faults2000") / "up", rcat, rcat.create_catalog(), "faults-2000", 2000,
                seed=8)


@pytest.mark.slow
def test_exactly_once_under_20_percent_faults_2000_files(run_2000: FaultRun, record_figures: Any) -> None:
    record_figures("faults_2000", run_2000.figures)
    _assert_exactly_once(run_2000)


@pytest.mark.slow
def test_the_report_counts_every_request_2000_files(run_2000: FaultRun) -> None:
    _assert_accounted(run_2000)
