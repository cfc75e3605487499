"""Bad-input corpus, part 3: what the command line says and which exit code it returns.

``python -m deriva_upload.cli upload DIR --host ... --catalog ...`` runs as a real
subprocess against a token-protected embedded catalog. Exact first line of stderr and
exit code are asserted; afterwards the catalog holds nothing partial and the next run
succeeds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deriva_upload.cli import EXIT_AUTH, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from tests.support.faultproxy import FaultPlan, FaultProxy, Rule
from tests.support.trees import write_asset

TOKEN = "corpus-secret-token"
# Ceiling for any command-line run of these tests.
CLI_TIMEOUT = 60
# A run against a server that answers every request with 502 must give up within this:
# a few quick retries, not urllib3's default ten with exponential back-off (~3.5 min).
BROKEN_SERVER_TIMEOUT = 30
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tcat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from deriva_upload.catalog import EmbeddedCatalog

    with EmbeddedCatalog(data_dir=tmp_path_factory.mktemp("tcat"), token=TOKEN) as cat:
        yield cat


@pytest.fixture
def tcid(tcat: Any) -> str:
    return tcat.create_catalog()


@pytest.fixture
def tree(tmp_path: Path, tcat: Any, tcid: str, request: pytest.FixtureRequest) -> Path:
    from deriva.core import ErmrestCatalog

    from deriva_upload.model import DerivaModel

    model = DerivaModel.from_catalog(ErmrestCatalog("http", tcat.hostname, tcid,
                                                    credentials={"bearer-token": TOKEN}))
    r = httpx.post(f"{tcat.base_url}/ermrest/catalog/{tcid}/entity/deriva-ml:Execution",
                   json=[{"Description": "cli corpus"}], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    r.raise_for_status()
    exec_rid = r.json()[0]["RID"]
    root = tmp_path / "up"
    for i in range(3):
        write_asset(root, model, exec_rid, f"ok{i}.png", f"{request.node.name} {i}".encode())
    return root


def cli(*args: str, token: str | None = TOKEN, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DERIVA_UPLOAD_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    env["HOME"] = str(Path(args[0]).parent)  # no credential store of the machine's user
    cmd = [sys.executable, "-m", "deriva_upload.cli", "upload", *args, "--quiet"]
    if token is not None:
        cmd += ["--token", token]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def _first_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert lines, f"no error line (rc={proc.returncode}):\n{proc.stderr[-2000:]}"
    return lines[0]


def _rows(tcat: Any, cid: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{tcat.base_url}/ermrest/catalog/{cid}/entity/demo-schema:Image",
                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def test_missing_directory_exits_2(tmp_path: Path, tcat: Any, tcid: str) -> None:
    proc = cli(str(tmp_path / "nope"), "--host", tcat.hostname, "--catalog", tcid)
    assert proc.returncode == EXIT_USAGE
    assert _first_error(proc) == (f"error: directory {tmp_path / 'nope'} does not exist; give the upload root or "
                                  "an execution directory")


def test_wrong_credentials_exit_4_and_write_nothing(tree: Path, tcat: Any, tcid: str) -> None:
    proc = cli(str(tree), "--host", tcat.hostname, "--catalog", tcid, token="not-the-token")
    assert proc.returncode == EXIT_AUTH
    assert _first_error(proc).startswith(f"error: not authorized (403): GET /ermrest/catalog/{tcid}/schema: "
                                         "Access forbidden. Detail: invalid credentials.; pass --token or set")
    assert "not-the-token" not in proc.stderr + proc.stdout, "a secret must never be printed"
    assert _rows(tcat, tcid) == []
    assert cli(str(tree), "--host", tcat.hostname, "--catalog", tcid).returncode == EXIT_OK


def test_no_credentials_exit_4(tree: Path, tcat: Any, tcid: str) -> None:
    proc = cli(str(tree), "--host", tcat.hostname, "--catalog", tcid, token=None)
    assert proc.returncode == EXIT_AUTH
    assert _first_error(proc).startswith(f"error: not authenticated (401): GET /ermrest/catalog/{tcid}/schema: "
                                         "Access requires authentication.; pass --token or set")


def test_unknown_catalog_exits_2(tree: Path, tcat: Any) -> None:
    proc = cli(str(tree), "--host", tcat.hostname, "--catalog", "9999")
    assert proc.returncode == EXIT_USAGE
    assert _first_error(proc) == ("error: not found (404): GET /ermrest/catalog/9999/schema: Resource not found. "
                                  "Detail: Catalog 9999 does not exist.; check --host and --catalog")


def test_nothing_listening_exits_3(tree: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = cli(str(tree), "--host", f"localhost:{port}", "--catalog", "1")
    assert proc.returncode == EXIT_UNREACHABLE
    assert _first_error(proc) == (f"error: cannot connect to localhost:{port}: connection refused; is the server "
                                  "running and is the port right?")


def test_one_bad_file_exits_1_and_the_rest_is_uploaded(tree: Path, tcat: Any, tcid: str) -> None:
    [exec_dir] = (tree / "deriva-ml/execution").iterdir()
    bad = exec_dir / "asset/demo-schema/Image/yesterday/__NULL__/__NULL__/bad.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"bad date")
    proc = cli(str(tree), "--host", tcat.hostname, "--catalog", tcid)
    assert proc.returncode == EXIT_FAILED, proc.stderr[-2000:]
    assert "bad.png" in proc.stdout + proc.stderr and "Acquisition_Date" in proc.stdout + proc.stderr
    assert sorted(r["Filename"] for r in _rows(tcat, tcid)) == ["ok0.png", "ok1.png", "ok2.png"]


def test_html_error_pages_from_a_proxy_end_quickly_with_exit_3(tree: Path, tcat: Any, tcid: str) -> None:
    """A reverse proxy answering 502 with an HTML page to everything: a short, clear failure."""
    with FaultProxy(tcat.port, FaultPlan(rules=(Rule("http_502"),), max_lifetime=CLI_TIMEOUT + 30)) as proxy:
        t0 = time.monotonic()
        try:
            proc = cli(str(tree), "--host", proxy.hostname, "--catalog", tcid, timeout=BROKEN_SERVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the CLI was still retrying after {BROKEN_SERVER_TIMEOUT} s against a server answering 502 "
                        f"({len(proxy.records)} requests so far)")
        elapsed = time.monotonic() - t0
    assert proc.returncode == EXIT_UNREACHABLE, proc.stderr[-2000:]
    line = _first_error(proc)
    assert "502" in line and "Bad Gateway" in line and "<" not in line, line
    assert elapsed < BROKEN_SERVER_TIMEOUT
    assert _rows(tcat, tcid) == []
