"""A loopback HTTP/1.1 proxy that injects network and server faults (test utility).

It sits between the upload engine and the embedded catalog and, per request, either
forwards it untouched or injects one fault:

======================  =====================================================  ==========
kind                    what the client sees                                   forwarded?
======================  =====================================================  ==========
``reset``               TCP RST (SO_LINGER 0) after the request was read       no
``http_500``            500 with a text body                                   no
``http_502``            502 with an HTML page, as an nginx/Apache proxy sends  no
``http_503``            503                                                    no
``http_503_retry_after`` 503 + ``Retry-After``                                 no
``http_429``            429                                                    no
``http_429_retry_after`` 429 + ``Retry-After``                                 no
``read_timeout``        silence for ``hold_seconds``, then a closed socket     no
``truncate``            status + headers + part of the body, then FIN          yes
``delay_after_commit``  the server committed; the client gets silence, then    yes
                        a closed socket (the idempotent-insert test)
``status``              (rules only) a fixed status/body, e.g. a permanent 403 no
======================  =====================================================  ==========

Decisions come from targeted :class:`Rule` s first, then from a seeded roll with one
rate per kind. The roll of a request depends only on the seed, the method, the path
(with job, version and catalog ids blanked out) and how many such requests came before, never on
the order in which concurrent requests arrive: the same upload with the same seed gets
the same faults on the same requests, run after run. The proxy is bounded: it refuses to bind anything but loopback, and it
shuts itself down after ``max_requests`` requests or ``max_lifetime`` seconds, so a
test that loops forever fails instead of hanging. Every request is recorded
(:attr:`FaultProxy.records`) and :meth:`FaultProxy.summary` gives the counters as JSON.

Only what the engine (httpx) and deriva-py send is parsed: HTTP/1.1 requests with a
``Content-Length`` or chunked body; responses with ``Content-Length``, chunked, or
read-until-close bodies.
"""

from __future__ import annotations

import asyncio
import json
import hashlib
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Kinds the RNG may pick (``status`` is for rules only: it needs a status and a body).
FAULT_KINDS: tuple[str, ...] = (
    "reset",
    "http_500",
    "http_502",
    "http_503",
    "http_503_retry_after",
    "http_429",
    "http_429_retry_after",
    "read_timeout",
    "truncate",
    "delay_after_commit",
)
RULE_ONLY_KINDS: tuple[str, ...] = ("status",)
# Faults after which the server has already processed the request.
FORWARDED_KINDS = frozenset({"truncate", "delay_after_commit"})

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

# Largest request/response header block accepted (a look-up URL of 100 MD5s is ~4 KB).
MAX_HEADER_BYTES = 1024 * 1024
# An idle upstream connection older than this is replaced before reuse: uvicorn closes
# idle keep-alive connections after 5 s and a request racing that close gets no answer.
UPSTREAM_IDLE_REUSE = 2.0
# Defaults that keep a runaway test bounded (a 2,000-file run under 20 % faults sends
# well under 20,000 requests and finishes in a few minutes).
DEFAULT_MAX_REQUESTS = 50_000
DEFAULT_MAX_LIFETIME = 900.0

# Parts of a path that differ from run to run (Hatrac job and version ids, the catalog
# id): blanked out before rolling, so a request's fault does not depend on them.
_VOLATILE = re.compile(r"(?<=;upload/)[^/?]+|(?<=:)[A-Z2-7]{20,}|(?<=/ermrest/catalog/)[^/?]+")

_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_CANNED: dict[str, tuple[int, str, str, str]] = {
    # kind: (status, reason, content type, body)
    "http_500": (500, "Internal Server Error", "text/plain", "Internal Server Error (injected)\n"),
    "http_502": (502, "Bad Gateway", "text/html", _HTML_502),
    "http_503": (503, "Service Unavailable", "text/plain", "Service Unavailable (injected)\n"),
    "http_503_retry_after": (503, "Service Unavailable", "text/plain", "Service Unavailable (injected)\n"),
    "http_429": (429, "Too Many Requests", "text/plain", "Too Many Requests (injected)\n"),
    "http_429_retry_after": (429, "Too Many Requests", "text/plain", "Too Many Requests (injected)\n"),
}
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            412: "Precondition Failed", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


@dataclass(frozen=True)
class Rule:
    """A targeted fault: inject ``kind`` into requests matching ``method`` and ``path``.

    ``method``/``path`` are regular expressions (``re.search`` on the method and on the
    raw request target, query included); None matches anything. The first ``skip``
    matches pass, then ``times`` matches get the fault (None: every later match).
    ``status``/``body``/``headers`` describe the answer of kind ``status``.
    """

    kind: str
    method: str | None = None
    path: str | None = None
    skip: int = 0
    times: int | None = None
    status: int = 403
    body: str = "Access forbidden.\n"
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS + RULE_ONLY_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS + RULE_ONLY_KINDS}")


@dataclass(frozen=True)
class FaultPlan:
    """Which faults to inject, how often, and the proxy's bounds.

    ``rates`` maps a kind to a probability per request (their sum must be <= 1).
    ``hold_seconds`` is how long ``read_timeout`` / ``delay_after_commit`` stay silent:
    make it longer than the client's read timeout. ``exempt`` are path regexes never
    faulted at random (rules still apply).
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    seed: int = 0
    hold_seconds: float = 2.0
    retry_after: str = "0"
    truncate_fraction: float = 0.5
    exempt: tuple[str, ...] = ()
    max_requests: int = DEFAULT_MAX_REQUESTS
    max_lifetime: float = DEFAULT_MAX_LIFETIME

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; one of {FAULT_KINDS}")
        if any(r < 0 for r in self.rates.values()) or sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must be >= 0 and sum to <= 1, got {dict(self.rates)}")
        if not 0.0 <= self.truncate_fraction < 1.0:
            raise ValueError("truncate_fraction must be in [0, 1)")
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "exempt", tuple(self.exempt))

    @classmethod
    def uniform(cls, total_rate: float, kinds: tuple[str, ...] = FAULT_KINDS, **kw: Any) -> FaultPlan:
        """``total_rate`` of requests faulted, spread evenly over ``kinds``."""
        return cls(rates={k: total_rate / len(kinds) for k in kinds}, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rates"] = dict(self.rates)
        d["rules"] = [asdict(r) | {"headers": dict(r.headers)} for r in self.rules]
        return d


@dataclass(frozen=True)
class Record:
    """One request the proxy saw: ``kind`` is ``"pass"`` or the fault injected."""

    seq: int
    method: str
    path: str
    kind: str
    status: int | None
    forwarded: bool
    t: float


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    raw: bytes  # head + body exactly as received

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def wants_close(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


@dataclass
class _Response:
    status: int
    head: bytes
    body: bytes  # raw body bytes (chunk framing included)
    close: bool


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Raw bytes of a chunked body, framing and trailers included."""
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, up to the empty line
                t = await reader.readuntil(b"\r\n")
                out += t
                if t == b"\r\n":
                    return bytes(out)
        out += await reader.readexactly(size + 2)


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # client closed between requests
    line, headers = _parse_head(head)
    parts = line.split(" ")
    if len(parts) != 3:
        raise ValueError(f"malformed request line {line!r}")
    method, target, _version = parts
    te = (_get(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(_get(headers, "content-length") or 0))
    return _Request(method, target, headers, head + body)


async def _read_response(reader: asyncio.StreamReader, method: str) -> _Response:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        line, headers = _parse_head(head)
        status = int(line.split(" ", 2)[1])
        if not 100 <= status < 200:
            break
    close = (_get(headers, "connection") or "").lower() == "close"
    te = (_get(headers, "transfer-encoding") or "").lower()
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in te:
        body = await _read_chunked(reader)
    elif _get(headers, "content-length") is not None:
        body = await reader.readexactly(int(_get(headers, "content-length") or 0))
    else:
        body = await reader.read()  # until the server closes
        close = True
    return _Response(status, head, body, close)


def _canned(status: int, reason: str, ctype: str, body: str, extra: Mapping[str, str] | None = None) -> bytes:
    data = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Upstream:
    """One keep-alive connection to the catalog, owned by one client connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    async def exchange(self, req: _Request) -> _Response:
        stale = time.monotonic() - self.last_used > UPSTREAM_IDLE_REUSE
        if self.writer is None or stale or (self.reader is not None and self.reader.at_eof()):
            await self.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES)
        assert self.reader is not None and self.writer is not None
        self.writer.write(req.raw)
        await self.writer.drain()
        resp = await _read_response(self.reader, req.method)
        self.last_used = time.monotonic()
        if resp.close:
            await self.close()
        return resp

    async def close(self) -> None:
        if self.writer is not None:
            w, self.writer, self.reader = self.writer, None, None
            w.close()
            try:
                await w.wait_closed()
            except (ConnectionError, OSError):
                pass


class FaultProxy:
    """Fault-injecting proxy on ``127.0.0.1:<free port>``, run in its own thread.

    Use as a context manager::

        with FaultProxy(cat.port, FaultPlan.uniform(0.2, seed=7)) as proxy:
            upload to proxy.hostname ...
        proxy.summary()
    """

    def __init__(self, upstream_port: int, plan: FaultPlan | None = None, *, upstream_host: str = "127.0.0.1",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK_HOSTS or upstream_host not in LOOPBACK_HOSTS:
            raise ValueError(f"the fault proxy runs on loopback only (got {host!r} -> {upstream_host!r})")
        self.plan = plan if plan is not None else FaultPlan()
        self.upstream = (upstream_host, int(upstream_port))
        self._bind = (host, port)
        self.port = 0
        self.records: list[Record] = []
        self.faults: Counter[str] = Counter()
        self.forwarded = 0
        self.stopped_reason: str | None = None
        self._occurrences: Counter[str] = Counter()
        self._rule_hits: Counter[int] = Counter()
        self._exempt = [re.compile(p) for p in self.plan.exempt]
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None
        self._started = 0.0
        self._elapsed: float | None = None
        self._error: BaseException | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        """``localhost:PORT`` (what deriva-py and the engine take as host)."""
        return f"localhost:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"fault proxy failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._shutdown, None)
            thread.join(15)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.stopped_reason is None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 — reported through start()
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._done = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, *self._bind, limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
        watchdog = asyncio.get_running_loop().call_later(self.plan.max_lifetime, self._shutdown, "max_lifetime")
        self._ready.set()
        await self._done.wait()
        watchdog.cancel()
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._elapsed = time.monotonic() - self._started

    def _shutdown(self, reason: str | None) -> None:
        if self.stopped_reason is None and reason is not None:
            self.stopped_reason = reason
        if self._server is not None:
            self._server.close()
        if self._done is not None:
            self._done.set()

    # -- decisions -------------------------------------------------------------------------

    def _roll(self, method: str, target: str) -> float:
        """A number in [0, 1) fixed by (seed, method, normalized path, occurrence)."""
        key = f"{method} {_VOLATILE.sub('*', target)}"
        n = self._occurrences[key]
        self._occurrences[key] += 1
        digest = hashlib.blake2b(f"{self.plan.seed}|{key}|{n}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _decide(self, method: str, target: str) -> tuple[str, Rule | None]:
        """Fault kind for this request (``"pass"`` for none); rules first, then the roll."""
        for i, rule in enumerate(self.plan.rules):
            if rule.method and not re.search(rule.method, method):
                continue
            if rule.path and not re.search(rule.path, target):
                continue
            n = self._rule_hits[i]
            self._rule_hits[i] += 1
            if n < rule.skip or (rule.times is not None and n >= rule.skip + rule.times):
                continue
            return rule.kind, rule
        roll = self._roll(method, target)
        if any(p.search(target) for p in self._exempt):
            return "pass", None
        acc = 0.0
        for kind in FAULT_KINDS:
            acc += self.plan.rates.get(kind, 0.0)
            if roll < acc:
                return kind, None
        return "pass", None

    # -- connection handling ----------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = _Upstream(*self.upstream)
        try:
            while self.stopped_reason is None:
                req = await _read_request(reader)
                if req is None:
                    break
                keep = await self._serve(req, writer, upstream)
                if not keep or req.wants_close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:
            # shutdown: end quietly (re-raising makes asyncio's stream callback log a traceback)
            writer.transport.abort()
        finally:
            await upstream.close()
            if not writer.transport.is_closing():
                writer.close()
            self._tasks.discard(task)

    async def _serve(self, req: _Request, writer: asyncio.StreamWriter, upstream: _Upstream) -> bool:
        """Answer one request; False when the client connection must end."""
        with self._lock:
            seq = len(self.records)
            if seq >= self.plan.max_requests:
                self._shutdown("max_requests")
                writer.transport.abort()
                return False
            kind, rule = self._decide(req.method, req.target)
        status: int | None = None
        forwarded = kind in ("pass",) or kind in FORWARDED_KINDS
        try:
            if kind == "pass":
                resp = await upstream.exchange(req)
                status = resp.status
                writer.write(resp.head + resp.body)
                await writer.drain()
                return not resp.close
            if kind == "reset":
                _abort_with_rst(writer)
                return False
            if kind in _CANNED or kind == "status":
                if kind == "status":
                    assert rule is not None
                    status = rule.status
                    data = _canned(status, _REASONS.get(status, "Error"), "text/plain", rule.body, rule.headers)
                else:
                    status, reason, ctype, body = _CANNED[kind]
                    extra = {"Retry-After": self.plan.retry_after} if kind.endswith("retry_after") else {}
                    data = _canned(status, reason, ctype, body, extra)
                writer.write(data)
                await writer.drain()
                return True
            if kind == "read_timeout":
                await asyncio.sleep(self.plan.hold_seconds)
                writer.transport.abort()
                return False
            resp = await upstream.exchange(req)  # truncate / delay_after_commit: the server acts
            status = resp.status
            if kind == "truncate":
                if resp.body:
                    cut = resp.head + resp.body[: int(len(resp.body) * self.plan.truncate_fraction)]
                else:  # nothing to cut in the body (HEAD, 204): cut the header block
                    cut = resp.head[: max(1, int(len(resp.head) * self.plan.truncate_fraction))]
                writer.write(cut)
                await writer.drain()
                writer.close()
                return False
            await asyncio.sleep(self.plan.hold_seconds)  # delay_after_commit
            writer.transport.abort()
            return False
        finally:
            with self._lock:
                if kind != "pass":
                    self.faults[kind] += 1
                if forwarded:
                    self.forwarded += 1
                self.records.append(Record(seq, req.method, req.target, kind, status, forwarded,
                                           time.monotonic() - self._started))

    # -- results -----------------------------------------------------------------------------

    def requests_matching(self, method: str | None = None, path: str | None = None,
                          kind: str | None = None) -> list[Record]:
        """Records whose method/path match the regexes (and whose kind equals ``kind``)."""
        with self._lock:
            recs = list(self.records)
        return [r for r in recs
                if (method is None or re.search(method, r.method))
                and (path is None or re.search(path, r.path))
                and (kind is None or r.kind == kind)]

    def summary(self) -> dict[str, Any]:
        """Counters as plain data: requests, forwarded, faults per kind, per method."""
        with self._lock:
            recs = list(self.records)
            faults = dict(self.faults)
            forwarded = self.forwarded
        by_method: Counter[str] = Counter(r.method for r in recs)
        elapsed = self._elapsed if self._elapsed is not None else (
            time.monotonic() - self._started if self._started else 0.0)
        return {
            "requests": len(recs),
            "passed": sum(1 for r in recs if r.kind == "pass"),
            "forwarded": forwarded,
            "faults": faults,
            "faults_total": sum(faults.values()),
            "by_method": dict(by_method),
            "elapsed": round(elapsed, 3),
            "stopped_reason": self.stopped_reason,
            "plan": self.plan.to_dict(),
        }

    def write_summary(self, path: Path) -> dict[str, Any]:
        data = self.summary()
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))
        return data


__all__ = ["FAULT_KINDS", "FORWARDED_KINDS", "FaultPlan", "FaultProxy", "Record", "Rule"]
