"""Issue #8 item 5: permanent errors are tried once; transient ones are retried with capped,
jittered backoff that honours Retry-After; retries are bounded.

Faults come from the fault proxy's rules, aimed at one file's object PUT; the proxy's
own record of requests (with timestamps) is the evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import run_upload
from tests.reliability.helpers import CatalogView, check_catalog, destination, model_and_spec
from tests.support.faultproxy import FaultPlan, FaultProxy, Rule
from tests.support.trees import build_asset_tree

VICTIM = "f00003.txt"  # the file whose object PUT gets the fault
N = 8


def _setup(tmp_path: Path, rcat: Any, rcid: str, salt: str) -> tuple[Path, dict[str, Any], list[Any]]:
    model, spec = model_and_spec(rcat.hostname, rcid)
    root = tmp_path / "up"
    return root, spec, build_asset_tree(root, model, "1-RTY", N, size=100, salt=salt)


def _victim_rule(kind: str, **kw: Any) -> Rule:
    return Rule(kind, method="PUT", path=rf"\.{VICTIM.replace('.', '[.]')}\?parents=true$", **kw)


@pytest.mark.parametrize("status,body", [
    (400, "Request malformed. Detail: bad digest\n"),
    (401, "Access requires authentication.\n"),
    (403, "Access forbidden.\n"),
    (404, "Resource not found.\n"),
    (409, "Request conflicts with state of server. Detail: name is a namespace\n"),
    (412, "Resource state does not match requested preconditions.\n"),
])
def test_permanent_error_is_tried_once_and_fails_that_file_with_the_servers_message(
        tmp_path: Path, rcat: Any, rcid: str, salt: str, status: int, body: str) -> None:
    root, spec, files = _setup(tmp_path, rcat, rcid, salt)
    plan = FaultPlan(rules=(_victim_rule("status", status=status, body=body),))
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, rcid),
                            UploadOptions(max_retries=5, retry_delay=0.01))
    tries = proxy.requests_matching(method="PUT", path=VICTIM)
    assert len(tries) == 1, f"a {status} must be tried once, it was tried {len(tries)} times"
    failed = {Path(p).name: r.error for p, r in report.failed.items()}
    assert list(failed) == [VICTIM], "only the file that got the error fails"
    assert f"-> {status}" in failed[VICTIM] and body.strip() in failed[VICTIM], failed[VICTIM]
    assert report.stats.retries == 0
    with CatalogView(rcat.base_url, rcid) as view:
        check = check_catalog(view, [f for f in files if f.path.name != VICTIM])
        assert check.missing == [] and check.rows == N - 1, "nothing partial: no row for the failed file"


def test_a_403_forever_is_still_tried_once(tmp_path: Path, rcat: Any, rcid: str, salt: str) -> None:
    """The issue's exact case: a permanent 403 on every request must not loop."""
    root, spec, _ = _setup(tmp_path, rcat, rcid, salt)
    plan = FaultPlan(rules=(Rule("status", method="PUT", path="^/hatrac/", status=403, body="Access forbidden.\n"),))
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, rcid),
                            UploadOptions(max_retries=10, retry_delay=0.01))
    assert len(proxy.requests_matching(method="PUT")) == N  # one PUT per file, never a second
    assert len(report.failed) == N
    assert all("403" in r.error and "Access forbidden." in r.error for r in report.failed.values())


def test_retry_after_is_honoured(tmp_path: Path, rcat: Any, rcid: str, salt: str) -> None:
    root, spec, _ = _setup(tmp_path, rcat, rcid, salt)
    plan = FaultPlan(rules=(_victim_rule("http_503_retry_after", times=2),), retry_after="1")
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, rcid),
                            UploadOptions(max_retries=5, retry_delay=0.01))
    assert report.ok
    t = [r.t for r in proxy.requests_matching(method="PUT", path=VICTIM)]
    assert len(t) == 3
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert all(g >= 0.95 for g in gaps), f"Retry-After: 1 not honoured, gaps {gaps}"
    assert all(g < 3.0 for g in gaps), f"waited far longer than Retry-After: {gaps}"


def test_backoff_is_bounded_exponential_with_jitter_and_retries_are_capped(tmp_path: Path, rcat: Any, rcid: str,
                                                                          salt: str) -> None:
    root, spec, _ = _setup(tmp_path, rcat, rcid, salt)
    retry_delay, max_retries = 0.05, 4
    plan = FaultPlan(rules=(_victim_rule("http_503"),))  # 503 forever on one file
    with FaultProxy(rcat.port, plan) as proxy:
        report = run_upload(root, spec, destination(proxy.hostname, rcid),
                            UploadOptions(max_retries=max_retries, retry_delay=retry_delay))
    t = [r.t for r in proxy.requests_matching(method="PUT", path=VICTIM)]
    assert len(t) == max_retries + 1, "retries must stop at max_retries"
    gaps = [b - a for a, b in zip(t, t[1:])]
    # full jitter: wait k is uniform in [0, retry_delay * 2**k] (plus scheduling noise)
    for k, g in enumerate(gaps):
        assert g <= retry_delay * 2 ** k + 0.5, f"gap {k} = {g:.3f}s exceeds its backoff ceiling"
    failed = {Path(p).name: r.error for p, r in report.failed.items()}
    assert list(failed) == [VICTIM]
    assert f"after {max_retries + 1} attempt(s)" in failed[VICTIM] and "503" in failed[VICTIM], failed[VICTIM]
