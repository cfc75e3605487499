"""Upload benchmark: deriva-py's GenericUploader (the seed's path) against our engine.

One script, one run, one embedded catalog (process mode), fresh data and a fresh
catalog for each side of each case, each side in its own subprocess (so peak RSS is
per side):

  (a) N x 4 KB files with two metadata columns            (N = --files, default 2,000)
  (b) 200 x 1 MiB files
  (c) one 1 GiB file (64 MiB with --quick), plus the single-pass md5+sha256 time (floor)
  (d) case (a) with 50 ms of round-trip latency added by a delaying loopback proxy

Usage::

    python bench/upload_bench.py [--quick] [--files N] [--json OUT] [--cases abcd] [--no-baseline]

``--json`` writes a list of ``{"case", "files", "bytes", "ours_s", "genericuploader_s",
"ratio", "ours_peak_rss_mb", "hash_floor_s", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

MiB = 1024 * 1024
# Case (d): 25 ms each way = 50 ms round trip.
ONE_WAY_DELAY = 0.025
# Read size of the hash-floor measurement (same as the engine's large-file reads).
FLOOR_READ = 8 * MiB
HERE = Path(__file__).resolve().parent


# -- data ---------------------------------------------------------------------------------


def lease(base_url: str, catalog_id: str, n: int) -> list[str]:
    """Lease ``n`` RIDs (the layout's RID directory; the seed's spec requires one)."""
    rids: list[str] = []
    with httpx.Client(base_url=base_url, timeout=120) as c:
        while len(rids) < n:
            k = min(500, n - len(rids))
            r = c.post(f"/ermrest/catalog/{catalog_id}/entity/public:ERMrest_RID_Lease",
                       json=[{"ID": f"bench-{len(rids) + i}-{random.random()}"} for i in range(k)])
            r.raise_for_status()
            rids.extend(row["RID"] for row in r.json())
    return rids


def make_case(root: Path, case: str, n: int, big: int, rids: list[str], seed: int) -> tuple[int, int]:
    """Write the files of one case under ``root``; returns (files, bytes)."""
    rng = random.Random(seed)
    ex = root / "deriva-ml" / "execution" / "1-BENCH" / "asset"
    total = 0
    if case in ("a", "d"):
        for i in range(n):
            day = f"2024-01-{1 + i % 28:02d}"
            when = f"{day}T{i % 24:02d}:{i % 60:02d}:00"
            d = ex / "demo-schema" / "Image" / day / when / "__NULL__" / rids[i]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"img{i:06d}.dat").write_bytes(rng.randbytes(4096))
            total += 4096
        return n, total
    if case == "b":
        for i in range(200):
            d = ex / "deriva-ml" / "Execution_Asset" / rids[i]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"blob{i:04d}.bin").write_bytes(rng.randbytes(MiB))
            total += MiB
        return 200, total
    if case == "c":
        d = ex / "deriva-ml" / "Execution_Asset" / rids[0]
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "big.bin", "wb") as f:
            left = big
            while left:
                k = min(16 * MiB, left)
                f.write(rng.randbytes(k))
                left -= k
        return 1, big
    raise ValueError(case)


def hash_floor(path: Path) -> float:
    """Seconds for one read of ``path`` updating MD5 and SHA-256 (the least any uploader must do)."""
    t = time.perf_counter()
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while buf := f.read(FLOOR_READ):
            md5.update(buf)
            sha.update(buf)
    return time.perf_counter() - t


# -- latency proxy ----------------------------------------------------------------------------


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(256 * 1024)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                break
    except ConnectionError:
        await queue.put((0.0, b""))
    await task


async def _proxy(listen: int, upstream: int, delay: float) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            w.close()
            return
        for s in (w, uw):
            sock = s.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pump(r, uw, delay), _pump(ur, w, delay), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def start_proxy(upstream_port: int, delay: float) -> tuple[subprocess.Popen, int]:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen([sys.executable, __file__, "--proxy", str(port), str(upstream_port), str(delay)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("latency proxy did not start")
    return proc, port


# -- workers (one per side, in a subprocess) ---------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(side: str, root: str, scheme: str, host: str, catalog_id: str, profile: str | None,
           workers: int | None) -> dict[str, Any]:
    from deriva.core import ErmrestCatalog

    from deriva_upload.model import DerivaModel

    model = DerivaModel.from_catalog(ErmrestCatalog(scheme, host, catalog_id))
    if side == "gu":
        import requests.adapters

        from deriva_upload.api import upload_directory

        counter = {"n": 0}
        real_send = requests.adapters.HTTPAdapter.send

        def send(self, request, **kw):  # count every request GenericUploader sends
            counter["n"] += 1
            return real_send(self, request, **kw)

        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
        cred = Path(tempfile.mkdtemp()) / "credential.json"
        cred.write_text(json.dumps({host: {"cookie": "webauthn=bench"}}))
        t, c = time.perf_counter(), time.process_time()
        res = upload_directory(model, root, engine="deriva-py", credential_file=str(cred))
        elapsed, cpu = time.perf_counter() - t, time.process_time() - c
        return {"elapsed": elapsed, "cpu": cpu, "requests": counter["n"], "files": len(res or {}),
                "peak_rss_mb": peak_rss_mb()}
    from deriva_upload.engine.destination import Destination
    from deriva_upload.engine.options import UploadOptions
    from deriva_upload.engine.pipeline import run_upload
    from deriva_upload.spec import bulk_upload_configuration

    spec = bulk_upload_configuration(model)
    opts = UploadOptions() if workers is None else UploadOptions(workers=workers)
    dest = Destination(scheme, host, catalog_id)
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
    t, c = time.perf_counter(), time.process_time()
    report = run_upload(root, spec, dest, opts)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, color=False))
    if report.failed:
        first = next(iter(report.failed.values()))
        raise SystemExit(f"our engine failed {len(report.failed)} file(s): {first.error}")
    return {"elapsed": elapsed, "cpu": cpu, "requests": report.stats.requests, "files": len(report.files),
            "peak_rss_mb": peak_rss_mb(), "phases": report.stats.phases, "retries": report.stats.retries}


def run_side(side: str, root: Path, scheme: str, host: str, catalog_id: str, profile: Path | None,
             workers: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", side, "--root", str(root), "--scheme", scheme, "--host", host,
           "--catalog", catalog_id]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI-sized run: 200 small files, 64 MiB large file")
    ap.add_argument("--files", type=int, default=None, help="small files in cases (a) and (d) (default 2000)")
    ap.add_argument("--latency-files", type=int, default=None, help="files in case (d) (default: --files)")
    ap.add_argument("--big-mib", type=int, default=None, help="size of the case (c) file in MiB (default 1024)")
    ap.add_argument("--cases", default="abcd", help="which cases to run, e.g. 'ac'")
    ap.add_argument("--no-baseline", action="store_true", help="skip GenericUploader (e.g. 100,000 files)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as a JSON list here")
    ap.add_argument("--profile", type=Path, default=None, help="pyinstrument text profile of our side, per case")
    ap.add_argument("--workers", type=int, default=None, help="our engine's concurrent requests")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    # internal modes
    ap.add_argument("--worker", choices=["ours", "gu"], help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--scheme", help=argparse.SUPPRESS)
    ap.add_argument("--host", help=argparse.SUPPRESS)
    ap.add_argument("--catalog", help=argparse.SUPPRESS)
    ap.add_argument("--proxy", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.proxy:
        listen, upstream, delay = args.proxy
        asyncio.run(_proxy(int(listen), int(upstream), float(delay)))
        return 0
    if args.worker:
        out = worker(args.worker, args.root, args.scheme, args.host, args.catalog,
                     str(args.profile) if args.profile else None, args.workers)
        print(json.dumps(out))
        return 0

    from deriva_upload.catalog import EmbeddedCatalog

    n_small = args.files or (200 if args.quick else 2000)
    n_latency = args.latency_files or n_small
    big = (args.big_mib or (64 if args.quick else 1024)) * MiB
    tmp = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    results: list[dict[str, Any]] = []
    try:
        with EmbeddedCatalog(data_dir=tmp / "catalog", mode="process") as cat:
            print(f"embedded catalog at {cat.base_url} (process mode); data in {tmp}", flush=True)
            for case in args.cases:
                n = n_latency if case == "d" else n_small
                proxy = None
                host = cat.hostname
                if case == "d":
                    proxy, pport = start_proxy(cat.port, ONE_WAY_DELAY)
                    host = f"localhost:{pport}"
                row: dict[str, Any] = {"case": case, "files": None, "bytes": None, "ours_s": None,
                                       "genericuploader_s": None, "ratio": None, "ours_peak_rss_mb": None,
                                       "genericuploader_peak_rss_mb": None, "ours_requests": None,
                                       "genericuploader_requests": None, "hash_floor_s": None}
                try:
                    sides = ["ours"] if args.no_baseline else ["gu", "ours"]
                    for side in sides:
                        cid = cat.create_catalog()
                        root = tmp / f"case-{case}-{side}"
                        rids = lease(cat.base_url, cid, n if case in "ad" else 200)
                        files, nbytes = make_case(root, case, n, big, rids, seed=hash((case, side)) & 0xFFFF)
                        row["files"], row["bytes"] = files, nbytes
                        if case == "c" and row["hash_floor_s"] is None:
                            bigfile = next(root.rglob("big.bin"))
                            hash_floor(bigfile)  # warm the page cache like the uploaders will find it
                            row["hash_floor_s"] = round(hash_floor(bigfile), 3)
                        prof = args.profile.with_name(f"{args.profile.stem}-{case}.txt") if (
                            args.profile and side == "ours") else None
                        print(f"case {case}: {side} uploading {files} file(s), {nbytes / MiB:.1f} MiB ...", flush=True)
                        res = run_side(side, root, cat.scheme, host, cid, prof, args.workers)
                        key = "ours" if side == "ours" else "genericuploader"
                        row[f"{key}_s"] = round(res["elapsed"], 3)
                        row[f"{key}_peak_rss_mb"] = round(res["peak_rss_mb"], 1)
                        row[f"{key}_requests"] = res["requests"]
                        row[f"{key}_cpu_s"] = round(res["cpu"], 3)
                        if side == "ours":
                            row["ours_phases"] = {k: round(v, 3) for k, v in (res.get("phases") or {}).items()}
                        phases = " ".join(f"{k}={v:.2f}" for k, v in (res.get("phases") or {}).items())
                        print(f"  {side}: {res['elapsed']:.2f}s (cpu {res['cpu']:.2f}s), {res['requests']} requests, "
                              f"peak RSS {res['peak_rss_mb']:.0f} MB {phases}", flush=True)
                        shutil.rmtree(root, ignore_errors=True)
                finally:
                    if proxy is not None:
                        proxy.terminate()
                        proxy.wait()
                if row["ours_s"] and row["genericuploader_s"]:
                    row["ratio"] = round(row["genericuploader_s"] / row["ours_s"], 2)
                if row["hash_floor_s"] and row["ours_s"]:
                    row["ours_over_floor"] = round(row["ours_s"] / row["hash_floor_s"], 2)
                results.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"{'case':<5}{'files':>8}{'MiB':>9}{'GU s':>10}{'ours s':>9}{'ratio':>8}{'ours req':>10}"
          f"{'GU req':>9}{'RSS MB':>8}{'floor s':>9}")
    for r in results:
        def f(v: Any, fmt: str) -> str:
            return format(v, fmt) if v is not None else "-"
        print(f"{r['case']:<5}{r['files']:>8}{r['bytes'] / MiB:>9.1f}{f(r['genericuploader_s'], '>10.2f')}"
              f"{f(r['ours_s'], '>9.2f')}{f(r['ratio'], '>8.1f')}{f(r['ours_requests'], '>10')}"
              f"{f(r['genericuploader_requests'], '>9')}{f(r['ours_peak_rss_mb'], '>8.0f')}"
              f"{f(r['hash_floor_s'], '>9.2f')}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
