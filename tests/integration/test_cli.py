"""The CLI against a real embedded catalog: typer's runner in process, and real subprocesses.

Covers the issue's list: demo end to end (twice: the second run finds everything
present), upload/plan/status/verify on a staged execution, plan writes nothing, verify
detects a changed file, shards split the files, serve answers, and bad inputs give the
documented exit code with one line and no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deriva_upload import cli, demo
from deriva_upload.catalog import EmbeddedCatalog
from deriva_upload.model import DerivaModel

runner = CliRunner()
N_IMAGES = 12
# Subprocess runs get a generous cap: the machine is shared and the demo starts a server.
SUBPROCESS_TIMEOUT = 120


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(cli.TOKEN_ENV_VAR, None)
    env["COLUMNS"] = "120"
    return env


def run_cli(*args: str, timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    """``python -m deriva_upload.cli ARGS`` as a user would run it (not a terminal: plain output)."""
    return subprocess.run([sys.executable, "-m", "deriva_upload.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def invoke(*args: str):
    result = runner.invoke(cli.app, list(args), env={cli.TOKEN_ENV_VAR: ""})
    return result


@pytest.fixture
def staged(fresh_catalog, tmp_path):
    """A small demo execution staged under ``tmp_path/prefix`` for the fresh catalog."""
    ermrest = fresh_catalog.ermrest_catalog()
    model = DerivaModel.from_catalog(ermrest)
    exec_rid, subjects = demo.prepare_catalog(ermrest, n_subjects=3)
    rids = demo.lease_rids(ermrest, demo.rids_needed(N_IMAGES))
    prefix = tmp_path / "prefix"
    staging = demo.stage_execution(prefix, exec_rid, model, subjects, n_images=N_IMAGES, large_bytes=300_000,
                                   rids=rids)
    return fresh_catalog, prefix, staging


def _target_args(handle) -> list[str]:
    return ["--host", handle.hostname, "--catalog", handle.catalog_id]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _count(handle, table: str) -> int:
    with httpx.Client(base_url=handle.base_url) as c:
        r = c.get(f"/ermrest/catalog/{handle.catalog_id}/aggregate/{table}/n:=cnt(*)")
        r.raise_for_status()
        return r.json()[0]["n"]


# -- plan / upload / status / verify ---------------------------------------------------------


def test_plan_writes_nothing(staged, tmp_path):
    handle, prefix, staging = staged
    before = _tree(prefix)
    images_before = _count(handle, "demo-schema:Image")
    result = invoke("plan", str(prefix), *_target_args(handle), "--json", str(tmp_path / "plan.json"))
    assert result.exit_code == 0, result.output
    assert _tree(prefix) == before  # no journal, no ledger, nothing
    assert not list(prefix.rglob(".deriva-upload"))
    assert _count(handle, "demo-schema:Image") == images_before == 0
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["dry_run"] is True
    plan = next(iter(doc["plans"].values()))
    assert plan["tables"]["demo-schema:Image"]["to_upload"] == N_IMAGES
    assert plan["tables"]["deriva-ml:Execution_Asset"]["upload_bytes"] == 300_000
    assert plan["total_files"] == staging.files
    assert doc["rows"]["demo-schema:Execution_Image_Quality"] == N_IMAGES
    text = " ".join(result.output.split())
    assert "demo-schema:Image" in text and "to upload" in text


def test_upload_status_verify_and_rerun(staged, tmp_path):
    handle, prefix, staging = staged
    result = invoke("upload", str(prefix), *_target_args(handle), "--json", str(tmp_path / "up.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "up.json").read_text())
    tables = doc["summary"]["tables"]
    assert tables["demo-schema:Image"]["inserted"] == N_IMAGES
    assert tables["demo-schema:Execution_Image_Quality"]["inserted"] == N_IMAGES
    assert doc["summary"]["failed"] == 0
    assert _count(handle, "demo-schema:Image") == N_IMAGES
    assert "demo-schema:Image: inserted 12, already present 0, failed 0" in result.output

    result = invoke("status", str(prefix))
    assert result.exit_code == 0, result.output
    assert f"done {staging.files} " in result.output and "failed 0" in result.output
    assert f"/ermrest/catalog/{handle.catalog_id}" in result.output

    result = invoke("verify", str(prefix), *_target_args(handle))
    assert result.exit_code == 0, result.output
    assert f"verified: {staging.files} file(s)" in result.output

    result = invoke("upload", str(prefix), *_target_args(handle), "--json", str(tmp_path / "again.json"))
    assert result.exit_code == 0, result.output
    tables = json.loads((tmp_path / "again.json").read_text())["summary"]["tables"]
    assert all(t["inserted"] == 0 for t in tables.values()), tables
    assert tables["demo-schema:Image"]["present"] == N_IMAGES
    assert _count(handle, "demo-schema:Image") == N_IMAGES


def test_verify_detects_a_changed_file(staged):
    handle, prefix, staging = staged
    assert invoke("upload", str(prefix), *_target_args(handle)).exit_code == 0
    victim = next(prefix.rglob("scan_00003.png"))
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    victim.write_bytes(bytes(data))
    proc = run_cli("verify", str(prefix), *_target_args(handle))
    assert proc.returncode == cli.EXIT_FAILED, proc.stdout + proc.stderr
    assert "verify failed: 1 file(s) do not match the catalog" in proc.stdout
    assert "scan_00003.png" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_shards_split_the_assets_and_a_final_run_links_them(staged, tmp_path):
    handle, prefix, staging = staged
    sent: list[set[str]] = []
    for i in range(2):
        result = invoke("upload", str(prefix), *_target_args(handle), "--shard", f"{i}/2",
                        "--json", str(tmp_path / f"s{i}.json"))
        assert result.exit_code == 0, result.output
        assert "run once without --shard" in " ".join(result.output.split())
        doc = json.loads((tmp_path / f"s{i}.json").read_text())
        sent.append({p for rep in doc["executions"].values() for p in rep["files"]})
    assert sent[0] and sent[1] and not (sent[0] & sent[1])
    assert len(sent[0] | sent[1]) == staging.files
    assert _count(handle, "demo-schema:Image") == N_IMAGES
    assert _count(handle, "demo-schema:Image_Execution") == 0  # links wait for the final run
    journals = cli.read_journals(prefix)
    assert sorted(Path(j["path"]).parent.name for j in journals) == ["shard-0-of-2", "shard-1-of-2"]
    assert sum(len(j["files"]) for j in journals) == staging.files
    result = invoke("status", str(prefix))
    assert result.exit_code == 0 and result.output.count("partial 0, pending 0, failed 0") == 2, result.output
    result = invoke("upload", str(prefix), *_target_args(handle), "--json", str(tmp_path / "final.json"))
    assert result.exit_code == 0, result.output
    tables = json.loads((tmp_path / "final.json").read_text())["summary"]["tables"]
    assert tables["demo-schema:Image"] == {"inserted": 0, "present": N_IMAGES, "failed": 0, "bytes": 0}
    assert _count(handle, "demo-schema:Image_Execution") == N_IMAGES


def test_generic_tree_upload(staged, tmp_path):
    """A directory that is not an execution: uploaded through the spec alone (assets only)."""
    handle, prefix, staging = staged
    asset_dir = prefix / "deriva-ml" / "execution" / staging.execution_rid / "asset"
    result = invoke("upload", str(asset_dir), *_target_args(handle), "--json", str(tmp_path / "g.json"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["summary"]["tables"]["demo-schema:Image"]["inserted"] == N_IMAGES
    assert _count(handle, "demo-schema:Image") == N_IMAGES


# -- demo, serve ---------------------------------------------------------------------------------


def test_demo_end_to_end_twice(tmp_path):
    data = tmp_path / "demo"
    first = run_cli("demo", "--files", "20", "--large-mb", "1", "--data-dir", str(data),
                    "--json", str(tmp_path / "d1.json"))
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "demo-schema:Image: inserted 20, already present 0, failed 0" in out
    assert "verified: 23 file(s)" in out
    assert "row counts match" in out
    assert f"deriva-upload serve --data-dir {data / 'catalog'}" in out
    assert "curl 'http://localhost:8080/ermrest/catalog/1/entity/demo-schema:Image" in out
    assert "Traceback" not in first.stderr
    doc = json.loads((tmp_path / "d1.json").read_text())
    assert all(c["ok"] for c in doc["row_counts"])
    assert doc["staging"]["null_values"] > 0

    second = run_cli("demo", "--data-dir", str(data), "--json", str(tmp_path / "d2.json"))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "re-using execution" in second.stderr
    tables = json.loads((tmp_path / "d2.json").read_text())["upload"]["summary"]["tables"]
    assert all(t["inserted"] == 0 and t["failed"] == 0 for t in tables.values()), tables
    assert tables["demo-schema:Image"]["present"] == 20


def test_serve_runs_in_the_foreground_until_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "deriva_upload.cli", "serve", "--port", "0",
                             "--data-dir", str(tmp_path / "cat")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        line = proc.stdout.readline()
        assert "embedded catalog running at http://localhost:" in line, line + proc.stderr.read()
        base = line.split(" at ", 1)[1].split()[0]
        r = httpx.get(f"{base}/ermrest/catalog/1/schema", timeout=10)
        assert r.status_code == 200 and "demo-schema" in r.json()["schemas"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0


# -- bad inputs: documented exit code, one line, no traceback ---------------------------------


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def test_missing_directory_exit_2(tmp_path):
    proc = run_cli("upload", str(tmp_path / "nope"), "--host", "localhost:1")
    assert proc.returncode == 2
    assert "does not exist" in _one_error_line(proc)


def test_bad_shard_exit_2(tmp_path):
    proc = run_cli("plan", str(tmp_path), "--host", "localhost:1", "--shard", "2/2")
    assert proc.returncode == 2
    assert "--shard '2/2'" in _one_error_line(proc)


def test_unknown_host_exit_3(tmp_path):
    proc = run_cli("upload", str(tmp_path), "--host", "no-such-host.invalid")
    assert proc.returncode == 3
    assert "unknown host no-such-host.invalid" in _one_error_line(proc)


def test_connection_refused_exit_3(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("verify", str(tmp_path), "--host", f"localhost:{port}")
    assert proc.returncode == 3
    assert "connection refused" in _one_error_line(proc)


def test_wrong_token_exit_4_and_token_never_printed(tmp_path):
    secret = "tok-Very-Secret-123"
    with EmbeddedCatalog(data_dir=tmp_path / "cat", token="the-right-token") as cat:
        proc = run_cli("upload", str(tmp_path), "--host", cat.hostname, "--token", secret)
        assert proc.returncode == 4, proc.stderr
        line = _one_error_line(proc)
        assert "401" in line or "403" in line
        assert "--token" in line and cli.TOKEN_ENV_VAR in line
        assert secret not in proc.stdout + proc.stderr
        debug = run_cli("upload", str(tmp_path), "--host", cat.hostname, "--token", secret, "--debug")
        assert debug.returncode == 4
        assert secret not in debug.stdout + debug.stderr
        # the right token from the environment works (an empty tree: nothing to do)
        env = _env() | {cli.TOKEN_ENV_VAR: "the-right-token"}
        (tmp_path / "empty").mkdir()
        ok = subprocess.run([sys.executable, "-m", "deriva_upload.cli", "plan", str(tmp_path / "empty"),
                             "--host", cat.hostname], capture_output=True, text=True, env=env,
                            timeout=SUBPROCESS_TIMEOUT)
        assert ok.returncode == 0, ok.stderr


def test_a_failing_file_exits_1_and_is_listed(fresh_catalog, tmp_path):
    """An image whose Subject RID does not exist: its row is refused, the run says so, exit 1."""
    leaf = tmp_path / "tree" / "deriva-ml" / "execution" / "X1" / "asset" / "demo-schema" / "Image" / \
        "2024-01-01" / "__NULL__" / "NOPE-1234"
    leaf.mkdir(parents=True)
    (leaf / "a.png").write_bytes(demo.tiny_png(1))
    root = tmp_path / "tree" / "deriva-ml" / "execution" / "X1" / "asset"
    proc = run_cli("upload", str(root), *_target_args(fresh_catalog))
    assert proc.returncode == cli.EXIT_FAILED, proc.stdout + proc.stderr
    assert "demo-schema:Image: inserted 0, already present 0, failed 1" in proc.stdout
    assert "failed (1):" in proc.stderr and "a.png" in proc.stderr
    status = run_cli("status", str(tmp_path / "tree"))
    assert status.returncode == cli.EXIT_FAILED
    assert "failed 1" in status.stdout and "foreign key" in " ".join(status.stdout.split()).lower()


def test_execution_not_in_catalog_is_a_spec_mismatch_exit_2(fresh_catalog, tmp_path):
    leaf = tmp_path / "deriva-ml" / "execution" / "ZZZZ" / "asset" / "deriva-ml" / "Execution_Asset"
    leaf.mkdir(parents=True)
    (leaf / "model.bin").write_bytes(b"weights")
    proc = run_cli("upload", str(tmp_path), *_target_args(fresh_catalog))
    assert proc.returncode == cli.EXIT_USAGE
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "ZZZZ does not exist in deriva-ml:Execution" in line[0]
    assert "Traceback" not in proc.stderr


def test_a_tree_with_nothing_to_upload_is_a_usage_error(fresh_catalog, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an asset")
    result = invoke("upload", str(tmp_path / "notes"), *_target_args(fresh_catalog))
    assert result.exit_code == cli.EXIT_USAGE, result.output
    assert "nothing to upload: none of the 1 file(s)" in " ".join(result.output.split())


@pytest.mark.parametrize("args,needle", [
    (["bogus"], "No such command 'bogus'"),
    (["demo", "--files", "-3"], "'--files'"),
    (["upload"], "Missing argument 'directory'"),
    (["upload", ".", "--frobnicate"], "No such option"),
])
def test_usage_errors_are_one_line_exit_2(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == cli.EXIT_USAGE
    line = _one_error_line(proc)
    assert needle in line and "--help" in line
