"""Support for the Hatrac tests (no tests here): a standalone embedded Hatrac at /hatrac.

The Hatrac tests need only the object store, so they start it on its own with
uvicorn in a thread rather than the whole catalog.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

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


def serve(root: Path) -> tuple[uvicorn.Server, threading.Thread, int]:
    """Start a Starlette app with Hatrac mounted at /hatrac on a free loopback port."""
    app = Starlette(routes=[Mount("/hatrac", app=create_hatrac_app(root))])
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
def hatrac_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HatracServer]:
    root = tmp_path_factory.mktemp("hatrac")
    server, thread, port = serve(root)
    try:
        yield HatracServer(root, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
