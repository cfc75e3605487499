"""Subprocess driver for the crash/resume tests: run one upload, optionally SIGKILL itself.

    python -m tests.reliability.crash_driver ROOT HOST CATALOG [--crash POINT] [--chunk-size N] ...

The engine has no crash hook of its own, so the driver wraps one engine function per
crash point and sends ``SIGKILL`` to its own process at that moment. A self-sent SIGKILL
is the same event as an outside ``kill -9``: no ``finally``, no ``atexit``, no flush.

Crash points:
  ``hash:N``        while hashing: on the N-th call of the pipeline's ``hash_group``
  ``chunk:I``       mid-chunk: after half of chunk I of a chunked job went out
  ``before_insert`` objects stored, rows not yet inserted (entry of ``_Run.insert_rows``)
  ``insert:N``      mid-insert: right after the server answered the N-th insert batch
``--fsize-limit`` caps the size of every file the process writes (the journal is the
only one), which makes journal writes fail the way a full disk does.
On success the driver prints the report as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


# Piece size the dying chunk body is re-sliced into (the kill lands after half the chunk).
CHUNK_SLICE = 64 * 1024


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_crash(point: str) -> None:
    """Wrap the engine function of ``point`` so the process dies there."""
    from deriva_upload.engine import ermrest as erm_mod
    from deriva_upload.engine import hatrac as hatrac_mod
    from deriva_upload.engine import pipeline

    name, _, arg = point.partition(":")
    if name == "hash":
        calls = {"n": 0}
        original_hash_group = pipeline.hash_group

        def hash_group(*a: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] >= int(arg or 1):
                _die()
            return original_hash_group(*a, **kw)

        pipeline.hash_group = hash_group  # type: ignore[assignment]
    elif name == "chunk":
        target = int(arg or 1)
        original_put_chunk = hatrac_mod.HatracClient.put_chunk

        async def put_chunk(self: Any, job: str, index: int, data: Any, length: int) -> None:
            if index == target and callable(data):
                source = data

                def dying() -> AsyncIterator[bytes]:
                    async def gen() -> AsyncIterator[bytes]:
                        sent = 0
                        async for piece in source():
                            # re-slice: the engine's read size must not decide where we die
                            for k in range(0, len(piece), CHUNK_SLICE):
                                part = piece[k:k + CHUNK_SLICE]
                                yield part
                                sent += len(part)
                                if sent >= length // 2:
                                    await asyncio.sleep(0.2)  # let the first half reach the server
                                    _die()
                    return gen()

                data = dying
            return await original_put_chunk(self, job, index, data, length)

        hatrac_mod.HatracClient.put_chunk = put_chunk  # type: ignore[method-assign]
    elif name == "before_insert":
        original_insert_rows = pipeline._Run.insert_rows

        async def insert_rows(self: Any, rows: Any) -> None:
            if rows:
                _die()
            return await original_insert_rows(self, rows)

        pipeline._Run.insert_rows = insert_rows  # type: ignore[method-assign]
    elif name == "insert":
        batches = {"n": 0}
        original_insert = erm_mod.ErmrestClient.insert

        async def insert(self: Any, *a: Any, **kw: Any) -> Any:
            result = await original_insert(self, *a, **kw)
            batches["n"] += 1
            if batches["n"] >= int(arg or 1):
                _die()
            return result

        erm_mod.ErmrestClient.insert = insert  # type: ignore[method-assign]
    elif name:
        raise SystemExit(f"unknown crash point {point!r}")


def spec_for(host: str, catalog_id: str, chunk_size: int | None) -> dict[str, Any]:
    from deriva.core import ErmrestCatalog

    from deriva_upload.model import DerivaModel
    from deriva_upload.spec import bulk_upload_configuration

    model = DerivaModel.from_catalog(ErmrestCatalog("http", host, catalog_id))
    return bulk_upload_configuration(model, chunk_size=chunk_size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("host")
    ap.add_argument("catalog")
    ap.add_argument("--crash", default="")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--options", default="{}", help="UploadOptions fields as JSON")
    ap.add_argument("--fsize-limit", type=int, default=None,
                    help="RLIMIT_FSIZE in bytes: writes beyond it fail (a full disk for the journal)")
    args = ap.parse_args(argv)

    from deriva_upload.engine.destination import Destination
    from deriva_upload.engine.options import UploadOptions
    from deriva_upload.engine.pipeline import run_upload

    spec = spec_for(args.host, args.catalog, args.chunk_size)
    options = UploadOptions(**{"chunk_size": args.chunk_size, **json.loads(args.options)})
    install_crash(args.crash)
    if args.fsize_limit is not None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    report = run_upload(args.root, spec, Destination("http", args.host, args.catalog), options)
    failed = {p: r.error for p, r in report.failed.items()}
    print(json.dumps({"ok": report.ok, "files": len(report.files), "failed": failed,
                      "actions": _count(r.action for r in report.files.values()),
                      "stats": {"requests": report.stats.requests, "retries": report.stats.retries,
                                "bytes_sent": report.stats.bytes_sent, "elapsed": report.stats.elapsed},
                      "warnings": report.warnings}))
    return 0 if report.ok else 1


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main())
