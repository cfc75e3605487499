"""The embedded catalog's ASGI application: ``/ermrest``, ``/hatrac`` and ``/authn``.

Middleware (outermost first): request counting and the optional JSON-lines request log,
then the token check that also tells every handler who the caller is
(``scope["state"]["client"]``).
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Mount, Route

from .authn import AuthMiddleware, make_session_endpoint
from .bootstrap import bootstrap_catalog
from .ermrest.api import ErmrestApp
from .ermrest.store import Registry

DEFAULT_CATALOG_ID = "1"
HATRAC_DIR = "hatrac"


class RequestStats:
    """Cheap in-process request counter (read by tests and benchmarks)."""

    def __init__(self) -> None:
        self.count = 0


class RequestLogMiddleware:
    """Counts requests and, when ``log_path`` is set, appends one JSON line per request."""

    def __init__(self, app: Any, stats: RequestStats, state: Any, log_path: str | Path | None = None) -> None:
        self.app = app
        self.stats = stats
        self.state = state
        self.log_path = Path(log_path) if log_path else None
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.stats.count += 1
        self.state.request_count = self.stats.count
        if self.log_path is None:
            await self.app(scope, receive, send)
            return
        counts = {"req": 0, "resp": 0, "status": 0, "logged": False}

        def write_line() -> None:
            if counts["logged"]:
                return
            counts["logged"] = True
            raw = scope.get("raw_path") or scope["path"].encode()
            qs = scope.get("query_string") or b""
            path = raw.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")
            line = json.dumps(
                {
                    "t": time.time(),
                    "method": scope["method"],
                    "path": path,
                    "status": counts["status"],
                    "req_bytes": counts["req"],
                    "resp_bytes": counts["resp"],
                }
            )
            with self._lock, open(self.log_path, "a", encoding="utf-8") as f:  # type: ignore[arg-type]
                f.write(line + "\n")

        async def counting_receive():  # type: ignore[no-untyped-def]
            msg = await receive()
            if msg["type"] == "http.request":
                counts["req"] += len(msg.get("body", b""))
            return msg

        async def counting_send(msg):  # type: ignore[no-untyped-def]
            if msg["type"] == "http.response.start":
                counts["status"] = msg["status"]
            elif msg["type"] == "http.response.body":
                counts["resp"] += len(msg.get("body", b""))
                if not msg.get("more_body", False):
                    write_line()  # before the client can see the end of the response
            await send(msg)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            write_line()


def _hatrac_app(root: Path) -> Any:
    """The Hatrac app from the sibling module, or a 404 placeholder until it exists."""
    try:
        from .hatrac import create_hatrac_app  # type: ignore[attr-defined]
    except ImportError:
        async def placeholder(scope, receive, send):  # type: ignore[no-untyped-def]
            await Response("Hatrac is not available in this build.\n", status_code=404, media_type="text/plain")(scope, receive, send)

        return placeholder
    return create_hatrac_app(root)


def create_app(data_dir: str | Path, token: str | None = None, request_log: str | Path | None = None) -> Starlette:
    """Build the embedded catalog app over ``data_dir`` (created and bootstrapped on first use)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(data_dir)
    if not registry.ids():
        store = registry.create(DEFAULT_CATALOG_ID)
        bootstrap_catalog(store, "demo")
    ermrest = ErmrestApp(registry, bootstrap_catalog)
    hatrac_root = data_dir / HATRAC_DIR
    hatrac_root.mkdir(exist_ok=True)
    hatrac = _hatrac_app(hatrac_root)
    session = make_session_endpoint(token)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        yield
        registry.close()

    stats = RequestStats()
    app = Starlette(
        routes=[
            Route("/authn/session", session, methods=["GET", "HEAD", "POST", "PUT", "DELETE"]),
            Mount("/ermrest", app=ermrest),
            Mount("/hatrac", app=hatrac),
        ],
        lifespan=lifespan,
    )
    app.state.request_count = 0
    app.state.registry = registry
    app.state.data_dir = data_dir
    # add_middleware prepends: the last added is the outermost
    app.add_middleware(AuthMiddleware, token=token)
    app.add_middleware(RequestLogMiddleware, stats=stats, state=app.state, log_path=request_log)
    return app
