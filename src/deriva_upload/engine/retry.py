"""Retry policy: which failures are worth another try, and how long to wait.

An immutable value object in the spirit of urllib3's ``Retry``: the transport asks it
two questions (``classify`` and ``delay``) and never keeps retry state inside it, so one
policy can be shared by every concurrent request. Pure: no I/O, no clock, no global
random state (callers pass the ``random.Random`` to use, which makes delays testable).
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from deriva_upload.errors import TransientError

Decision = Literal["ok", "retry", "fail"]

# Seed defaults (`upload_directory(max_retries=3, retry_delay=5.0)`): three retries
# after the first try, starting around 5 s and doubling.
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF_INITIAL = 5.0
# urllib3's BACKOFF_MAX, which deriva-py inherits: no single wait longer than 2 minutes,
# and a server's Retry-After is capped to the same value so a bad header cannot stall us.
DEFAULT_BACKOFF_MAX = 120.0
# The statuses deriva-py's datapath retries (protocol §1.4): timeouts, throttling, and
# gateway/server trouble. 4xx other than 408/429 are the client's fault: retrying cannot help.
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

# Failures that happen before the request reached the server: always safe to retry,
# even for a non-idempotent request (job create, finalize).
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Failures after (part of) the request may have been processed: connection reset,
# server closed the (pooled) connection mid-response, truncated body, read/write timeout.
_AMBIGUOUS_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TransportError,  # includes NetworkError, TimeoutException, RemoteProtocolError
    ConnectionError,
    TimeoutError,
    TransientError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry and how long to wait: full-jitter exponential backoff.

    ``max_retries`` counts retries *after* the first try (the seed's meaning), so a
    request is sent at most ``max_retries + 1`` times; a failure classified ``"fail"``
    is sent exactly once.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("backoff_initial and backoff_max must be >= 0")
        # Accept any iterable of ints but store an immutable, hashable set.
        object.__setattr__(self, "retry_statuses", frozenset(int(s) for s in self.retry_statuses))

    @classmethod
    def from_seed(cls, max_retries: int = DEFAULT_MAX_RETRIES,
                  retry_delay: float = DEFAULT_BACKOFF_INITIAL) -> RetryPolicy:
        """Policy from the seed's ``upload_directory(max_retries=, retry_delay=)`` arguments."""
        return cls(max_retries=max_retries, backoff_initial=retry_delay)

    def with_(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed (the policy itself never changes)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # -- decisions -------------------------------------------------------------------

    def classify(self, status_or_exc: int | BaseException, *, idempotent: bool = True) -> Decision:
        """``"retry"`` for transient failures, ``"fail"`` for permanent ones, ``"ok"`` for success.

        For a non-idempotent request (``idempotent=False``) only failures that prove the
        request never reached the server (connect errors, pool timeouts) and an explicit
        429 are retryable; anything ambiguous is ``"fail"`` so the caller can recover
        (e.g. HEAD the object after a lost finalize) instead of repeating blindly.
        """
        if isinstance(status_or_exc, BaseException):
            if isinstance(status_or_exc, _NOT_SENT_ERRORS):
                return "retry"
            if isinstance(status_or_exc, _AMBIGUOUS_ERRORS):
                return "retry" if idempotent else "fail"
            return "fail"
        status = int(status_or_exc)
        if status < 400:
            return "ok"
        if status == 429 and status in self.retry_statuses:
            return "retry"  # throttled: the server did not process the request
        if status in self.retry_statuses:
            return "retry" if idempotent else "fail"
        return "fail"

    def should_retry(self, attempt: int, status_or_exc: int | BaseException, *, idempotent: bool = True) -> bool:
        """True when try number ``attempt`` (0 = first try) failed retryably and retries remain."""
        return attempt < self.max_retries and self.classify(status_or_exc, idempotent=idempotent) == "retry"

    def delay(self, attempt: int, retry_after: str | None = None, rng: random.Random | None = None,
              *, now: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` 0 = after the first try).

        Full jitter (``uniform(0, min(cap, initial * 2**attempt))``) spreads concurrent
        clients apart. A server's ``Retry-After`` (delta-seconds or HTTP date) wins
        over the computed backoff, capped at ``backoff_max``.
        """
        server_wait = parse_retry_after(retry_after, now=now)
        if server_wait is not None:
            return min(self.backoff_max, server_wait)
        # Guard 2**attempt against overflow for absurd attempt numbers.
        exp = min(attempt, 62)
        ceiling = min(self.backoff_max, self.backoff_initial * math.ldexp(1.0, exp))
        r = rng if rng is not None else random
        return r.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (RFC 9110: delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
