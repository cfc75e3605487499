"""One targeted fault per kind of request: the answer is lost, the result is still exactly-once.

The hard cases are requests the server *committed* before the client lost the answer
(``delay_after_commit``, ``truncate``) on requests that are not idempotent by nature:
row inserts, Hatrac job creation and finalize. Each test injects one such fault with a
:class:`Rule` and then checks the catalog directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import run_upload
from tests.reliability.helpers import CatalogView, check_catalog, destination, model_and_spec, open_job_count
from tests.support.faultproxy import FaultPlan, FaultProxy, Rule
from tests.support.trees import build_asset_tree, write_large

CHUNK = 128 * 1024
TIMEOUT = 1.0
HOLD = 1.5

INSERT = ("POST", r"/ermrest/catalog/[^/]+/entity/")
JOB_CREATE = ("POST", r";upload\?")
FINALIZE = ("POST", r";upload/[^/?]+$")
CHUNK_PUT = ("PUT", r";upload/[^/]+/\d+$")
OBJECT_PUT = ("PUT", r"^/hatrac/[^;]+\?parents=true$")
LOOKUP = ("GET", r"/entity/.*MD5=")

CASES = {
    "insert-committed-response-delayed": (INSERT, "delay_after_commit"),
    "insert-committed-response-truncated": (INSERT, "truncate"),
    "insert-503": (INSERT, "http_503"),
    "job-create-committed-response-delayed": (JOB_CREATE, "delay_after_commit"),
    "job-create-committed-response-truncated": (JOB_CREATE, "truncate"),
    "job-create-reset": (JOB_CREATE, "reset"),
    "job-create-503": (JOB_CREATE, "http_503"),
    "finalize-committed-response-delayed": (FINALIZE, "delay_after_commit"),
    "finalize-reset": (FINALIZE, "reset"),
    "chunk-reset": (CHUNK_PUT, "reset"),
    "chunk-committed-response-truncated": (CHUNK_PUT, "truncate"),
    "object-put-committed-response-delayed": (OBJECT_PUT, "delay_after_commit"),
    "lookup-html-502": (LOOKUP, "http_502"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_lost_response_still_gives_exactly_once(tmp_path: Path, rcat: Any, rcid: str, salt: str,
                                                    case: str) -> None:
    (method, path), kind = CASES[case]
    model, spec = model_and_spec(rcat.hostname, rcid, chunk_size=CHUNK)
    root = tmp_path / "up"
    files = build_asset_tree(root, model, "1-LST", 20, size=100, salt=salt)
    files.append(write_large(root, model, "1-LST", 3 * CHUNK + 77, seed=3, file_name=f"big-{salt}.bin"))
    jobs_before = open_job_count(rcat)
    plan = FaultPlan(rules=(Rule(kind, method=method, path=path, times=1),), hold_seconds=HOLD)
    options = UploadOptions(chunk_size=CHUNK, max_retries=4, retry_delay=0.01, timeout=TIMEOUT)
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, rcid), options)
    assert proxy.summary()["faults"] == {kind: 1}, "the rule must have fired exactly once"
    with CatalogView(rcat.base_url, rcid) as view:
        check = check_catalog(view, files, check_versions=True)
    problems = {
        "failed files": {k.rsplit("/", 1)[-1]: r.error for k, r in report.failed.items()},
        "files without a row": len(check.missing),
        "duplicate rows": check.duplicates,
        "digest mismatches": check.digest_mismatches,
        "upload jobs left open": open_job_count(rcat) - jobs_before,
        "objects stored twice (extra versions)": check.extra_versions,
    }
    assert {k: v for k, v in problems.items() if v} == {}, f"{kind} on {method} {path}"
