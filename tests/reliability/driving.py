"""Running the crash driver (and the CLI) as real subprocesses, and reading what they sent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability.helpers import LogLine

REPO = Path(__file__).resolve().parents[2]
DRIVER = "tests.reliability.crash_driver"
DRIVER_TIMEOUT = 180
OBJECT_PUT = re.compile(r"^/hatrac/[^;?]+\?parents=true$")
CHUNK_PUT = re.compile(r";upload/[^/]+/(\d+)$")
JOB_CREATE = re.compile(r";upload\?")


def driver_cmd(root: Path, host: str, cid: str, crash: str = "", chunk: int | None = None,
         options: dict[str, Any] | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", DRIVER, str(root), host, cid, "--options", json.dumps(options or {}), *extra]
    if crash:
        cmd += ["--crash", crash]
    if chunk:
        cmd += ["--chunk-size", str(chunk)]
    return cmd


def driver_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def drive(root: Path, host: str, cid: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(driver_cmd(root, host, cid, **kw), cwd=REPO, env=driver_env(), capture_output=True, text=True,
                          timeout=DRIVER_TIMEOUT)


def driver_report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"rerun failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def object_puts(lines: list[LogLine]) -> Counter[str]:
    return Counter(ln.path.split("?")[0] for ln in lines
                   if ln.method == "PUT" and OBJECT_PUT.match(ln.path) and ln.status == 201)


def chunk_indices(lines: list[LogLine], ok_only: bool) -> list[int]:
    out = []
    for ln in lines:
        m = CHUNK_PUT.search(ln.path)
        if ln.method == "PUT" and m and (not ok_only or 200 <= ln.status < 300):
            out.append(int(m.group(1)))
    return out


def crash_at(root: Path, rcat: Any, cid: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = drive(root, rcat.hostname, cid, **kw)
    assert proc.returncode == -signal.SIGKILL, (
        f"the driver should have died by SIGKILL at {kw.get('crash')!r}, got rc={proc.returncode}:\n"
        f"{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc
