"""The fault proxy itself: pass-through fidelity, each fault kind, rates, rules, bounds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.reliability.upstream import UpstreamServer
from tests.support.faultproxy import FAULT_KINDS, FaultPlan, FaultProxy, Rule


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as up:
        yield up


def _client(timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(timeout=timeout, trust_env=False)


def test_pass_through_is_byte_faithful_and_keeps_alive(upstream: UpstreamServer) -> None:
    with FaultProxy(upstream.port) as proxy, _client() as c:
        r = c.put(f"{proxy.base_url}/obj?x=1;y", content=b"payload \x00\xff")
        assert r.status_code == 200
        assert r.content == b"echo:PUT:/obj?x=1;y:payload \x00\xff"
        assert r.headers["X-Upstream"] == "yes"
        # chunked request body (an async iterator without length makes httpx send chunked)
        r = c.post(f"{proxy.base_url}/post", content=iter([b"ab", b"cd"]))
        assert r.content == b"echo:POST:/post:abcd"
        assert c.get(f"{proxy.base_url}/chunked").content == b"hello chunked world"
        r = c.head(f"{proxy.base_url}/big")
        assert r.status_code == 200 and r.headers["Content-Length"] == "100000" and r.content == b""
        assert c.get(f"{proxy.base_url}/big").content == b"x" * 100_000
        assert c.delete(f"{proxy.base_url}/empty").status_code == 204
        for i in range(20):  # many requests on one pooled connection
            assert c.get(f"{proxy.base_url}/k{i}").content == f"echo:GET:/k{i}:".encode()
    s = proxy.summary()
    assert s["requests"] == 26 and s["passed"] == 26 and s["faults_total"] == 0
    assert upstream.count() == 26


@pytest.mark.parametrize("kind,status,retry_after", [
    ("http_500", 500, None), ("http_502", 502, None), ("http_503", 503, None),
    ("http_503_retry_after", 503, "3"), ("http_429", 429, None), ("http_429_retry_after", 429, "3"),
])
def test_status_faults_answer_without_reaching_the_server(upstream: UpstreamServer, kind: str, status: int,
                                                         retry_after: str | None) -> None:
    plan = FaultPlan(rates={kind: 1.0}, retry_after="3")
    with FaultProxy(upstream.port, plan) as proxy, _client() as c:
        r = c.post(f"{proxy.base_url}/entity", content=b"row")
        assert r.status_code == status
        assert r.headers.get("Retry-After") == retry_after
        if kind == "http_502":  # what a reverse proxy in front of a catalog really sends
            assert "text/html" in r.headers["Content-Type"] and "<title>502 Bad Gateway</title>" in r.text
        # the connection stays usable after a canned error
        assert c.get(f"{proxy.base_url}/again").status_code == status
    assert upstream.count() == 0
    assert proxy.summary()["faults"] == {kind: 2}


def test_reset_is_a_connection_error_and_reaches_no_server(upstream: UpstreamServer) -> None:
    with FaultProxy(upstream.port, FaultPlan(rates={"reset": 1.0})) as proxy, _client() as c:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as exc:
            c.post(f"{proxy.base_url}/x", content=b"data")
        assert "reset" in str(exc.value).lower() or isinstance(exc.value, httpx.RemoteProtocolError)
    assert upstream.count() == 0
    assert proxy.summary()["faults"] == {"reset": 1}


def test_read_timeout_holds_longer_than_the_client_waits(upstream: UpstreamServer) -> None:
    plan = FaultPlan(rates={"read_timeout": 1.0}, hold_seconds=1.0)
    with FaultProxy(upstream.port, plan) as proxy, _client(timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.get(f"{proxy.base_url}/slow")
        assert time.monotonic() - t0 < 0.9
    assert upstream.count() == 0


def test_delay_after_commit_times_out_although_the_server_processed_it(upstream: UpstreamServer) -> None:
    plan = FaultPlan(rates={"delay_after_commit": 1.0}, hold_seconds=1.0)
    with FaultProxy(upstream.port, plan) as proxy, _client(timeout=0.3) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post(f"{proxy.base_url}/entity", content=b"row-1")
        time.sleep(0.1)
        assert upstream.seen == [("POST", "/entity", b"row-1")]  # committed server-side
    rec = proxy.records[0]
    assert rec.kind == "delay_after_commit" and rec.forwarded and rec.status == 200


@pytest.mark.parametrize("path", ["/big", "/chunked", "/empty"])
def test_truncate_cuts_the_response_after_the_server_processed_it(upstream: UpstreamServer, path: str) -> None:
    with FaultProxy(upstream.port, FaultPlan(rates={"truncate": 1.0})) as proxy, _client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(f"{proxy.base_url}{path}")
    assert upstream.count(path) == 1
    assert proxy.records[0].forwarded


def test_rates_are_seeded_and_close_to_the_requested_fraction(upstream: UpstreamServer) -> None:
    kinds = ("http_500", "http_503", "http_429")

    def run(seed: int) -> list[str]:
        plan = FaultPlan.uniform(0.2, kinds=kinds, seed=seed)
        with FaultProxy(upstream.port, plan) as proxy, _client() as c:
            for i in range(400):
                c.get(f"{proxy.base_url}/r{i}")
        return [r.kind for r in proxy.records]

    a, b, other = run(11), run(11), run(12)
    assert a == b  # same seed, same sequence
    assert a != other
    faulted = sum(k != "pass" for k in a)
    assert 0.15 * 400 <= faulted <= 0.25 * 400
    assert set(a) - {"pass"} <= set(kinds)


def test_rules_target_method_and_path_with_skip_and_times(upstream: UpstreamServer) -> None:
    rules = (Rule("status", method="PUT", path=r"^/hatrac/", status=403, body="Access forbidden.\n"),
             Rule("http_503", method="POST", path="/entity", skip=1, times=2))
    with FaultProxy(upstream.port, FaultPlan(rules=rules)) as proxy, _client() as c:
        r = c.put(f"{proxy.base_url}/hatrac/ns/obj", content=b"x")
        assert r.status_code == 403 and r.text == "Access forbidden.\n"
        assert c.put(f"{proxy.base_url}/other", content=b"x").status_code == 200
        codes = [c.post(f"{proxy.base_url}/entity", content=b"r").status_code for _ in range(5)]
        assert codes == [200, 503, 503, 200, 200]
    assert [r.kind for r in proxy.requests_matching(method="POST")] == ["pass", "http_503", "http_503", "pass",
                                                                        "pass"]
    assert len(proxy.requests_matching(path="^/hatrac/", kind="status")) == 1


def test_exempt_paths_are_never_faulted_at_random(upstream: UpstreamServer) -> None:
    plan = FaultPlan(rates={"http_500": 1.0}, exempt=(r"^/authn/",))
    with FaultProxy(upstream.port, plan) as proxy, _client() as c:
        assert c.get(f"{proxy.base_url}/authn/session").status_code == 200
        assert c.get(f"{proxy.base_url}/ermrest").status_code == 500


def test_bounded_by_request_count(upstream: UpstreamServer) -> None:
    with FaultProxy(upstream.port, FaultPlan(max_requests=3)) as proxy, _client() as c:
        for i in range(3):
            assert c.get(f"{proxy.base_url}/n{i}").status_code == 200
        with pytest.raises(httpx.TransportError):
            c.get(f"{proxy.base_url}/over")
        time.sleep(0.1)
        assert not proxy.running
    assert proxy.stopped_reason == "max_requests"
    assert upstream.count() == 3


def test_bounded_in_time(upstream: UpstreamServer) -> None:
    with FaultProxy(upstream.port, FaultPlan(max_lifetime=0.3)) as proxy, _client(timeout=1.0) as c:
        assert c.get(f"{proxy.base_url}/early").status_code == 200
        time.sleep(0.6)
        with pytest.raises(httpx.TransportError):
            c.get(f"{proxy.base_url}/late")
    assert proxy.stopped_reason == "max_lifetime"


def test_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(80, host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(80, upstream_host="example.org")
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan(rates={"gremlins": 0.1})
    with pytest.raises(ValueError, match="sum to <= 1"):
        FaultPlan(rates={"http_500": 0.7, "reset": 0.7})


def test_summary_counts_add_up_and_serialize(upstream: UpstreamServer, tmp_path) -> None:
    plan = FaultPlan.uniform(0.5, kinds=("http_500", "http_503_retry_after", "reset", "truncate"), seed=3)
    with FaultProxy(upstream.port, plan) as proxy, _client() as c:
        for i in range(60):
            try:
                c.post(f"{proxy.base_url}/s{i}", content=b"b")
            except httpx.TransportError:
                pass
    s = proxy.write_summary(tmp_path / "proxy.json")
    assert s["requests"] == 60 == s["passed"] + s["faults_total"]
    assert s["forwarded"] == s["passed"] + s["faults"].get("truncate", 0) == upstream.count()
    assert json.loads((tmp_path / "proxy.json").read_text())["faults"] == s["faults"]
    assert set(s["faults"]) <= set(FAULT_KINDS)
