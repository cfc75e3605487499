"""CLI pieces that need no server: option parsing, error classification, directory shapes, status."""

from __future__ import annotations

import socket

import httpx
import pytest
import requests
from typer.testing import CliRunner

from deriva_upload import cli
from deriva_upload import errors as E
from deriva_upload.engine.journal import Entry, Journal

runner = CliRunner()


# -- option parsing -----------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [("0/1", (0, 1)), ("3/4", (3, 4)), (None, None), ("", None)])
def test_parse_shard_accepts_i_of_n(text, expected):
    assert cli.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "-1/3", "1", "a/b", "1/0", "1/2/3"])
def test_parse_shard_rejects_bad_values_with_a_hint(text):
    with pytest.raises(E.ConfigError, match=r"--shard"):
        cli.parse_shard(text)


@pytest.mark.parametrize("text,expected", [("4096", 4096), ("25M", 25 << 20), ("8MiB", 8 << 20), ("1g", 1 << 30),
                                           ("512K", 512 << 10), (None, None)])
def test_parse_size(text, expected):
    assert cli.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "0", "-5M"])
def test_parse_size_rejects(text):
    with pytest.raises(E.ConfigError, match="--chunk-size"):
        cli.parse_size(text)


# -- error classification -----------------------------------------------------------------


def _requests_http_error(status: int, body: str, ctype: str = "text/plain") -> requests.HTTPError:
    r = requests.Response()
    r.status_code = status
    r._content = body.encode()
    r.headers["content-type"] = ctype
    r.url = "https://example.org/ermrest/catalog/1/schema"
    r.request = requests.Request("GET", r.url).prepare()
    return requests.HTTPError(f"{status} error", response=r)


@pytest.mark.parametrize("exc,code,needle", [
    (E.ConfigError("upload spec has no 'asset_mappings' list"), cli.EXIT_USAGE, "asset_mappings"),
    (E.LayoutError("metadata column 'X'"), cli.EXIT_USAGE, "metadata column"),
    (E.AuthError("refused", status=401), cli.EXIT_AUTH, "--token"),
    (E.ServerError("forbidden", status=403), cli.EXIT_AUTH, "DERIVA_UPLOAD_TOKEN"),
    (E.ServerError("gone", status=404), cli.EXIT_USAGE, "--catalog"),
    (E.ServerError("boom", status=500), cli.EXIT_UNREACHABLE, "server error (500)"),
    (E.TransientError("connection reset"), cli.EXIT_UNREACHABLE, "connection reset"),
    (E.IntegrityError("checksum mismatch"), cli.EXIT_FAILED, "checksum mismatch"),
    (E.JournalError("journal is corrupt"), cli.EXIT_USAGE, "journal"),
    (cli.CliExit(2, "custom"), 2, "custom"),
    (RuntimeError("kaboom"), cli.EXIT_INTERNAL, "--debug"),
    (KeyboardInterrupt(), cli.EXIT_INTERRUPTED, "resume"),
])
def test_classify_error(exc, code, needle):
    f = cli.classify_error(exc, host="example.org")
    assert f.code == code
    assert needle in f.message
    assert "\n" not in f.message


def test_classify_requests_errors():
    f = cli.classify_error(_requests_http_error(401, "Unauthorized"), "example.org")
    assert f.code == cli.EXIT_AUTH and "401" in f.message and "example.org" in f.message
    f = cli.classify_error(_requests_http_error(403, "Forbidden"), "example.org")
    assert f.code == cli.EXIT_AUTH and "403" in f.message
    html = ("<!DOCTYPE html><html><head><title>502 Proxy Error</title><style>x{}</style></head>"
            "<body><h1>Proxy Error</h1><p>The proxy server received an invalid response</p></body></html>")
    f = cli.classify_error(_requests_http_error(502, html, "text/html"), "example.org")
    assert f.code == cli.EXIT_UNREACHABLE
    assert "502 Proxy Error" in f.message and "<" not in f.message
    conn = requests.ConnectionError(socket.gaierror(-2, "Name or service not known"))
    f = cli.classify_error(conn, "nohost.invalid")
    assert f.code == cli.EXIT_UNREACHABLE and f.message.startswith("unknown host nohost.invalid")


def test_classify_httpx_errors():
    req = httpx.Request("GET", "http://localhost:1/ermrest/catalog/1")
    f = cli.classify_error(httpx.ConnectError("[Errno 111] Connection refused", request=req), "localhost:1")
    assert f.code == cli.EXIT_UNREACHABLE and "connection refused" in f.message
    resp = httpx.Response(403, request=req, text="no")
    f = cli.classify_error(httpx.HTTPStatusError("403", request=req, response=resp), "localhost:1")
    assert f.code == cli.EXIT_AUTH


def test_redact_removes_secrets():
    assert cli.redact("Authorization: Bearer s3cr3t-token", ["s3cr3t-token", None]) == "Authorization: Bearer ***"


# -- directory shapes -----------------------------------------------------------------------


def test_resolve_work_recognises_prefix_root_and_execution_dir(tmp_path):
    (tmp_path / "deriva-ml" / "execution" / "1-AB").mkdir(parents=True)
    (tmp_path / "deriva-ml" / "execution" / "1-CD").mkdir(parents=True)
    w = cli.resolve_work(tmp_path, None)
    assert w.prefix == tmp_path.resolve() and w.executions == ["1-AB", "1-CD"]
    w = cli.resolve_work(tmp_path / "deriva-ml", None)
    assert w.prefix == tmp_path.resolve() and w.executions == ["1-AB", "1-CD"]
    w = cli.resolve_work(tmp_path / "deriva-ml" / "execution" / "1-CD", None)
    assert w.prefix == tmp_path.resolve() and w.executions == ["1-CD"]
    assert cli.resolve_work(tmp_path, "1-AB").executions == ["1-AB"]
    with pytest.raises(E.ConfigError, match="no staged execution 1-ZZ"):
        cli.resolve_work(tmp_path, "1-ZZ")
    with pytest.raises(E.ConfigError, match="does not match"):
        cli.resolve_work(tmp_path / "deriva-ml" / "execution" / "1-CD", "1-AB")


def test_resolve_work_generic_tree_and_creates_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    w = cli.resolve_work(tmp_path / "data", None)
    assert not w.is_execution and w.root == (tmp_path / "data").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    with pytest.raises(E.ConfigError, match="does not exist"):
        cli.resolve_work(tmp_path / "missing", None)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(E.ConfigError, match="not a directory"):
        cli.resolve_work(tmp_path / "file.txt", None)


# -- the typer app, without a server ----------------------------------------------------------


def test_help_documents_exit_codes():
    for args in (["--help"], ["upload", "--help"], ["verify", "--help"]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert "Exit codes: 0 ok; 1 some files failed" in text
        assert "4 authentication/authorization refused" in text


@pytest.mark.parametrize("args,code,needle", [
    (["upload", "{missing}", "--host", "localhost:1"], 2, "does not exist"),
    (["plan", "{missing}", "--host", "localhost:1"], 2, "does not exist"),
    (["verify", "{file}", "--host", "localhost:1"], 2, "is not a directory"),
    (["status", "{missing}"], 2, "does not exist"),
    (["upload", "{dir}", "--host", "localhost:1", "--shard", "5/4"], 2, "--shard '5/4'"),
    (["upload", "{dir}", "--host", "localhost:1", "--chunk-size", "huge"], 2, "--chunk-size 'huge'"),
    (["upload", "{dir}", "--host", "https://example.org"], 2, "without scheme"),
    (["upload", "{dir}", "--host", "localhost:1", "--scheme", "ftp"], 2, "--scheme 'ftp'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, code, needle):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    subst = {"{missing}": str(tmp_path / "nope"), "{file}": str(tmp_path / "f"), "{dir}": str(tmp_path / "d")}
    result = runner.invoke(cli.app, [subst.get(a, a) for a in args])
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert needle in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_unknown_option_is_a_usage_error(tmp_path):
    result = runner.invoke(cli.app, ["upload", str(tmp_path), "--host", "x", "--bogus"])
    assert result.exit_code == 2


def test_debug_shows_traceback(tmp_path):
    result = runner.invoke(cli.app, ["upload", str(tmp_path / "nope"), "--host", "localhost:1", "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.output and "does not exist" in result.output


# -- status (offline, from the journal) -------------------------------------------------------


def _journal(root, dest="http://localhost:9/ermrest/catalog/1"):
    j = Journal.for_upload(root, dest, {"asset_mappings": []})
    j.put(Entry("a/done.png", 10, 1, md5="m", sha256="s", url="/hatrac/x/1", rid="1-A", state="done"))
    j.put(Entry("a/big.bin", 100 << 20, 1, md5="m2", sha256="s2", job_url="/hatrac/x/;upload/j", job_chunk=25 << 20,
                chunks=frozenset({0, 1, 2}), state="putting"))
    j.put(Entry("a/bad.png", 10, 1, state="failed", error="403 Forbidden: no write access to /hatrac/x"))
    j.close()


def test_status_reports_done_partial_failed(tmp_path):
    _journal(tmp_path)
    result = runner.invoke(cli.app, ["status", str(tmp_path), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == cli.EXIT_FAILED, result.output
    text = " ".join(result.output.split())
    assert "http://localhost:9/ermrest/catalog/1" in text
    assert "done 1" in text and "partial 1" in text and "failed 1" in text
    assert "3 of 4 chunks sent (75.0 MiB of 100.0 MiB)" in text
    assert "403 Forbidden: no write access" in text
    import json

    doc = json.loads((tmp_path / "s.json").read_text())
    assert {f["rel"]: f["state"] for f in doc["journals"][0]["files"]} == {
        "a/done.png": "done", "a/big.bin": "putting", "a/bad.png": "failed"}


def test_status_filters_by_host_and_handles_no_journal(tmp_path):
    _journal(tmp_path)
    result = runner.invoke(cli.app, ["status", str(tmp_path), "--host", "other.org"])
    assert result.exit_code == 0 and "no upload journal" in result.output
    result = runner.invoke(cli.app, ["status", str(tmp_path), "--host", "localhost:9"])
    assert result.exit_code == 1 and "partial 1" in result.output
