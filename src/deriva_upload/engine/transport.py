"""HTTP transport: one pooled ``httpx.AsyncClient`` per destination, retries, error mapping.

Everything the engine sends to ERMrest and Hatrac goes through :meth:`Transport.request`,
which adds credentials, applies the :class:`RetryPolicy`, counts traffic in
:class:`TransportStats`, and turns failures into ``deriva_upload.errors``:

* 401/403 -> :class:`AuthError` (with a hint about where credentials come from);
* other unexpected statuses -> :class:`ServerError` carrying the status and the server's
  message squeezed to one line (HTML error pages summarised to their title);
* transient failures that outlived the retries, and ambiguous failures of
  non-idempotent requests -> :class:`TransientError`.

Non-idempotent requests (Hatrac job create/finalize, plain inserts) are never repeated
blindly: the caller passes ``idempotent=False`` and optionally a ``recover`` coroutine
that finds out whether the lost request took effect.
"""

from __future__ import annotations

import asyncio
import html
import json as jsonlib
import logging
import random
import re
import ssl
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Union

import httpx

from deriva_upload.engine.destination import Destination
from deriva_upload.engine.retry import RetryPolicy
from deriva_upload.errors import AuthError, ServerError, TransientError

log = logging.getLogger("deriva_upload.engine.transport")

# Connections kept open per destination. Enough to overlap HEAD/PUT/POST traffic of a
# parallel upload; small enough not to look like an attack to a single Apache worker pool.
DEFAULT_MAX_CONNECTIONS = 16
# Connect quickly-or-fail; reads (and body writes) get the seed's generous 600 s because a
# 25 MiB chunk on a slow link or a large finalize/insert can legitimately take minutes
# (seed quirk: urllib3 applied the connect timeout to body writes; httpx has its own).
DEFAULT_TIMEOUT: tuple[float, float] = (30.0, 600.0)
# Drop idle pooled connections before the server does: stock Apache closes idle
# keep-alive connections after 5 s, and a request racing that close gets no response.
KEEPALIVE_EXPIRY = 4.0
# Longest server message (after squeezing to one line) we put into an exception.
MAX_MESSAGE_CHARS = 500
# Longest request path we quote in an exception message.
MAX_PATH_CHARS = 200
DEFAULT_EXPECT: tuple[int, ...] = (200, 201, 204)

Content = Union[bytes, bytearray, memoryview, str, Callable[[], AsyncIterable[bytes]], AsyncIterable[bytes], None]
Recover = Callable[[], Awaitable[Union[httpx.Response, None]]]


@dataclass
class TransportStats:
    """Traffic counters (one per transport; summed into reports)."""

    requests: int = 0
    retries: int = 0
    faults: Counter = field(default_factory=Counter)
    bytes_sent: int = 0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "faults": dict(self.faults),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
        }


def fault_kind(failure: int | BaseException) -> str:
    """Short name of a failure for the stats (``http_503``, ``timeout``, ``disconnect``...)."""
    if isinstance(failure, int):
        return f"http_{failure}"
    if isinstance(failure, (httpx.ConnectError, httpx.ConnectTimeout)):
        return "connect"
    if isinstance(failure, httpx.PoolTimeout):
        return "pool_timeout"
    if isinstance(failure, httpx.TimeoutException):
        return "timeout"
    if isinstance(failure, httpx.RemoteProtocolError):
        return "disconnect"
    if isinstance(failure, (httpx.NetworkError, ConnectionError)):
        return "network"
    return type(failure).__name__


# Failures that happen before any byte of the request was written.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_SCRIPT_RE = re.compile(r"<(script|style|head)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)


def summarize_body(text: str, content_type: str | None = None) -> str:
    """The server's error message as one short line.

    ERMrest's ``<description> Detail: <msg>\\n`` (often with a second PostgreSQL
    ``DETAIL:`` line) is joined into one line; an HTML page (proxies, Apache) is reduced
    to its ``<title>`` or first line of text.
    """
    text = text or ""
    is_html = "html" in (content_type or "").lower() or text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    if is_html:
        title = _TITLE_RE.search(text)
        if title and title.group(1).strip():
            text = title.group(1)
        else:
            body = _TAG_RE.sub("\n", _SCRIPT_RE.sub("", text))
            lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
            text = lines[0] if lines else ""
        text = html.unescape(text)
    line = " ".join(text.split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 3] + "..."
    return line


def _short(path: str) -> str:
    return path if len(path) <= MAX_PATH_CHARS else path[: MAX_PATH_CHARS - 3] + "..."


class _CountingStream:
    """Wraps an async byte stream to count bytes sent and note whether it started."""

    def __init__(self, source: AsyncIterable[bytes], stats: TransportStats) -> None:
        self._source = source
        self._stats = stats
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in self._source:
            self._stats.bytes_sent += len(chunk)
            yield chunk


def _timeouts(timeout: float | tuple[float, float] | None) -> tuple[float, float]:
    """``(connect, read)`` from the seed's tuple, one number (both), or None (defaults)."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, (int, float)):
        return float(timeout), float(timeout)
    connect, read = timeout
    return float(connect), float(read)


def _ssl_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """httpx 0.28 wants an SSLContext for a CA bundle path."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


class Transport:
    """Pooled async HTTP client bound to one destination; use as ``async with``."""

    def __init__(
        self,
        destination: Destination,
        policy: RetryPolicy | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float | tuple[float, float] | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``http_transport`` replaces the network (``httpx.MockTransport``) in pure unit tests only."""
        self.destination = destination
        self.policy = policy if policy is not None else RetryPolicy()
        self.stats = TransportStats()
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        connect, read = _timeouts(timeout)
        self._timeout = httpx.Timeout(connect=connect, read=read, write=max(connect, read), pool=None)
        self._limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
        self._http_transport = http_transport
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle -----------------------------------------------------------------

    def _make_client(self) -> httpx.AsyncClient:
        headers = {"User-Agent": "deriva-upload", **self.destination.auth_headers()}
        kwargs: dict[str, Any] = dict(
            base_url=self.destination.base_url,
            headers=headers,
            timeout=self._timeout,
            limits=self._limits,
            http1=True,
            http2=False,
            follow_redirects=False,
            # like deriva-py (requests): honour HTTP(S)_PROXY/NO_PROXY and SSL_CERT_FILE
            trust_env=True,
        )
        if self._http_transport is not None:
            kwargs["transport"] = self._http_transport
        else:
            kwargs["verify"] = _ssl_verify(self.destination.verify)
        return httpx.AsyncClient(**kwargs)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    async def __aenter__(self) -> Transport:
        _ = self.client
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- requests ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: Content = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
        expect: Iterable[int] = DEFAULT_EXPECT,
        recover: Recover | None = None,
    ) -> httpx.Response:
        """Send ``method path`` (path relative to ``scheme://host``, already percent-encoded).

        ``content``: bytes (replayable), a zero-argument callable returning a fresh async
        byte stream per attempt (replayable; pass ``Content-Length`` in ``headers`` for
        Hatrac), or an async iterable (sent once: not retried after it started).
        Returns the response when its status is in ``expect`` (body read).
        """
        method = method.upper()
        expect = tuple(expect)
        req_headers = dict(headers or {})
        body: Any = None
        replayable = True
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":"), default=str).encode("utf-8")
            req_headers.setdefault("Content-Type", "application/json")
        elif isinstance(content, str):
            body = content.encode("utf-8")
        elif isinstance(content, (bytes, bytearray, memoryview)):
            body = bytes(content)
        elif content is not None and not callable(content):
            replayable = False  # a raw async iterable can be consumed only once
        if method == "HEAD":
            # Stock Apache's mod_deflate strips Content-MD5 from HEAD answers when gzip is
            # acceptable (protocol §10); identity keeps the digest headers intact.
            req_headers.setdefault("Accept-Encoding", "identity")

        attempt = 0
        while True:
            stream: _CountingStream | None = None
            send_body: Any = body
            if body is None and content is not None and json is None:
                source = content() if callable(content) else content  # type: ignore[operator]
                stream = _CountingStream(source, self.stats)  # type: ignore[arg-type]
                send_body = stream
            self.stats.requests += 1
            try:
                response = await self.client.request(method, path, content=send_body, headers=req_headers)
                await response.aread()
            except (httpx.TransportError, ConnectionError, TimeoutError) as exc:
                self.stats.faults[fault_kind(exc)] += 1
                if body is not None and not isinstance(exc, _UNSENT):
                    self.stats.bytes_sent += len(body)
                can_replay = replayable or (stream is not None and not stream.started)
                decision = self.policy.classify(exc, idempotent=idempotent)
                if decision == "retry" and can_replay and attempt < self.policy.max_retries:
                    await self._backoff(attempt, None, method, path, fault_kind(exc))
                    attempt += 1
                    continue
                ambiguous = self.policy.classify(exc, idempotent=True) == "retry"
                if not idempotent and ambiguous and recover is not None:
                    recovered = await recover()
                    if recovered is not None:
                        return recovered
                    if can_replay and attempt < self.policy.max_retries:
                        await self._backoff(attempt, None, method, path, fault_kind(exc))
                        attempt += 1
                        continue
                raise TransientError(
                    f"{method} {_short(path)} failed after {attempt + 1} attempt(s): "
                    f"{fault_kind(exc)}: {exc or type(exc).__name__}",
                    url=path,
                ) from exc

            if body is not None:
                self.stats.bytes_sent += len(body)
            self.stats.bytes_received += len(response.content)
            status = response.status_code
            if status in expect:
                return response
            self.stats.faults[fault_kind(status)] += 1
            decision = self.policy.classify(status, idempotent=idempotent)
            if decision == "retry" and attempt < self.policy.max_retries:
                await self._backoff(attempt, response.headers.get("Retry-After"), method, path, fault_kind(status))
                attempt += 1
                continue
            transient = self.policy.classify(status, idempotent=True) == "retry"
            if transient and not idempotent and recover is not None and decision != "retry":
                recovered = await recover()
                if recovered is not None:
                    return recovered
                if attempt < self.policy.max_retries:
                    await self._backoff(attempt, response.headers.get("Retry-After"), method, path, fault_kind(status))
                    attempt += 1
                    continue
            raise self._error_for(method, path, response, attempts=attempt + 1, transient=transient)

    async def _backoff(self, attempt: int, retry_after: str | None, method: str, path: str, why: str) -> None:
        self.stats.retries += 1
        wait = self.policy.delay(attempt, retry_after, self._rng)
        log.debug("retry %d/%d of %s %s in %.2fs after %s", attempt + 1, self.policy.max_retries, method,
                  _short(path), wait, why)
        await self._sleep(wait)

    def _error_for(self, method: str, path: str, response: httpx.Response, *, attempts: int,
                   transient: bool) -> ServerError:
        status = response.status_code
        message = summarize_body(response.text, response.headers.get("Content-Type"))
        where = f"{method} {_short(path)}"
        if status in (401, 403):
            hint = (
                f"check the credentials for {self.destination.host}: deriva-py's credential store "
                f"(deriva-auth / ~/.deriva/credential.json) or $DERIVA_UPLOAD_TOKEN"
            )
            return AuthError(f"{where} -> {status}: {message or 'access denied'} ({hint})", status=status, url=path)
        if transient:
            return TransientError(
                f"{where} -> {status} after {attempts} attempt(s): {message}", status=status, url=path
            )
        return ServerError(f"{where} -> {status}: {message}", status=status, url=path)

    # -- conveniences ----------------------------------------------------------------

    async def get_json(self, path: str, *, headers: dict[str, str] | None = None) -> Any:
        """GET and decode JSON (ERMrest's default representation)."""
        response = await self.request("GET", path, headers={"Accept": "application/json", **(headers or {})},
                                      expect=(200,))
        return response.json()
