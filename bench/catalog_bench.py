"""Throughput of the embedded catalog: 4 KB Hatrac PUTs/s and entity-POST rows/s.

Usage::

    python bench/catalog_bench.py [--quick] [--json OUT] [--procs P] [--threads T] [--client httpx|http.client]

Set DERIVA_UPLOAD_HATRAC_FSYNC=0 to measure the store without fsync (not crash-safe).

The catalog runs in its own process (``EmbeddedCatalog(mode="process")``); the load
comes from P client processes with T threads each, every thread one keep-alive
``httpx.Client`` (so P*T requests are in flight).  Client processes keep the client's
GIL out of the measurement; on a 2-core machine the clients still share the CPU with
the server, so the server's own CPU time per request is reported too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from deriva_upload.catalog import EmbeddedCatalog
from deriva_upload.catalog.hatrac import FSYNC_ENV

OBJECT_BYTES = 4096          # the "small file" of the target (>= 1,000 PUT/s)
ROWS_PER_POST = 1000         # one entity POST batch (>= 20,000 rows/s)
ENTITY_TABLE = "demo-schema:Subject"
PUT_TARGET_PER_S = 1000
ROWS_TARGET_PER_S = 20000


class _LeanClient:
    """Keep-alive ``http.client`` connection with the two httpx calls the PUT load needs.

    ``--client http.client`` uses it to show what the server sustains when the client
    costs ~0.1 ms of CPU per request instead of httpx's ~0.75 ms.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        u = httpx.URL(base_url)
        self.conn = http.client.HTTPConnection(u.host, u.port, timeout=timeout)

    def put(self, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        self.conn.request("PUT", path, body=content, headers=headers or {})
        resp = self.conn.getresponse()
        return httpx.Response(resp.status, content=resp.read())

    def __enter__(self) -> "_LeanClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conn.close()


def _put_worker(base_url: str, prefix: str, client_kind: str, per_thread: int, threads: int, ready: Any,
                go: Any, out: Any) -> None:
    """One client process: ``threads`` threads each PUT ``per_thread`` 4 KB objects."""
    data = os.urandom(OBJECT_BYTES)
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    barrier = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        mine: list[float] = []
        client = httpx.Client(base_url=base_url, timeout=60) if client_kind == "httpx" else \
            _LeanClient(base_url, timeout=60)
        with client as c:
            ns = f"{prefix}/t{t}"
            warm = c.put(f"{ns}/warm?parents=true", content=data)  # namespaces + connection
            if warm.status_code != 201:
                raise RuntimeError(f"warm-up PUT failed: {warm.status_code} {warm.text}")
            barrier.wait()
            go.wait()
            for i in range(per_thread):
                t0 = time.perf_counter()
                r = c.put(f"{ns}/o{i}.bin?parents=true", content=data,
                          headers={"Content-Type": "application/octet-stream"})
                mine.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    with lock:
                        errors.append(f"{r.status_code} {r.text.strip()}")
        with lock:
            lat.extend(mine)

    _run_threads(run, barrier, threads, ready, go)
    out.put({"lat": lat, "errors": errors[:5], "n_errors": len(errors)})


def _run_threads(run: Any, barrier: threading.Barrier, threads: int, ready: Any, go: Any) -> None:
    """Start ``threads`` clients, wait until all are connected, report ready, go together, join."""
    ths = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    barrier.wait()
    ready.put(1)
    go.wait()
    for th in ths:
        th.join()


def _post_worker(base_url: str, catalog_id: str, tag: str, per_thread: int, threads: int, ready: Any, go: Any,
                 out: Any) -> None:
    """One client process: ``threads`` threads each POST ``per_thread`` batches of 1,000 rows."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    url = f"/ermrest/catalog/{catalog_id}/entity/{ENTITY_TABLE}?defaults=RID,RCT,RMT,RCB,RMB"

    barrier = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        mine: list[float] = []
        bodies = [json.dumps([{"Name": f"{tag}-{t}-{b}-{i}"} for i in range(ROWS_PER_POST)]).encode()
                  for b in range(per_thread)]
        with httpx.Client(base_url=base_url, timeout=120) as c:
            c.get(f"/ermrest/catalog/{catalog_id}").raise_for_status()  # open the connection
            barrier.wait()
            go.wait()
            for body in bodies:
                t0 = time.perf_counter()
                r = c.post(url, content=body, headers={"Content-Type": "application/json"})
                mine.append(time.perf_counter() - t0)
                if r.status_code != 200 or len(r.json()) != ROWS_PER_POST:
                    with lock:
                        errors.append(f"{r.status_code} {r.text[:200].strip()}")
        with lock:
            lat.extend(mine)

    _run_threads(run, barrier, threads, ready, go)
    out.put({"lat": lat, "errors": errors[:5], "n_errors": len(errors)})


def _server_process(cat: EmbeddedCatalog) -> psutil.Process | None:
    """The catalog's uvicorn process (a child of ours in process mode)."""
    for child in psutil.Process().children(recursive=True):
        try:
            if "deriva_upload.catalog" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return float("nan")
    t = proc.cpu_times()
    return t.user + t.system


def _run_load(target: Any, args: tuple, procs: int, threads: int, server: psutil.Process | None) -> dict:
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=target, args=(*args(p), threads, ready, go, out)) for p in range(procs)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=120)
    cpu0, t0 = _cpu(server), time.perf_counter()
    go.set()
    results = [out.get(timeout=600) for _ in workers]
    wall = time.perf_counter() - t0
    cpu1 = _cpu(server)
    for w in workers:
        w.join()
    lat = sorted(x for r in results for x in r["lat"])
    n_err = sum(r["n_errors"] for r in results)
    return {
        "requests": len(lat),
        "errors": n_err,
        "error_samples": [e for r in results for e in r["errors"]][:5],
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(1000 * statistics.median(lat), 2) if lat else None,
        "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 2) if lat else None,
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "server_cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / max(1, len(lat)), 3),
        "in_flight": procs * threads,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer requests (about 10 s in all)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--threads", type=int, default=4, help="threads (connections) per client process (default 4)")
    p.add_argument("--client", choices=("httpx", "http.client"), default="httpx",
                   help="PUT client (default httpx; http.client costs the shared CPUs far less)")
    args = p.parse_args(argv)
    puts = 4000 if args.quick else 20000
    posts = 16 if args.quick else 80
    nclients = args.procs * args.threads
    per_thread_puts = max(1, puts // nclients)
    per_thread_posts = max(1, posts // nclients)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmp, \
            EmbeddedCatalog(data_dir=Path(tmp), mode="process") as cat:
        server = _server_process(cat)
        base = f"http://127.0.0.1:{cat.port}"
        run = uuid.uuid4().hex[:8]
        put = _run_load(_put_worker, lambda i: (base, f"/hatrac/bench-{run}/p{i}", args.client, per_thread_puts),
                        args.procs, args.threads, server)
        post = _run_load(_post_worker, lambda i: (base, cat.catalog_id, f"{run}-{i}", per_thread_posts),
                         args.procs, args.threads, server)
        post["rows"] = post["requests"] * ROWS_PER_POST
        post["rows_per_s"] = round(post["rows"] / post["wall_s"], 1)
        post["server_cpu_us_per_row"] = round(1e6 * post["server_cpu_s"] / max(1, post["rows"]), 2)

    result = {
        "command": "python bench/catalog_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    # Other work on the machine shares the CPUs with server and clients.
                    "loadavg_1min_before": round(load_before[0], 2),
                    "loadavg_1min_after": round(os.getloadavg()[0], 2)},
        "hatrac_fsync": os.environ.get(FSYNC_ENV, "1").strip().lower() not in ("0", "false", "no", "off"),
        "hatrac_put_4k": {"client": args.client, **put},
        "entity_post_1000_rows": post,
        "targets": {"put_per_s": PUT_TARGET_PER_S, "rows_per_s": ROWS_TARGET_PER_S},
    }
    _print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    failed = put["errors"] or post["errors"]
    return 1 if failed else 0


def _print_table(r: dict) -> None:
    put, post = r["hatrac_put_4k"], r["entity_post_1000_rows"]
    rows = [
        (f"Hatrac PUT 4 KB ({put['client']})", f"{put['requests_per_s']:.0f} req/s", f"target {PUT_TARGET_PER_S}",
         put["requests"], put["errors"], put["p50_ms"], put["p99_ms"], put["server_cpu_ms_per_request"]),
        ("Entity POST 1000 rows", f"{post['rows_per_s']:.0f} rows/s", f"target {ROWS_TARGET_PER_S}",
         post["requests"], post["errors"], post["p50_ms"], post["p99_ms"], post["server_cpu_ms_per_request"]),
    ]
    head = ("workload", "throughput", "target", "requests", "errors", "p50 ms", "p99 ms", "server CPU ms/req")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for line in (head, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    m = r["machine"]
    print(f"in flight: {put['in_flight']} requests; {m['cpus']} CPUs; load average {m['loadavg_1min_before']}"
          f" before, {m['loadavg_1min_after']} after; Hatrac fsync {'on' if r['hatrac_fsync'] else 'off'}")
    for name, part in (("PUT", put), ("POST", post)):
        for e in part["error_samples"]:
            print(f"{name} error sample: {e}")


if __name__ == "__main__":
    sys.exit(main())
