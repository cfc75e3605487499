"""No-op rerun benchmark (issue #8 item 3): upload N files, then rerun with nothing changed.

Measures, against an embedded catalog in its own process with its request log on:
the first run's time, the rerun's time and its fraction of the first, and what the
rerun sent (requests by kind, request body bytes, object bytes) as the *server* saw it.
Then changes one file's mtime and one file's content and reruns again (re-hash and
upload of exactly those).

Usage::

    python bench/noop_rerun_bench.py [--files 10000] [--size 1024] [--json OUT] [--results]

``--results`` appends a row to the ``## Reliability`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Reliability"
EXEC_RID = "1-BNCH"


def _log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _write_tree(root: Path, model: Any, n: int, size: int) -> list[Path]:
    from deriva_upload import layout

    table = model.name_to_table("Image")
    directory = layout.asset_file_path(root, EXEC_RID, table, "x", {}).parent
    paths = []
    for i in range(n):
        head = f"bench file {i}\n".encode()
        p = directory / f"f{i:06d}.txt"
        p.write_bytes((head + b"x" * size)[:size])
        paths.append(p)
    return paths


def _upload(root: Path, spec: dict[str, Any], host: str, cid: str) -> tuple[Any, float]:
    from deriva_upload.engine.destination import Destination
    from deriva_upload.engine.options import UploadOptions
    from deriva_upload.engine.pipeline import run_upload

    t0 = time.perf_counter()
    report = run_upload(root, spec, Destination("http", host, cid), UploadOptions())
    return report, time.perf_counter() - t0


def _sent(lines: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = Counter(f"{ln['method']} {ln['path'].split('/')[1]}" for ln in lines)
    return {"requests": len(lines), "request_body_bytes": sum(int(ln.get("req_bytes", 0)) for ln in lines),
            "object_puts": sum(1 for ln in lines if ln["method"] == "PUT" and ln["path"].startswith("/hatrac/")),
            "by_kind": dict(kinds)}


def run(n_files: int, size: int) -> dict[str, Any]:
    from deriva.core import ErmrestCatalog

    from deriva_upload.catalog import EmbeddedCatalog
    from deriva_upload.model import DerivaModel
    from deriva_upload.spec import bulk_upload_configuration

    with tempfile.TemporaryDirectory(prefix="noop-bench-") as tmp:
        base = Path(tmp)
        log_path = base / "requests.jsonl"
        with EmbeddedCatalog(data_dir=base / "catalog", request_log=log_path, mode="process") as cat:
            cid = cat.create_catalog()
            model = DerivaModel.from_catalog(ErmrestCatalog("http", cat.hostname, cid))
            spec = bulk_upload_configuration(model)
            root = base / "up"
            paths = _write_tree(root, model, n_files, size)

            first, t_first = _upload(root, spec, cat.hostname, cid)
            m1 = len(_log(log_path))
            again, t_again = _upload(root, spec, cat.hostname, cid)
            time.sleep(0.3)
            m2 = len(_log(log_path))
            noop = _sent(_log(log_path)[m1:m2])

            os.utime(paths[1], ns=(paths[1].stat().st_atime_ns, paths[1].stat().st_mtime_ns + 5_000_000_000))
            paths[2].write_bytes(paths[2].read_bytes() + b"changed")
            changed, t_changed = _upload(root, spec, cat.hostname, cid)
            time.sleep(0.3)
            after_change = _sent(_log(log_path)[m2:])

    return {
        "files": n_files, "file_size": size, "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "first_s": round(t_first, 3), "first_ok": first.ok, "first_requests": first.stats.requests,
        "rerun_s": round(t_again, 3), "rerun_ok": again.ok, "rerun_fraction": round(t_again / t_first, 4),
        "rerun_bytes_sent": again.stats.bytes_sent, "rerun_server_view": noop,
        "changed_rerun_s": round(t_changed, 3), "changed_ok": changed.ok,
        "changed_server_view": after_change,
        "changed_actions": dict(Counter(r.action for r in changed.files.values())),
    }


def append_results(fig: dict[str, Any]) -> None:
    """Add a row to the Reliability section of RESULTS.md (creating the section if needed)."""
    header = ("| date (UTC) | files | first run | no-op rerun | fraction | rerun requests | rerun body bytes "
              "| object PUTs | machine |\n|---|---|---|---|---|---|---|---|---|\n")
    row = (f"| {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} | {fig['files']} | {fig['first_s']:.2f} s "
           f"| {fig['rerun_s']:.3f} s | {100 * fig['rerun_fraction']:.1f} % | {fig['rerun_server_view']['requests']} "
           f"| {fig['rerun_server_view']['request_body_bytes']} | {fig['rerun_server_view']['object_puts']} "
           f"| {fig['machine']} |\n")
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION not in text:
        text = text.rstrip("\n") + (
            f"\n\n{SECTION}\n\nNo-op rerun (`python bench/noop_rerun_bench.py --files 10000 --results`): a "
            "finished upload run again with nothing changed. Requests and bytes are counted by the server "
            "(embedded catalog request log).\n\n" + header)
    start = text.index(SECTION)
    nxt = text.find("\n## ", start + len(SECTION))
    end = len(text) if nxt == -1 else nxt + 1
    section = text[start:end].rstrip("\n") + "\n" + row
    text = text[:start] + section + ("\n" + text[end:] if nxt != -1 else "")
    RESULTS.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--results", action="store_true", help="append a row to bench/RESULTS.md")
    args = ap.parse_args()
    fig = run(args.files, args.size)
    text = json.dumps(fig, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.results:
        append_results(fig)


if __name__ == "__main__":
    main()
