"""Support for the Hatrac tests (no tests here): a standalone embedded Hatrac at /hatrac.

``hatrac_server`` is the shared embedded catalog (``embedded_catalog`` in
tests/conftest.py) seen as a Hatrac server; ``standalone_hatrac`` starts a
Hatrac-only app for tests that need to wrap it.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from deriva_upload.catalog.app import HATRAC_DIR
from deriva_upload.catalog.hatrac import create_hatrac_app

STARTUP_TIMEOUT_S = 10


@dataclass
class HatracServer:
    root: Path
    port: int

    @property
    def hostname(self) -> str:
        return f"localhost:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    """Run an ASGI app with uvicorn in a thread on a free loopback port."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", timeout_keep_alive=75))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("embedded Hatrac did not start")
        time.sleep(0.01)
    return server, thread, port


@pytest.fixture(scope="module")
def hatrac_server(embedded_catalog) -> HatracServer:  # type: ignore[no-untyped-def]
    """The shared embedded catalog's Hatrac (its store folder is ``<data_dir>/hatrac``)."""
    return HatracServer(embedded_catalog.data_dir / HATRAC_DIR, embedded_catalog.port)


@pytest.fixture
def standalone_hatrac(tmp_path: Path) -> Iterator[Callable[[Any], HatracServer]]:
    """Start a Hatrac-only app (optionally wrapped, e.g. in a test middleware) on its own."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(wrap: Any = None) -> HatracServer:
        root = tmp_path / f"hatrac{len(running)}"
        app: Any = Starlette(routes=[Mount("/hatrac", app=create_hatrac_app(root))])
        server, thread, port = serve(wrap(app) if wrap else app)
        running.append((server, thread))
        return HatracServer(root, port)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)
