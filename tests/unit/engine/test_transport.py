"""Transport against real local HTTP servers (uvicorn + a raw-socket fault server).

Only the pure error-mapping tests at the bottom use ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from deriva_upload.engine.destination import Destination
from deriva_upload.engine.retry import RetryPolicy
from deriva_upload.engine.transport import Transport, TransportStats, fault_kind, summarize_body
from deriva_upload.errors import AuthError, ServerError, TransientError

# --------------------------------------------------------------------------- servers

CALLS: Counter = Counter()
SEEN: dict[str, dict] = {}


async def flaky(request: Request) -> Response:
    """503 for the first ``fail`` calls of ``key``, then 200."""
    key = request.query_params["key"]
    fail = int(request.query_params.get("fail", "0"))
    status = int(request.query_params.get("status", "503"))
    CALLS[key] += 1
    if CALLS[key] <= fail:
        headers = {}
        if "after" in request.query_params:
            headers["Retry-After"] = request.query_params["after"]
        return PlainTextResponse("Service Unavailable\n", status_code=status, headers=headers)
    return JSONResponse({"ok": True, "calls": CALLS[key]})


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    key = request.query_params.get("key", f"status-{code}")
    CALLS[key] += 1
    body = ("Request conflicts with state of server. Detail: Input data violates model. ERROR:  duplicate key\n"
            "DETAIL:  Key (\"Name\")=(a) already exists.\n\n")
    return PlainTextResponse(body, status_code=code)


async def html_error(request: Request) -> Response:
    CALLS["html"] += 1
    page = ("<!DOCTYPE html><html><head><title>502 Proxy Error</title></head>"
            "<body><h1>Proxy Error</h1><p>The proxy server received an invalid response.</p></body></html>")
    return Response(page, status_code=400, media_type="text/html")


async def echo(request: Request) -> Response:
    body = await request.body()
    SEEN[request.query_params.get("key", "echo")] = {
        "method": request.method,
        "headers": dict(request.headers),
        "length": len(body),
        "body": body.decode("latin-1")[:200],
    }
    return JSONResponse({"length": len(body)}, headers={"X-Echo-AE": request.headers.get("accept-encoding", "")})


APP = Starlette(routes=[
    Route("/flaky", flaky, methods=["GET", "POST", "PUT", "HEAD"]),
    Route("/status/{code}", status, methods=["GET", "POST", "PUT", "DELETE"]),
    Route("/html", html_error),
    Route("/echo", echo, methods=["GET", "POST", "PUT", "HEAD"]),
])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    config = uvicorn.Config(APP, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not srv.started:
        assert time.time() < deadline, "test server did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=5)


class FaultServer:
    """Raw HTTP/1.1 server scripted per connection-request: answer, drop or truncate.

    ``script`` is a list of actions consumed one per request: ``"ok"`` (200 + JSON body,
    keep-alive), ``"drop"`` (close without any response), ``"truncate"`` (headers promise
    100 bytes, 10 are sent, then close), ``"ok-then-idle-close"`` (answer, then close the
    idle connection after ``idle_close`` seconds like Apache's KeepAliveTimeout).
    """

    def __init__(self, script: list[str], idle_close: float = 0.2) -> None:
        self.script = list(script)
        self.idle_close = idle_close
        self.requests: list[str] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _next(self) -> str:
        return self.script.pop(0) if self.script else "ok"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head.split(b"\r\n")[0].decode()

    def _handle(self, conn: socket.socket) -> None:
        try:
            while True:
                conn.settimeout(self.idle_close if self.requests else 5)
                try:
                    line = self._read_request(conn)
                except socket.timeout:
                    return  # idle close, no Connection: close header sent
                if line is None:
                    return
                self.requests.append(line)
                action = self._next()
                if action == "drop":
                    return
                if action == "truncate":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n{\"partial")
                    return
                body = json.dumps({"n": len(self.requests)}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class Sleeps:
    """Records backoff waits instead of sleeping (keeps tests fast, makes waits visible)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(host: str, policy: RetryPolicy | None = None, **kw) -> tuple[Transport, Sleeps]:
    sleeps = Sleeps()
    dest = kw.pop("dest", None) or Destination("http", host, "1")
    return Transport(dest, policy or RetryPolicy(max_retries=3, backoff_initial=0.01), sleep=sleeps, **kw), sleeps


def run(coro):
    return asyncio.run(coro)


# --------------------------------------------------------------------------- tests

def test_retries_until_success_and_counts(server: str) -> None:
    async def go():
        t, sleeps = make(server)
        async with t:
            r = await t.request("GET", "/flaky?key=a1&fail=2")
        return r, t.stats, sleeps

    r, stats, sleeps = run(go())
    assert r.json() == {"ok": True, "calls": 3}
    assert stats.requests == 3 and stats.retries == 2
    assert stats.faults == Counter({"http_503": 2})
    assert len(sleeps.waits) == 2
    assert stats.bytes_received > 0


def test_forbidden_tried_once_with_credential_hint(server: str) -> None:
    async def go():
        t, sleeps = make(server)
        async with t:
            with pytest.raises(AuthError) as info:
                await t.request("GET", "/status/403?key=f403")
        return info.value, sleeps

    err, sleeps = run(go())
    assert CALLS["f403"] == 1 and sleeps.waits == []
    assert err.status == 403
    assert "credential" in str(err) and "DERIVA_UPLOAD_TOKEN" in str(err)


@pytest.mark.parametrize("code", [400, 404, 409, 412])
def test_client_errors_fail_fast_with_one_line_message(server: str, code: int) -> None:
    async def go():
        t, _ = make(server)
        async with t:
            with pytest.raises(ServerError) as info:
                await t.request("POST", f"/status/{code}?key=c{code}", json=[{"a": 1}])
        return info.value

    err = run(go())
    assert CALLS[f"c{code}"] == 1
    assert not isinstance(err, (AuthError, TransientError))
    assert err.status == code
    assert "\n" not in str(err)
    assert 'duplicate key DETAIL: Key ("Name")=(a) already exists.' in str(err)


def test_exhausted_retries_raise_transient(server: str) -> None:
    async def go():
        t, sleeps = make(server, RetryPolicy(max_retries=2, backoff_initial=0.01))
        async with t:
            with pytest.raises(TransientError) as info:
                await t.request("GET", "/flaky?key=ex&fail=99&status=502")
        return info.value, sleeps

    err, sleeps = run(go())
    assert CALLS["ex"] == 3 and len(sleeps.waits) == 2
    assert err.status == 502 and "3 attempt" in str(err)


def test_retry_after_is_honoured(server: str) -> None:
    async def go():
        t, sleeps = make(server, RetryPolicy(max_retries=3, backoff_initial=0.001, backoff_max=60))
        async with t:
            await t.request("GET", "/flaky?key=ra&fail=1&after=7")
        return sleeps

    assert run(go()).waits == [7.0]


def test_html_error_page_summarised_to_title(server: str) -> None:
    async def go():
        t, _ = make(server)
        async with t:
            with pytest.raises(ServerError) as info:
                await t.request("GET", "/html")
        return info.value

    err = run(go())
    assert "502 Proxy Error" in str(err) and "<" not in str(err)


def test_non_idempotent_post_not_repeated_on_5xx(server: str) -> None:
    async def go():
        t, sleeps = make(server)
        async with t:
            with pytest.raises(TransientError):
                await t.request("POST", "/flaky?key=np&fail=1", json={}, idempotent=False)
        return sleeps

    sleeps = run(go())
    assert CALLS["np"] == 1 and sleeps.waits == []


def test_non_idempotent_recover_decides(server: str) -> None:
    async def go():
        t, _ = make(server)
        recovered = httpx.Response(201, text="/hatrac/x:V\n")
        calls = []

        async def found():
            calls.append("found")
            return recovered

        async def not_found():
            calls.append("absent")
            return None

        async with t:
            r1 = await t.request("POST", "/flaky?key=rc1&fail=1", content=b"x", idempotent=False, recover=found)
            # the lost request did not take effect: retried, second try succeeds
            r2 = await t.request("POST", "/flaky?key=rc2&fail=1", content=b"x", idempotent=False, recover=not_found)
        return r1, r2, recovered, calls

    r1, r2, recovered, calls = run(go())
    assert r1 is recovered and CALLS["rc1"] == 1
    assert r2.json()["calls"] == 2 and CALLS["rc2"] == 2
    assert calls == ["found", "absent"]


def test_auth_headers_and_head_identity_encoding(server: str) -> None:
    async def go():
        dest = Destination("http", server, "1", token="tok-123", cookie="webauthn=c00kie")
        t, _ = make(server, dest=dest)
        async with t:
            await t.request("GET", "/echo?key=auth")
            r = await t.request("HEAD", "/echo?key=head")
        return r

    r = run(go())
    headers = SEEN["auth"]["headers"]
    assert headers["authorization"] == "Bearer tok-123"
    assert headers["cookie"] == "webauthn=c00kie"
    assert SEEN["head"]["headers"]["accept-encoding"] == "identity"
    assert r.headers["x-echo-ae"] == "identity"


def test_streamed_body_with_factory_is_replayed(server: str) -> None:
    payload = b"z" * 70_000

    async def go():
        t, _ = make(server)

        def factory():
            async def gen():
                for i in range(0, len(payload), 16_384):
                    yield payload[i:i + 16_384]
            return gen()

        async with t:
            r = await t.request("PUT", "/echo?key=stream", content=factory,
                                headers={"Content-Length": str(len(payload))})
        return r, t.stats

    r, stats = run(go())
    assert r.json() == {"length": len(payload)}
    assert SEEN["stream"]["headers"]["content-length"] == str(len(payload))
    assert stats.bytes_sent == len(payload)


def test_json_body_and_bytes_sent(server: str) -> None:
    async def go():
        t, _ = make(server)
        async with t:
            await t.request("POST", "/echo?key=json", json=[{"a": "ü"}])
        return t.stats

    stats = run(go())
    assert SEEN["json"]["headers"]["content-type"] == "application/json"
    assert json.loads(SEEN["json"]["body"].encode("latin-1").decode()) == [{"a": "ü"}]
    assert stats.bytes_sent == SEEN["json"]["length"]


def test_connection_refused_is_retried_then_transient() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now

    async def go():
        t, sleeps = make(f"127.0.0.1:{port}", RetryPolicy(max_retries=2, backoff_initial=0.01))
        async with t:
            with pytest.raises(TransientError) as info:
                await t.request("POST", "/x", json={}, idempotent=False)
        return info.value, t.stats, sleeps

    err, stats, sleeps = run(go())
    # a refused connection never reached the server: retried even for a POST
    assert stats.requests == 3 and stats.faults["connect"] == 3 and len(sleeps.waits) == 2
    assert "connect" in str(err)


def test_server_drop_and_truncated_body_are_retried_for_get() -> None:
    fs = FaultServer(["drop", "truncate", "ok"])
    try:
        async def go():
            t, _ = make(f"127.0.0.1:{fs.port}")
            async with t:
                r = await t.request("GET", "/anything")
            return r, t.stats

        r, stats = run(go())
    finally:
        fs.close()
    assert r.json() == {"n": 3}
    assert stats.retries == 2
    assert stats.faults["disconnect"] == 2


def test_server_drop_of_post_is_not_repeated_blindly() -> None:
    fs = FaultServer(["drop", "ok"])
    try:
        async def go():
            t, _ = make(f"127.0.0.1:{fs.port}")
            async with t:
                with pytest.raises(TransientError):
                    await t.request("POST", "/job", content=b"{}", idempotent=False)
        run(go())
    finally:
        fs.close()
    assert len(fs.requests) == 1


def test_idle_connection_closed_by_server_is_transparent() -> None:
    """Like Apache's 5 s KeepAliveTimeout (here 0.1 s): the next request still works."""
    fs = FaultServer([], idle_close=0.1)
    try:
        async def go():
            t, _ = make(f"127.0.0.1:{fs.port}", RetryPolicy(max_retries=0))
            async with t:
                a = await t.request("GET", "/one")
                await asyncio.sleep(0.4)
                b = await t.request("POST", "/two", json={}, idempotent=False)
                c = await t.request("GET", "/three")
            return a, b, c, t.stats

        a, b, c, stats = run(go())
    finally:
        fs.close()
    assert [a.json()["n"], b.json()["n"], c.json()["n"]] == [1, 2, 3]
    assert stats.retries == 0 and not stats.faults
    assert fs.connections == 2  # the pool noticed the close and reconnected


def test_one_shot_async_iterable_not_replayed_after_start() -> None:
    fs = FaultServer(["drop", "ok"])
    try:
        async def go():
            async def gen():
                yield b"abc"

            t, _ = make(f"127.0.0.1:{fs.port}")
            async with t:
                with pytest.raises(TransientError):
                    await t.request("PUT", "/obj", content=gen(), headers={"Content-Length": "3"})
        run(go())
    finally:
        fs.close()
    assert len(fs.requests) == 1


# --------------------------------------------------------------------------- pure mapping

def test_summarize_body_variants() -> None:
    assert summarize_body("Resource /hatrac/x not found.\n") == "Resource /hatrac/x not found."
    assert summarize_body("a\n\nb  c\n") == "a b c"
    assert summarize_body("<html><body><h1>Oops</h1><p>x</p></body></html>", "text/html") == "Oops"
    assert summarize_body("<html><head><title>Bad &amp; worse</title></head></html>", "text/html") == "Bad & worse"
    long = summarize_body("x" * 5000)
    assert len(long) <= 500 and long.endswith("...")


def test_fault_kinds() -> None:
    assert fault_kind(503) == "http_503"
    assert fault_kind(httpx.ConnectError("x")) == "connect"
    assert fault_kind(httpx.ReadTimeout("x")) == "timeout"
    assert fault_kind(httpx.RemoteProtocolError("x")) == "disconnect"
    assert fault_kind(httpx.ReadError("x")) == "network"


def test_401_maps_to_auth_error_via_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text="Access requires authentication. Detail: no session\n")

    async def go():
        t = Transport(Destination("https", "example.org", "1"), http_transport=httpx.MockTransport(handler))
        async with t:
            with pytest.raises(AuthError) as info:
                await t.request("GET", "/ermrest/catalog/1/schema")
        return info.value

    err = run(go())
    assert err.status == 401 and "Access requires authentication" in str(err)


def test_stats_as_dict() -> None:
    s = TransportStats()
    s.faults["http_503"] += 2
    assert s.as_dict() == {"requests": 0, "retries": 0, "faults": {"http_503": 2}, "bytes_sent": 0, "bytes_received": 0}


def test_secrets_not_in_repr() -> None:
    d = Destination("https", "example.org", "1", token="SECRET-T", cookie="webauthn=SECRET-C")
    assert "SECRET" not in repr(d) and "SECRET" not in str(d)
