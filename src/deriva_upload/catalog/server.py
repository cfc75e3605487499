"""Running the embedded catalog: in a background thread, in a subprocess, or from the CLI.

``EmbeddedCatalog`` is the context manager tests and demos use; ``serve`` is what
``python -m deriva_upload.catalog`` (and later ``deriva-upload serve``) runs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import uvicorn

from ..errors import ConfigError, ServerError
from .app import DEFAULT_CATALOG_ID, create_app

# Idle keep-alive connections stay open longer than any client think time (protocol §1.6
# asks for >= 60 s) so a pooled POST never races a server-side close.
KEEP_ALIVE_TIMEOUT_S = 75
# On stop, in-flight requests get this long to finish; idle TLS keep-alive connections
# would otherwise hold shutdown for the SSL close handshake (up to 30 s).
GRACEFUL_SHUTDOWN_S = 3
# Request line + headers may be this large: look-ups like MD5=any(...) of a few thousand
# values make long URLs (h11's default limit is 16 KiB).
MAX_REQUEST_HEAD_BYTES = 1024 * 1024
# How long start-up may take before we give up (bootstrap of catalog 1 included).
STARTUP_TIMEOUT_S = 60
TLS_DIR = "tls"
TOKEN_ENV = "DERIVA_UPLOAD_TOKEN"


def ensure_tls_files(data_dir: Path) -> tuple[Path, Path]:
    """Create (once) a self-signed CA and a localhost server certificate under the data dir.

    Returns (server PEM with key and chain, CA certificate PEM for REQUESTS_CA_BUNDLE).
    """
    import trustme

    tls = data_dir / TLS_DIR
    server_pem, ca_pem = tls / "server.pem", tls / "ca.pem"
    if not (server_pem.exists() and ca_pem.exists()):
        tls.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
        ca.cert_pem.write_to_path(str(ca_pem))
        os.chmod(server_pem, 0o600)
    return server_pem, ca_pem


def bind_socket(host: str, port: int) -> socket.socket:
    """Listening socket for uvicorn.

    The protocol must be IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted
    sockets whose ``proto`` is TCP, and without it every small response stalls ~40 ms on
    the client's delayed ACK (protocol §1.6).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port (0 picks a free one)") from None
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn server that reports when it is ready to accept connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.on_started is not None and self.started:
            self.on_started()


def uvicorn_config(app: Any, tls_files: tuple[Path, Path] | None) -> uvicorn.Config:
    kwargs: dict[str, Any] = {}
    if tls_files is not None:
        kwargs["ssl_certfile"] = str(tls_files[0])
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
        http="auto",  # httptools when installed (faster), else h11
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        **kwargs,
    )


def serve(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    tls: bool = False,
    request_log: Path | None = None,
    announce: Callable[[dict], None] | None = None,
) -> None:
    """Run the catalog in the foreground until interrupted (the CLI entry point)."""
    data_dir = Path(data_dir)
    app = create_app(data_dir, token=token, request_log=request_log)
    tls_files = ensure_tls_files(data_dir) if tls else None
    sock = bind_socket(host, port)
    actual = sock.getsockname()[1]
    scheme = "https" if tls else "http"
    info = {
        "event": "listening",
        "host": host,
        "port": actual,
        "hostname": f"localhost:{actual}",
        "base_url": f"{scheme}://localhost:{actual}",
        "catalog_id": DEFAULT_CATALOG_ID,
        "ca_file": str(tls_files[1]) if tls_files else None,
        "data_dir": str(data_dir),
    }
    server = _Server(uvicorn_config(app, tls_files), on_started=(lambda: announce(info)) if announce else None)
    server.run(sockets=[sock])


class EmbeddedCatalog:
    """A local ERMrest + Hatrac + /authn server for development, tests and single-user work.

    ``mode="thread"`` runs uvicorn in a background thread of this process; ``"process"``
    runs ``python -m deriva_upload.catalog`` in a subprocess (for benchmarks, so server
    and client do not share a GIL).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        tls: bool = False,
        request_log: str | Path | None = None,
        mode: str = "thread",
    ) -> None:
        if mode not in ("thread", "process"):
            raise ConfigError(f"EmbeddedCatalog mode must be 'thread' or 'process', not {mode!r}")
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="deriva-upload-catalog-"))
        self.host = host
        self._port = port
        self.token = token
        self.tls = tls
        self.request_log = Path(request_log) if request_log else None
        self.mode = mode
        self.catalog_id = DEFAULT_CATALOG_ID
        self.ca_file: Path | None = None
        self.app: Any = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None

    # -- addresses
    @property
    def port(self) -> int:
        return self._port

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def hostname(self) -> str:
        return f"localhost:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.hostname}"

    # -- lifecycle
    def __enter__(self) -> "EmbeddedCatalog":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()

    def _start_thread(self) -> None:
        self.app = create_app(self.data_dir, token=self.token, request_log=self.request_log)
        tls_files = ensure_tls_files(self.data_dir) if self.tls else None
        self.ca_file = tls_files[1] if tls_files else None
        sock = bind_socket(self.host, self._port)
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        self._server = _Server(uvicorn_config(self.app, tls_files), on_started=ready.set)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                self._server.run(sockets=[sock])  # type: ignore[union-attr]
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                errors.append(e)
            finally:
                ready.set()
                sock.close()

        self._thread = threading.Thread(target=run, name=f"embedded-catalog-{self._port}", daemon=True)
        self._thread.start()
        if not ready.wait(STARTUP_TIMEOUT_S) or errors or not self._server.started:
            self.stop()
            raise ServerError(f"embedded catalog failed to start on {self.host}:{self._port}: {errors[0] if errors else 'timeout'}")

    def _start_process(self) -> None:
        cmd = [sys.executable, "-m", "deriva_upload.catalog", "--data-dir", str(self.data_dir), "--host", self.host, "--port", str(self._port), "--json"]
        if self.tls:
            cmd.append("--tls")
        if self.request_log:
            cmd += ["--request-log", str(self.request_log)]
        env = dict(os.environ)
        env.pop(TOKEN_ENV, None)
        if self.token:
            env[TOKEN_ENV] = self.token  # not on the command line, so it stays out of `ps`
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, env=env, text=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        assert self._proc.stdout is not None
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if not line:
                break
            try:
                info = json.loads(line)
            except ValueError:
                continue
            if info.get("event") == "listening":
                self._port = int(info["port"])
                self.ca_file = Path(info["ca_file"]) if info.get("ca_file") else None
                return
        self.stop()
        raise ServerError(f"embedded catalog subprocess failed to start (data dir {self.data_dir}); see its stderr above")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._server = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- helpers
    @property
    def request_count(self) -> int | None:
        """Requests served so far (thread mode only)."""
        return getattr(self.app.state, "request_count", None) if self.app is not None else None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for this server (verifies our CA under TLS)."""
        if "verify" not in kwargs:
            kwargs["verify"] = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
        kwargs.setdefault("timeout", 60)
        return httpx.Client(base_url=self.base_url, headers=self.auth_headers(), **kwargs)

    def create_catalog(self, bootstrap: str = "demo") -> str:
        """Create a new catalog bootstrapped with the DerivaML + demo schemas; returns its id."""
        with self.http_client() as c:
            r = c.post("/ermrest/catalog", params={"bootstrap": bootstrap})
            r.raise_for_status()
            return str(r.json()["id"])

    def delete_catalog(self, catalog_id: str) -> None:
        with self.http_client() as c:
            c.delete(f"/ermrest/catalog/{catalog_id}").raise_for_status()
