"""The lean HTTP/1.1 object client against the embedded catalog, directly and through faults."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from deriva_upload.engine.destination import Destination
from deriva_upload.engine.hatrac import HatracClient
from deriva_upload.engine.http1 import FastTransport
from deriva_upload.engine.items import Digests
from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import file_stream, run_upload
from deriva_upload.engine.retry import RetryPolicy
from deriva_upload.errors import ServerError, TransientError
from tests.integration.engine_support import ML, asset_rel, make_target, write
from tests.support.faultproxy import FaultPlan, FaultProxy, Rule

FAST = RetryPolicy(max_retries=3, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture(scope="module")
def server(embedded_catalog):
    """The shared session catalog (tests/conftest.py); each test makes its own catalog id."""
    return embedded_catalog


def _digests(data: bytes) -> Digests:
    return Digests(hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())


def test_put_head_get_and_chunked_job(server, tmp_path: Path) -> None:
    dest = Destination(server.scheme, server.hostname, server.catalog_id)
    data = os.urandom(3000)
    d = _digests(data)
    big = tmp_path / "big"
    big.write_bytes(data)

    async def run() -> None:
        async with FastTransport(dest, FAST, max_connections=2) as ft:
            hc = HatracClient(ft)
            name = f"/hatrac/http1test/{d.md5}.bin"
            assert await hc.head(name) is None
            ver = await hc.put(name, data, len(data), d, "application/octet-stream", "filename*=UTF-8''x.bin")
            assert ver.startswith(name + ":")
            info = await hc.head(name)
            assert info is not None and info.location == ver and info.matches(d) and info.length == 3000
            got = await ft.request("GET", ver, expect=(200,))
            assert got.content == data and got.headers["Content-Type"] == "application/octet-stream"
            job = await hc.create_job(name + "j", len(data), 1024, d, "application/octet-stream", None)
            for i in range(3):
                n = min(1024, len(data) - i * 1024)
                await hc.put_chunk(job, i, file_stream(big, i * 1024, n), n)
            ver2 = await hc.finalize(job, name + "j", d)
            assert (await hc.head(ver2)).matches(d)
            for body in (b"x", b"y" * (2 << 20)):  # a client error fails fast with the server's message
                with pytest.raises(ServerError) as e:
                    await ft.request("PUT", "/hatrac/bad!name", content=body)
                assert e.value.status == 400 and not isinstance(e.value, TransientError)
            assert ft.stats.requests >= 8 and ft.stats.retries == 0

    asyncio.run(run())


def test_retries_transient_faults_and_stale_connections(server) -> None:
    plan = FaultPlan(rules=(Rule("http_503", method="PUT", times=2), Rule("reset", method="PUT", skip=1, times=1),
                            Rule("http_429_retry_after", method="HEAD", times=1)))
    with FaultProxy(server.port, plan) as proxy:
        dest = Destination("http", proxy.hostname, server.catalog_id)

        async def run() -> None:
            async with FastTransport(dest, FAST, max_connections=1) as ft:
                hc = HatracClient(ft)
                for i in range(4):
                    body = f"fault {i} {os.urandom(4).hex()}".encode()
                    d = _digests(body)
                    ver = await hc.put(f"/hatrac/http1faults/{d.md5}", body, len(body), d, "text/plain", None)
                    assert (await hc.head(ver)).matches(d)
                assert ft.stats.retries >= 3

        asyncio.run(run())


def test_gives_up_after_max_retries(server) -> None:
    plan = FaultPlan(rules=(Rule("http_503", method="PUT"),))
    with FaultProxy(server.port, plan) as proxy:
        dest = Destination("http", proxy.hostname, server.catalog_id)

        async def run() -> None:
            async with FastTransport(dest, RetryPolicy(max_retries=2, backoff_initial=0.01), max_connections=1) as ft:
                with pytest.raises(TransientError, match="503 after 3 attempt"):
                    await ft.request("PUT", "/hatrac/x/y", content=b"abc")
                assert ft.stats.requests == 3

        asyncio.run(run())


def test_upload_through_faults_leaves_one_row_per_file(server, tmp_path: Path) -> None:
    target = make_target(server)
    kinds = ("reset", "http_503", "http_502", "truncate", "delay_after_commit")
    plan = FaultPlan(rates={k: 0.03 for k in kinds}, seed=7, hold_seconds=1.0,
                     rules=(Rule("delay_after_commit", method="POST", path="/entity/", times=1),  # lost insert answer
                            Rule("reset", method="PUT", skip=3, times=2)))
    for i in range(30):
        write(tmp_path, asset_rel("Execution_Metadata", f"f{i:02d}.txt", schema=ML), f"file {i}".encode())
    with FaultProxy(server.port, plan) as proxy:
        dest = Destination("http", proxy.hostname, target.catalog_id)
        opts = UploadOptions(retry_delay=0.01, max_retries=8, timeout=0.5, workers=4)
        report = run_upload(tmp_path, target.spec(), dest, opts)
        if report.failed:  # a file may exhaust its retries; a rerun must finish it without duplicates
            report = run_upload(tmp_path, target.spec(), dest, opts)
        summary = proxy.summary()
    assert summary["faults_total"] >= 3 and summary["faults"].get("delay_after_commit", 0) >= 1, summary
    assert report.failed == {}, report.to_json()
    rows = target.rows(ML, "Execution_Metadata")
    assert sorted(r["Filename"] for r in rows) == [f"f{i:02d}.txt" for i in range(30)]
