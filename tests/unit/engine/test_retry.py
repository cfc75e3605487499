"""RetryPolicy: classification, backoff bounds, Retry-After, determinism."""

from __future__ import annotations

import email.utils
import random

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deriva_upload.engine.retry import DEFAULT_RETRY_STATUSES, RetryPolicy, parse_retry_after
from deriva_upload.errors import TransientError


def run_attempts(policy: RetryPolicy, outcomes: list, *, idempotent: bool = True) -> int:
    """Drive the policy like the transport does; return how many tries were made."""
    tries = 0
    for attempt, outcome in enumerate(outcomes):
        tries += 1
        if policy.classify(outcome, idempotent=idempotent) == "ok":
            break
        if not policy.should_retry(attempt, outcome, idempotent=idempotent):
            break
    return tries


def test_defaults_match_seed() -> None:
    p = RetryPolicy()
    assert p.max_retries == 3
    assert p.backoff_initial == 5.0
    assert p.retry_statuses == frozenset({408, 429, 500, 502, 503, 504})
    assert RetryPolicy.from_seed(5, 0.25) == RetryPolicy(max_retries=5, backoff_initial=0.25)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 415])
def test_client_errors_fail_fast(status: int) -> None:
    p = RetryPolicy()
    assert p.classify(status) == "fail"
    # a 403 (or any client error) is tried exactly once, retries left or not
    assert run_attempts(p, [status] * 10) == 1


@pytest.mark.parametrize("status", sorted(DEFAULT_RETRY_STATUSES))
def test_transient_statuses_retry(status: int) -> None:
    p = RetryPolicy(max_retries=3)
    assert p.classify(status) == "retry"
    assert run_attempts(p, [status] * 10) == 4  # first try + max_retries


def test_success_stops() -> None:
    p = RetryPolicy(max_retries=5)
    assert p.classify(200) == "ok" and p.classify(204) == "ok"
    assert run_attempts(p, [503, 502, 200, 503]) == 3


def test_zero_retries_means_one_try() -> None:
    assert run_attempts(RetryPolicy(max_retries=0), [503] * 3) == 1


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.WriteTimeout("slow"),
        httpx.PoolTimeout("busy"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadError("reset"),
        ConnectionResetError("reset"),
        TimeoutError(),
        TransientError("boom"),
    ],
)
def test_network_failures_retry_when_idempotent(exc: BaseException) -> None:
    assert RetryPolicy().classify(exc) == "retry"


def test_programming_errors_fail() -> None:
    assert RetryPolicy().classify(ValueError("bug")) == "fail"
    assert RetryPolicy().classify(KeyError("x")) == "fail"


def test_non_idempotent_only_retries_unsent_requests() -> None:
    p = RetryPolicy()
    # never reached the server: safe to repeat
    assert p.classify(httpx.ConnectError("refused"), idempotent=False) == "retry"
    assert p.classify(httpx.PoolTimeout("busy"), idempotent=False) == "retry"
    assert p.classify(429, idempotent=False) == "retry"
    # may have been processed: the caller must recover, not repeat
    assert p.classify(httpx.ReadTimeout("slow"), idempotent=False) == "fail"
    assert p.classify(httpx.RemoteProtocolError("closed"), idempotent=False) == "fail"
    assert p.classify(503, idempotent=False) == "fail"
    assert p.classify(500, idempotent=False) == "fail"


def test_custom_statuses_via_with() -> None:
    p = RetryPolicy().with_(retry_statuses={503})
    assert p.classify(503) == "retry"
    assert p.classify(500) == "fail"
    assert isinstance(p.retry_statuses, frozenset)


def test_policy_is_immutable_and_with_derives() -> None:
    p = RetryPolicy()
    with pytest.raises(Exception):
        p.max_retries = 9  # type: ignore[misc]
    q = p.with_(max_retries=9)
    assert q.max_retries == 9 and p.max_retries == 3
    assert q.backoff_initial == p.backoff_initial
    assert hash(p) == hash(RetryPolicy())


def test_invalid_values_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_initial=-1.0)


def test_delay_is_full_jitter_within_exponential_ceiling() -> None:
    p = RetryPolicy(backoff_initial=1.0, backoff_max=100.0)
    rng = random.Random(1)
    for attempt in range(6):
        samples = [p.delay(attempt, None, rng) for _ in range(300)]
        ceiling = 2.0 ** attempt
        assert all(0.0 <= s <= ceiling for s in samples)
        # full jitter: spread over the whole range, not clustered at the top
        assert min(samples) < 0.2 * ceiling and max(samples) > 0.8 * ceiling


def test_delay_capped() -> None:
    p = RetryPolicy(backoff_initial=5.0, backoff_max=7.0)
    rng = random.Random(0)
    assert all(p.delay(a, None, rng) <= 7.0 for a in range(0, 200, 7))
    assert p.delay(10_000, None, rng) <= 7.0  # no overflow


def test_delay_deterministic_with_seeded_rng() -> None:
    p = RetryPolicy(backoff_initial=0.5)
    a = [p.delay(i, None, random.Random(42)) for i in range(5)]
    b = [p.delay(i, None, random.Random(42)) for i in range(5)]
    assert a == b
    seq1 = random.Random(7)
    seq2 = random.Random(7)
    assert [p.delay(i, None, seq1) for i in range(5)] == [p.delay(i, None, seq2) for i in range(5)]


def test_retry_after_seconds_honoured_and_capped() -> None:
    p = RetryPolicy(backoff_initial=0.01, backoff_max=30.0)
    assert p.delay(0, "7", random.Random(0)) == 7.0
    assert p.delay(0, "3600", random.Random(0)) == 30.0
    assert p.delay(0, "0", random.Random(0)) == 0.0


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 12, usegmt=True)
    p = RetryPolicy(backoff_max=60.0)
    assert p.delay(0, header, random.Random(0), now=now) == pytest.approx(12.0, abs=1.0)
    past = email.utils.formatdate(now - 100, usegmt=True)
    assert p.delay(3, past, random.Random(0), now=now) == 0.0


def test_bad_retry_after_falls_back_to_backoff() -> None:
    p = RetryPolicy(backoff_initial=1.0, backoff_max=60.0)
    d = p.delay(2, "soon-ish", random.Random(3))
    assert 0.0 <= d <= 4.0
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("nan") is None


@given(
    attempt=st.integers(min_value=0, max_value=1000),
    initial=st.floats(min_value=0, max_value=100),
    cap=st.floats(min_value=0, max_value=1000),
    seed=st.integers(),
)
def test_delay_always_between_zero_and_cap(attempt: int, initial: float, cap: float, seed: int) -> None:
    d = RetryPolicy(backoff_initial=initial, backoff_max=cap).delay(attempt, None, random.Random(seed))
    assert 0.0 <= d <= cap
