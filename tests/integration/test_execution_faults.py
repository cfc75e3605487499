"""upload_execution through a fault-injecting proxy: reruns converge, nothing is duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest

from deriva_upload.engine.destination import Destination
from deriva_upload.errors import DerivaUploadError
from deriva_upload.execution import upload_execution
from tests.integration.test_execution_upload import DOM, ML, TABLES, Env, stage_regex_execution
from tests.support.faultproxy import FaultPlan, FaultProxy

# Upper bound on reruns a user would need under a 20 % fault rate with 6 retries per request.
MAX_RUNS = 6
EXPECTED_COUNTS = {f"{DOM}:Image": 3, f"{DOM}:Image_Asset_Type": 3, f"{DOM}:Image_Execution": 3,
                   f"{DOM}:Execution_Image_Quality": 2, f"{DOM}:Subject": 4, f"{ML}:Execution_Asset": 1,
                   f"{ML}:Execution_Asset_Asset_Type": 2, f"{ML}:Execution_Asset_Execution": 1}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_faulty_network_converges_without_duplicates(fresh_catalog, tmp_path: Path, seed: int) -> None:
    env = Env(fresh_catalog, tmp_path)
    stage_regex_execution(env)
    plan = FaultPlan.uniform(0.2, seed=seed, hold_seconds=2.0)
    with FaultProxy(fresh_catalog.server.port, plan) as proxy:
        dest = Destination("http", proxy.hostname, fresh_catalog.catalog_id,
                           cookie=fresh_catalog.credentials["cookie"])
        reports = []
        for _ in range(MAX_RUNS):
            try:
                report = upload_execution(env.model, env.prefix, env.exe, dest=dest, journal_dir=env.journal,
                                          max_retries=6, retry_delay=0.01, timeout=(2.0, 1.0))
            except DerivaUploadError as e:  # e.g. a validation look-up that outlived its retries
                reports.append(str(e))
                continue
            reports.append(report)
            if report.ok:
                break
        faults = sum(proxy.faults.values())
    assert reports and not isinstance(reports[-1], str) and reports[-1].ok, reports
    assert faults > 0  # the proxy really interfered
    assert {t: len(env.rows(t)) for t in TABLES} == EXPECTED_COUNTS
    assert {(r["ImageQuality"]) for r in env.rows(f"{DOM}:Execution_Image_Quality")} == {"Good", "Bad"}
    images = {r["RID"] for r in env.rows(f"{DOM}:Image")}
    assert {r["Image"] for r in env.rows(f"{DOM}:Image_Execution")} == images
    assert set(reports[-1].assets.values()) >= images


@pytest.mark.parametrize("seed", [31, 39])
def test_partial_runs_without_retries_then_clean_run_is_exact(fresh_catalog, tmp_path: Path, seed: int) -> None:
    """No retries at all: every run under faults stops part-way; a final clean run completes exactly."""
    env = Env(fresh_catalog, tmp_path)
    stage_regex_execution(env)
    with FaultProxy(fresh_catalog.server.port, FaultPlan.uniform(0.2, seed=seed, hold_seconds=2.0)) as proxy:
        dest = Destination("http", proxy.hostname, fresh_catalog.catalog_id,
                           cookie=fresh_catalog.credentials["cookie"])
        for _ in range(4):
            try:
                upload_execution(env.model, env.prefix, env.exe, dest=dest, journal_dir=env.journal,
                                 max_retries=0, retry_delay=0.01, timeout=(2.0, 1.0))
            except DerivaUploadError:
                pass
            counts = {t: len(env.rows(t)) for t in TABLES}
            assert all(counts[t] <= EXPECTED_COUNTS[t] for t in TABLES), counts  # never a duplicate
        assert sum(proxy.faults.values()) > 0
        port = proxy.port
    # the same destination (host:port) without faults: the RID ledger of key-less tables is per destination
    with FaultProxy(fresh_catalog.server.port, FaultPlan(), port=port):
        report = env.upload(dest=dest)
    assert report.ok, report.to_json()
    assert {t: len(env.rows(t)) for t in TABLES} == EXPECTED_COUNTS
    images = {r["RID"] for r in env.rows(f"{DOM}:Image")}
    assert {r["Image"] for r in env.rows(f"{DOM}:Image_Execution")} == images
    assert {(r["Image"] in images, r["ImageQuality"]) for r in env.rows(f"{DOM}:Execution_Image_Quality")} == {
        (True, "Good"), (True, "Bad")}
