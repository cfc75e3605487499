"""``deriva-upload``: the command line (typer + rich).

Commands: ``demo`` (the README's main command), ``upload``, ``plan``, ``status``,
``verify``, ``serve``. Progress and errors go to stderr; the final report (table or
JSON) goes to stdout. Every failure ends as one line naming the problem and what to
do, with the exit code below; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console

from deriva_upload import errors as E

# -- exit codes (documented in --help and docs/cli.md) ----------------------------------
EXIT_OK = 0
EXIT_FAILED = 1  # some files failed to upload or did not verify
EXIT_USAGE = 2  # bad directory, bad option, spec mismatch
EXIT_UNREACHABLE = 3  # cannot reach the server / unknown host / server error
EXIT_AUTH = 4  # 401/403: credentials missing or refused
EXIT_INTERNAL = 5  # a bug: rerun with --debug for the traceback
EXIT_INTERRUPTED = 130  # Ctrl-C (shell convention 128 + SIGINT)

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 some files failed or did not verify; 2 usage or bad input "
    "(bad directory, option or spec mismatch); 3 cannot reach the server (unknown host, "
    "connection refused, server error); 4 authentication/authorization refused (401/403); "
    "5 internal error (--debug shows the traceback)."
)

TOKEN_ENV_VAR = "DERIVA_UPLOAD_TOKEN"

app = typer.Typer(
    name="deriva-upload",
    help="Fast, resumable, verifiable upload of ML outputs into a DERIVA catalog.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# -- errors -> (exit code, one line) -----------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """What the CLI prints and returns for an exception."""

    code: int
    message: str


class CliExit(Exception):
    """A deliberate exit with a message (raised inside commands, handled by :func:`_guard`)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_AUTH_HINT = ("pass --token or set ${env}, or store a credential for {host} with deriva-py "
              "(deriva-globus-auth-utils login / ~/.deriva/credential.json)")


def _auth_hint(host: str | None) -> str:
    return _AUTH_HINT.format(env=TOKEN_ENV_VAR, host=host or "the host")


def _status_failure(status: int | None, what: str, host: str | None) -> Failure:
    if status in (401, 403):
        verb = "not authenticated (401)" if status == 401 else "not authorized (403)"
        return Failure(EXIT_AUTH, f"{verb}: {what}; {_auth_hint(host)}")
    if status == 404:
        return Failure(EXIT_USAGE, f"not found (404): {what}; check --host and --catalog")
    if status is not None and 400 <= status < 500:
        return Failure(EXIT_USAGE, f"the server rejected a request ({status}): {what}")
    return Failure(EXIT_UNREACHABLE, f"server error{f' ({status})' if status else ''}: {what}; try again later "
                                     "or ask the server's operator")


def _requests_failure(exc: Exception, host: str | None) -> Failure | None:
    try:
        import requests
    except ImportError:  # pragma: no cover - deriva-py depends on requests
        return None
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        from deriva_upload.engine.transport import summarize_body

        r = exc.response
        what = summarize_body(r.text, r.headers.get("content-type")) or r.reason or "no details"
        return _status_failure(r.status_code, f"{r.request.method} {_url_path(r.url)}: {what}", host)
    if isinstance(exc, requests.exceptions.RetryError):
        return Failure(EXIT_UNREACHABLE, f"server kept failing for {host or 'the server'} ({_root_cause(exc)}); "
                                         "try again later")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return _connect_failure(exc, host)
    return None


def _httpx_failure(exc: Exception, host: str | None) -> Failure | None:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        from deriva_upload.engine.transport import summarize_body

        r = exc.response
        what = summarize_body(r.text, r.headers.get("content-type")) or r.reason_phrase
        return _status_failure(r.status_code, f"{r.request.method} {r.request.url.path}: {what}", host)
    if isinstance(exc, httpx.TransportError):
        return _connect_failure(exc, host)
    return None


def _url_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path or url


def _root_cause(exc: BaseException) -> str:
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, socket.gaierror):
            return "unknown host"
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        if nxt is None:
            break
        cur = nxt
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo failed" in text \
            or "Temporary failure in name resolution" in text:
        return "unknown host"
    if "Connection refused" in text:
        return "connection refused"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS certificate not trusted (use --ca-bundle FILE)"
    return type(exc).__name__


def _connect_failure(exc: BaseException, host: str | None) -> Failure:
    cause = _root_cause(exc)
    where = host or "the server"
    if cause == "unknown host":
        return Failure(EXIT_UNREACHABLE, f"unknown host {where}: check --host (name[:port], no scheme)")
    if cause == "connection refused":
        return Failure(EXIT_UNREACHABLE, f"cannot connect to {where}: connection refused; is the server running "
                                         "and is the port right?")
    return Failure(EXIT_UNREACHABLE, f"cannot reach {where}: {cause}; check --host, --scheme and the network")


def classify_error(exc: BaseException, host: str | None = None) -> Failure:
    """Map any exception to an exit code and a one-line message (pure; no printing)."""
    if isinstance(exc, CliExit):
        return Failure(exc.code, exc.message)
    if isinstance(exc, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, "interrupted; run the same command again to resume")
    if isinstance(exc, E.AuthError):
        return Failure(EXIT_AUTH, f"{_one_line(exc)}; {_auth_hint(host)}")
    if isinstance(exc, E.ServerError):
        if exc.status in (401, 403):
            return Failure(EXIT_AUTH, f"{_one_line(exc)}; {_auth_hint(host)}")
        if exc.status is None or isinstance(exc, E.TransientError):
            cause = _root_cause(exc)
            if cause in ("unknown host", "connection refused"):
                return _connect_failure(exc, host)
            return Failure(EXIT_UNREACHABLE, f"{_one_line(exc)}; check --host and the network, then run again")
        return _status_failure(exc.status, _one_line(exc), host)
    if isinstance(exc, E.IntegrityError):
        return Failure(EXIT_FAILED, _one_line(exc))
    if isinstance(exc, (E.ConfigError, E.JournalError)):
        return Failure(EXIT_USAGE, _one_line(exc))
    if isinstance(exc, E.DerivaUploadError):
        return Failure(EXIT_USAGE, _one_line(exc))
    for probe in (_requests_failure, _httpx_failure):
        hit = probe(exc, host)  # type: ignore[arg-type]
        if hit is not None:
            return hit
    if isinstance(exc, (ConnectionError, socket.gaierror, TimeoutError)):
        return _connect_failure(exc, host)
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return Failure(EXIT_USAGE, f"{exc.strerror or type(exc).__name__}: {exc.filename}")
    return Failure(EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {_one_line(exc)}; "
                                  "rerun with --debug and report the traceback")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def redact(text: str, secrets: list[str | None]) -> str:
    """``text`` with every secret (token, cookie) replaced by ``***``."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


# -- consoles and modes ------------------------------------------------------------------


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def err_console() -> Console:
    """Progress, log lines and errors: stderr (stdout stays clean for reports).

    Off a terminal, lines are never wrapped (log files and CI keep one event per line).
    """
    return Console(stderr=True, highlight=False, soft_wrap=not _isatty(sys.stderr))


def out_console() -> Console:
    """The final report: stdout."""
    return Console(highlight=False, soft_wrap=not _isatty(sys.stdout))


def progress_mode(console: Console, quiet: bool) -> str:
    """``rich`` bars on a terminal, ``plain`` lines otherwise, ``quiet`` when asked."""
    if quiet:
        return "quiet"
    return "rich" if console.is_terminal and not console.is_dumb_terminal else "plain"


@contextmanager
def _guard(debug: bool, host: str | None = None, secrets: list[str | None] | None = None) -> Iterator[None]:
    """Run a command body; turn exceptions into one line on stderr and an exit code."""
    restore_logging = setup_logging(debug)
    try:
        yield
    except typer.Exit:
        raise
    except BaseException as exc:  # noqa: BLE001 — the CLI boundary: everything becomes an exit code
        if isinstance(exc, SystemExit):
            raise
        failure = classify_error(exc, host)
        console = err_console()
        if debug and not isinstance(exc, CliExit):
            console.print(redact("".join(traceback.format_exception(exc)), secrets or []), markup=False)
        if failure.message:
            console.print(f"[bold red]error:[/] {_escape(redact(failure.message, secrets or []))}",
                          soft_wrap=True)
        raise typer.Exit(failure.code) from None
    finally:
        restore_logging()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class _ConsoleLogHandler(logging.Handler):
    """Library warnings as ``warning: ...`` lines on the stderr console (above any live bars)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info and record.levelno >= logging.ERROR and _DEBUG_LOGGING:
                msg += "\n" + "".join(traceback.format_exception(*record.exc_info))
            err_console().print(f"[yellow]{record.levelname.lower()}:[/] {_escape(msg)}", soft_wrap=True)
        except Exception:  # noqa: BLE001 — logging must never raise
            self.handleError(record)


_DEBUG_LOGGING = False
# Loggers whose retry chatter duplicates what our own error line says.
_NOISY_LOGGERS = ("urllib3", "httpx", "httpcore", "deriva")


def setup_logging(debug: bool = False) -> Callable[[], None]:
    """Route warnings to the console; keep third-party retry noise out unless --debug.

    Returns a function that restores the previous logging state (the CLI can run inside
    another program, e.g. a test runner).
    """
    global _DEBUG_LOGGING
    _DEBUG_LOGGING = debug
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in ("", *_NOISY_LOGGERS)}
    handler = None
    if not any(isinstance(h, _ConsoleLogHandler) for h in root.handlers):
        handler = _ConsoleLogHandler()
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.ERROR)

    def restore() -> None:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if handler is not None:
            root.removeHandler(handler)

    return restore


# -- option parsing ----------------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; None stays None."""
    if text is None or text == "":
        return None
    parts = text.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        i, n = int(parts[0]), int(parts[1])
    except ValueError:
        raise E.ConfigError(f"--shard {text!r}: expected i/n, e.g. --shard 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= i < n:
        raise E.ConfigError(f"--shard {text!r}: need 0 <= i < n (shards are numbered 0 to n-1)")
    return i, n


def parse_size(text: str | None) -> int | None:
    """``"25M"``, ``"1GiB"``, ``"4096"`` -> bytes (binary units)."""
    if text is None or text == "":
        return None
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = float(t) * mult
    except ValueError:
        raise E.ConfigError(f"--chunk-size {text!r}: expected a size like 25M, 8MiB or 1048576") from None
    if value < 1:
        raise E.ConfigError(f"--chunk-size {text!r}: must be at least 1 byte")
    return int(value)


def check_directory(path: Path) -> Path:
    """The upload directory, resolved; a clear error when it is missing or not a directory."""
    if not path.exists():
        raise E.ConfigError(f"directory {path} does not exist; give the upload root or an execution directory")
    if not path.is_dir():
        raise E.ConfigError(f"{path} is not a directory; give the upload root or an execution directory")
    return path.resolve()


# -- connecting to a catalog -----------------------------------------------------------


@dataclass
class Target:
    """Where the CLI talks to: destination (with secrets) and the catalog model."""

    dest: Any  # engine.destination.Destination
    catalog: Any  # deriva-py ErmrestCatalog
    model: Any  # deriva_upload.model.DerivaModel

    @property
    def secrets(self) -> list[str | None]:
        return [self.dest.token, self.dest.cookie]


# The model fetch is the CLI's first request: it should ride out a blip but answer
# "unknown host", "connection refused" or "the server keeps failing" within seconds.
# deriva-py's session allows urllib3's default of 10 retries with exponential back-off
# (minutes against a proxy answering 502), so its adapters are replaced: at most one
# connect/read retry and two retries on a 5xx status, 0.5 s back-off.
_MODEL_FETCH_RETRIES = 2
_MODEL_FETCH_BACKOFF = 0.5
_RETRY_STATUSES = (500, 502, 503, 504)


def connect(host: str, catalog_id: str, token: str | None = None, scheme: str | None = None,
            ca_bundle: Path | None = None) -> Target:
    """Resolve credentials, fetch the catalog model (``DerivaModel.from_catalog``)."""
    from deriva.core import ErmrestCatalog
    from deriva.core.utils.core_utils import DEFAULT_SESSION_CONFIG

    from deriva_upload.engine.destination import Destination
    from deriva_upload.model import DerivaModel

    if "://" in host or "/" in host:
        raise E.ConfigError(f"--host {host!r}: give name[:port] without scheme or path (use --scheme for http)")
    verify: bool | str = str(ca_bundle) if ca_bundle else True
    if ca_bundle and not Path(ca_bundle).is_file():
        raise E.ConfigError(f"--ca-bundle {ca_bundle}: no such file")
    dest = Destination.for_host(host, catalog_id, token=token or None, scheme=scheme, verify=verify)
    creds: dict[str, str] = {}
    if dest.token:
        creds["bearer-token"] = dest.token
    elif dest.cookie:
        creds["cookie"] = dest.cookie
    cat = ErmrestCatalog(dest.scheme, dest.host, dest.catalog_id, credentials=creds or None,
                         session_config=dict(DEFAULT_SESSION_CONFIG))
    _quick_retries(cat._session, DEFAULT_SESSION_CONFIG.get("timeout"))
    if ca_bundle:
        _pin_ca_bundle(cat._session, str(ca_bundle))
    model = DerivaModel.from_catalog(cat)
    return Target(dest, cat, model)


def _quick_retries(session: Any, timeout: Any) -> None:
    """Bounded retries for the CLI's own requests (see ``_MODEL_FETCH_RETRIES``).

    The last 5xx response is returned rather than raised, so its (HTML) body can be
    summarized in the error line.
    """
    from deriva.core.utils.core_utils import TimeoutHTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=_MODEL_FETCH_RETRIES, connect=1, read=1, status=_MODEL_FETCH_RETRIES,
                  backoff_factor=_MODEL_FETCH_BACKOFF, status_forcelist=_RETRY_STATUSES, raise_on_status=False)
    kwargs = {"timeout": timeout} if timeout is not None else {}
    for prefix in ("http://", "https://"):
        session.mount(prefix, TimeoutHTTPAdapter(max_retries=retry, **kwargs))


def _pin_ca_bundle(session: Any, ca_bundle: str) -> None:
    """Make a requests session verify TLS with ``ca_bundle``.

    ``session.verify`` alone is not enough: requests lets ``$REQUESTS_CA_BUNDLE`` /
    ``$CURL_CA_BUNDLE`` override it for every request, so pass ``verify`` explicitly.
    """
    session.verify = ca_bundle
    original = session.request

    def request(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("verify", ca_bundle)
        return original(method, url, **kwargs)

    session.request = request


# -- shared options ------------------------------------------------------------------------

DirArg = Annotated[Path, typer.Argument(help="Upload directory: an upload root (with deriva-ml/) or an execution "
                                             "directory deriva-ml/execution/<RID>.", show_default=False)]
HostOpt = Annotated[str, typer.Option("--host", "-H", help="Catalog host as name[:port], e.g. localhost:8080 or "
                                                           "www.example.org.", show_default=False)]
CatalogOpt = Annotated[str, typer.Option("--catalog", "-c", help="Catalog id.")]
TokenOpt = Annotated[Optional[str], typer.Option(
    "--token", envvar=TOKEN_ENV_VAR, show_envvar=True,
    help="Bearer token (default: deriva-py's credential store for the host). Never printed.", show_default=False)]
SchemeOpt = Annotated[Optional[str], typer.Option(
    "--scheme", help="http or https (default: http for localhost/127.0.0.1, else https).", show_default=False)]
CaOpt = Annotated[Optional[Path], typer.Option("--ca-bundle", help="CA certificate bundle (PEM) to trust for TLS.",
                                               show_default=False)]
ExecOpt = Annotated[Optional[str], typer.Option(
    "--execution", "-e", help="Execution RID: upload that execution's tree (assets, asset types, features, "
                              "tables) and link it to the execution.", show_default=False)]
ChunkOpt = Annotated[Optional[str], typer.Option(
    "--chunk-size", help="Chunk size for large files, e.g. 25M (default: the spec's, else 25 MiB).",
    show_default=False)]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-w", min=1, max=256,
                                                   help="Concurrent requests (default 16).", show_default=False)]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON to this file "
                                                                "('-' for stdout).", show_default=False)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars: plain log lines only.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
ShardOpt = Annotated[Optional[str], typer.Option(
    "--shard", help="Upload only shard i of n (i/n, 0-based): a stable hash of each file's relative path picks "
                    "its shard, so n machines can share one tree.", show_default=False)]


def _options(chunk_size: str | None, workers: int | None, shard: str | None, **extra: Any) -> Any:
    from deriva_upload.engine.options import UploadOptions

    kwargs: dict[str, Any] = dict(extra)
    if (cs := parse_size(chunk_size)) is not None:
        kwargs["chunk_size"] = cs
    if workers is not None:
        kwargs["workers"] = workers
    if (sh := parse_shard(shard)) is not None:
        kwargs["shard"] = sh
    return UploadOptions(**kwargs)


def write_json(path: Path | None, doc: Any) -> None:
    """Write a report as JSON to ``path`` ('-' is stdout)."""
    if path is None:
        return
    text = json.dumps(doc, indent=2, default=str, sort_keys=False) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _report_console(json_path: Path | None) -> Console:
    """Human summary goes to stdout unless stdout carries the JSON report."""
    return err_console() if json_path is not None and str(json_path) == "-" else out_console()


# -- what a directory holds --------------------------------------------------------------


@dataclass
class Work:
    """What a command operates on: staged executions under ``prefix``, or a generic tree ``root``."""

    root: Path
    prefix: Path | None = None
    executions: list[str] | None = None

    @property
    def is_execution(self) -> bool:
        return bool(self.executions)


def _staged_executions(prefix: Path) -> list[str]:
    """Execution RIDs staged under ``prefix`` (read only: unlike ``layout.execution_rids`` creates nothing)."""
    d = prefix / "deriva-ml" / "execution"
    if not d.is_dir():
        return []
    return sorted(x.name for x in d.iterdir() if x.is_dir() and not x.name.startswith("."))


def resolve_work(directory: Path, execution: str | None) -> Work:
    """Read the directory's shape: an execution dir, an upload root / prefix, or any other tree."""
    p = check_directory(directory)
    prefix: Path | None = None
    only: str | None = None
    if p.parent.name == "execution" and p.parent.parent.name.lower() == "deriva-ml":
        prefix, only = p.parent.parent.parent, p.name
    elif p.name.lower() == "deriva-ml" and (p / "execution").is_dir():
        prefix = p.parent
    elif (p / "deriva-ml").is_dir():
        prefix = p
    if execution is not None:
        if only is not None and only != execution:
            raise E.ConfigError(f"--execution {execution} does not match the execution directory {p.name} given")
        if prefix is None or not (prefix / "deriva-ml" / "execution" / execution).is_dir():
            where = (prefix / "deriva-ml" / "execution") if prefix else p
            raise E.ConfigError(f"no staged execution {execution} under {where}; check --execution and the "
                                "directory")
        return Work(p, prefix, [execution])
    if only is not None:
        return Work(p, prefix, [only])
    if prefix is not None:
        rids = _staged_executions(prefix)
        if rids:
            return Work(p, prefix, rids)
    return Work(p)


def _spec(target: Target, options: Any) -> dict[str, Any]:
    from deriva_upload.spec import bulk_upload_configuration

    return bulk_upload_configuration(target.model, chunk_size=options.chunk_size)


def _execution_plan(target: Target, work: Work, rid: str) -> Any:
    from deriva_upload.execution import ExecutionValidationError, scan_execution

    assert work.prefix is not None
    plan = scan_execution(target.model, work.prefix, rid)
    if plan.problems:
        raise ExecutionValidationError(rid, plan.problems)
    return plan


def _upload_execution(target: Target, work: Work, rid: str, options: Any, view: Any) -> Any:
    """``execution.upload_execution`` with our options and progress view."""
    from deriva_upload import execution as ex

    kwargs: dict[str, Any] = dict(chunk_size=options.chunk_size, workers=options.workers, dest=target.dest,
                                  max_retries=options.max_retries, retry_delay=options.retry_delay,
                                  timeout=options.timeout)
    if options.journal_dir is not None:
        kwargs["journal_dir"] = options.journal_dir
    # engine events carry per-phase file counts for the bars; step announcements arrive as UploadProgress
    return ex.upload_execution(target.model, work.prefix, rid, progress_callback=view, on_event=view, **kwargs)


def _table_counts(report: Any) -> dict[str, Any]:
    return dict(getattr(report, "tables", {}) or {})


def _merge_tables(reports: list[Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in reports:
        for name, c in _table_counts(r).items():
            t = out.setdefault(name, {"inserted": 0, "present": 0, "failed": 0, "bytes": 0})
            for k in t:
                t[k] += int(getattr(c, k, 0) if not isinstance(c, dict) else c.get(k, 0))
    return out


def _print_summary(out: Console, tables: dict[str, Any], *, elapsed: float, bytes_sent: int, mode: str,
                   title: str = "Upload summary") -> None:
    from deriva_upload.render import summary_lines, summary_table

    if mode == "rich" or out.is_terminal:
        out.print(summary_table(tables, title=title, elapsed=elapsed, bytes_sent=bytes_sent))
    else:
        for line in summary_lines(tables, elapsed=elapsed, bytes_sent=bytes_sent):
            out.print(line, markup=False)


def _print_problems(console: Console, problems: list[tuple[str, str]], title: str, limit: int = 50) -> None:
    if not problems:
        return
    console.print(f"[bold red]{title}[/] ({len(problems)}):")
    for path, reason in problems[:limit]:
        console.print(f"  {_escape(path)}: {_escape(reason)}", soft_wrap=True)
    if len(problems) > limit:
        console.print(f"  … and {len(problems) - limit} more (see --json)")


def _shard_options(options: Any, root: Path) -> Any:
    """A shard keeps its own journal (``.deriva-upload/shard-i-of-n/``): shards running at
    the same time, on one machine or several sharing a file system, never write one file."""
    if options.shard is None or options.journal_dir is not None:
        return options
    i, n = options.shard
    return options.with_(journal_dir=root / JOURNAL_DIR_NAME / f"shard-{i}-of-{n}")


JOURNAL_DIR_NAME = ".deriva-upload"


def do_upload(target: Target, root: Path, options: Any, *, execution: str | None, console: Console, out: Console,
              mode: str, json_path: Path | None, write_json: Callable[[Path | None, Any], None]) -> int:
    """Upload executions (with links and features) or a generic tree; print the summary; exit code."""
    import time

    from deriva_upload.engine import pipeline
    from deriva_upload.render import ProgressView

    work = resolve_work(root, execution)
    started = time.monotonic()
    reports: list[Any] = []
    problems: list[tuple[str, str]] = []
    doc: dict[str, Any] = {"destination": target.dest.key(), "directory": str(work.root)}
    with ProgressView(console, mode) as view:  # type: ignore[arg-type]
        if work.is_execution and options.shard is None:
            doc["executions"] = {}
            for rid in work.executions or []:
                console.print(f"execution [bold]{rid}[/]: uploading {work.prefix}/deriva-ml/execution/{rid}",
                              highlight=False)
                rep = _upload_execution(target, work, rid, options, view)
                reports.append(rep)
                doc["executions"][rid] = rep.to_dict()
                problems += [(f"{p.file}{f':{p.line}' if p.line else ''}", p.message) for p in rep.failures]
        elif work.is_execution:
            # A shard uploads its share of the asset files; the links, features and tables
            # need every asset's RID, so one final run without --shard writes them.
            doc["shard"] = list(options.shard)
            doc["executions"] = {}
            spec = _spec(target, options)
            for rid in work.executions or []:
                plan = _execution_plan(target, work, rid)
                rep = pipeline.run_upload(plan.root, spec, target.dest, _shard_options(options, plan.root),
                                          items=[a.item for a in plan.assets], on_event=view)
                reports.append(rep)
                doc["executions"][rid] = rep.to_dict()
                problems += [(p, r.error or r.status) for p, r in rep.failed.items()]
        else:
            rep = pipeline.run_upload(work.root, _spec(target, options), target.dest,
                                      _shard_options(options, work.root), on_event=view)
            reports.append(rep)
            doc.update(rep.to_dict())
            problems += [(p, r.error or r.status) for p, r in rep.failed.items()]
    elapsed = time.monotonic() - started
    bytes_sent = sum(int(getattr(r, "bytes_sent", 0) or getattr(getattr(r, "stats", None), "bytes_sent", 0) or 0)
                     for r in reports)
    tables = _merge_tables(reports)
    doc["summary"] = {"tables": tables, "elapsed": round(elapsed, 3), "bytes_sent": bytes_sent,
                      "failed": len(problems)}
    unmatched = _unmatched(reports)
    processed = sum(len(getattr(r, "files", {}) or {}) for r in reports) + sum(
        t["inserted"] + t["present"] + t["failed"] for t in tables.values())
    if unmatched and not processed:
        write_json(json_path, doc)
        raise CliExit(EXIT_USAGE, f"nothing to upload: none of the {len(unmatched)} file(s) under {work.root} fits "
                                  f"the upload layout (e.g. {unmatched[0][0]}: {unmatched[0][1]}); give the upload "
                                  "root (holding deriva-ml/) or an execution directory")
    _print_summary(out, tables, elapsed=elapsed, bytes_sent=bytes_sent, mode=mode)
    if unmatched:
        console.print(f"[yellow]{len(unmatched)} file(s) not uploaded[/] (not part of the layout); first: "
                      f"{_escape(unmatched[0][0])}: {_escape(unmatched[0][1])}", soft_wrap=True)
    if options.shard is not None and work.is_execution:
        i, n = options.shard
        console.print(f"shard {i}/{n}: asset files only; when every shard is done, run once without --shard "
                      "to link asset types, the execution, features and tables (already uploaded files are "
                      "skipped)", highlight=False)
    _print_problems(console, problems, "failed")
    write_json(json_path, doc)
    return EXIT_FAILED if problems else EXIT_OK


def _unmatched(reports: list[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for r in reports:
        for u in getattr(r, "unmatched", []) or []:
            if isinstance(u, tuple):
                out.append((str(u[0]), str(u[1])))
            else:
                out.append((str(getattr(u, "file", u)), str(getattr(u, "message", ""))))
    return out


def do_plan(target: Target, root: Path, options: Any, *, execution: str | None, console: Console, out: Console,
            mode: str, json_path: Path | None, write_json: Callable[[Path | None, Any], None]) -> int:
    """Dry run: per table, files and bytes, already present, to upload, to insert. Writes nothing."""
    from deriva_upload.engine import pipeline
    from deriva_upload.render import PLAN_FIELDS, ProgressView, plan_lines, plan_table

    work = resolve_work(root, execution)
    spec = _spec(target, options)
    plans: dict[str, Any] = {}
    extra_rows: dict[str, int] = {}
    with ProgressView(console, "quiet" if mode == "quiet" else mode) as view:  # type: ignore[arg-type]
        if work.is_execution:
            for rid in work.executions or []:
                ex_plan = _execution_plan(target, work, rid)
                plans[rid] = pipeline.plan_upload(ex_plan.root, spec, target.dest, options,
                                                  items=[a.item for a in ex_plan.assets], on_event=view)
                for g in list(ex_plan.features) + list(ex_plan.tables):
                    key = f"{g.table.schema.name}:{g.table.name}"
                    extra_rows[key] = extra_rows.get(key, 0) + len(g.rows)
        else:
            plans[""] = pipeline.plan_upload(work.root, spec, target.dest, options, on_event=view)
    merged: dict[str, dict[str, int]] = {}
    unmatched: list[tuple[str, str]] = []
    errors: dict[str, str] = {}
    for p in plans.values():
        for name, tp in p.tables.items():
            m = merged.setdefault(name, {})
            for k in PLAN_FIELDS:
                m[k] = m.get(k, 0) + int(getattr(tp, k))
        unmatched += list(p.unmatched)
        errors.update(p.errors)
    if out.is_terminal or mode == "rich":
        out.print(plan_table(merged, extra_rows, title=f"Plan (dry run, nothing written) → {target.dest.key()}"))
    else:
        for line in plan_lines(merged, extra_rows):
            out.print(line, markup=False)
    if unmatched:
        _print_problems(console, [(str(a), str(b)) for a, b in unmatched], "not part of the layout (would be skipped)",
                        limit=10)
    _print_problems(console, sorted(errors.items()), "cannot be planned")
    doc = {"destination": target.dest.key(), "directory": str(work.root), "dry_run": True,
           "plans": {k: v.to_dict() for k, v in plans.items()}, "rows": extra_rows}
    write_json(json_path, doc)
    conflicts = sum(m["conflicts"] for m in merged.values())
    return EXIT_FAILED if errors or conflicts else EXIT_OK


def do_verify(target: Target, root: Path, options: Any, *, execution: str | None, console: Console, out: Console,
              mode: str, json_path: Path | None, write_json: Callable[[Path | None, Any], None]) -> int:
    """Every file: row exists, server-side checksums equal the local file's. Exit 1 on any mismatch."""
    from deriva_upload.engine import pipeline

    work = resolve_work(root, execution)
    spec = _spec(target, options)
    reports: dict[str, Any] = {}
    if mode == "rich":
        ctx: Any = console.status("verifying rows and object checksums…")
    else:
        from contextlib import nullcontext

        ctx = nullcontext()
        if mode == "plain":
            console.print("verify: checking rows and object checksums", markup=False)
    with ctx:
        if work.is_execution:
            for rid in work.executions or []:
                ex_plan = _execution_plan(target, work, rid)
                reports[rid] = pipeline.verify(ex_plan.root, spec, target.dest, options,
                                               items=[a.item for a in ex_plan.assets])
        else:
            reports[""] = pipeline.verify(work.root, spec, target.dest, options)
    ok = sum(len(r.ok) for r in reports.values())
    problems = sorted((p, m) for r in reports.values() for p, m in r.problems.items())
    skipped = [s for r in reports.values() for s in (getattr(r, "skipped", None) or [])]
    if problems:
        out.print(f"[bold red]verify failed[/]: {len(problems)} file(s) do not match the catalog, {ok} ok")
        for path, reason in problems:
            out.print(f"  {_escape(path)}: {_escape(reason)}", soft_wrap=True)
    else:
        out.print(f"[bold green]verified[/]: {ok} file(s) — every row exists and every object's MD5/SHA-256 "
                  "equals the local file's")
    if skipped:
        out.print(f"  ({len(skipped)} table file(s) not checked row by row)", markup=False)
    doc = {"destination": target.dest.key(), "directory": str(work.root), "ok": ok,
           "problems": dict(problems), "passed": not problems,
           "reports": {k: v.to_dict() for k, v in reports.items()}}
    write_json(json_path, doc)
    return EXIT_FAILED if problems else EXIT_OK


# States the journal records per file (engine/journal.py) and how status names them.
_STATE_GROUPS = {"done": "done", "stored": "partial", "putting": "partial", "hashed": "pending", "new": "pending",
                 "failed": "failed"}


def read_journals(root: Path) -> list[dict[str, Any]]:
    """Every journal under ``root`` (read only): destination and per-file entries."""
    import sqlite3

    out = []
    for path in sorted(root.rglob("journal-*.sqlite")):
        parts = path.relative_to(root).parts
        if JOURNAL_DIR_NAME not in parts[:-1]:
            continue
        # files are recorded relative to the directory holding .deriva-upload
        base = root.joinpath(*parts[: parts.index(JOURNAL_DIR_NAME)])
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
                cols = [d[1] for d in db.execute("PRAGMA table_info(files)").fetchall()]
                rows = [dict(zip(cols, r)) for r in db.execute("SELECT * FROM files ORDER BY rel")]
            finally:
                db.close()
        except sqlite3.Error as exc:
            out.append({"path": str(path), "destination": None, "error": f"unreadable journal: {exc}", "files": []})
            continue
        for r in rows:
            r["rel"] = (base / r["rel"]).relative_to(root).as_posix() if (base / r["rel"]).is_relative_to(root) \
                else r["rel"]
            chunks = r.get("chunks")
            r["chunks_sent"] = len([c for c in str(chunks).split(",") if c]) if chunks else 0
        out.append({"path": str(path.relative_to(root)), "destination": meta.get("destination"), "files": rows})
    return out


def _chunk_progress(f: dict[str, Any], human_bytes: Callable[[float], str]) -> str:
    """``chunked upload: 3 of 4 chunks sent (75.0 MiB of 100.0 MiB)`` from a journal row."""
    size, chunk, sent = int(f.get("size") or 0), int(f.get("job_chunk") or 0), int(f.get("chunks_sent") or 0)
    if chunk <= 0:
        return f"chunked upload: {sent} chunk(s) sent of {human_bytes(size)}"
    total = max(1, -(-size // chunk))
    done_bytes = min(size, sent * chunk)
    return f"chunked upload: {sent} of {total} chunks sent ({human_bytes(done_bytes)} of {human_bytes(size)})"


def do_status(root: Path, *, host: str | None, catalog: str | None, out: Console, json_path: Path | None,
              write_json: Callable[[Path | None, Any], None]) -> int:
    """What the journals under ``root`` say: done, partial (chunks sent), failed (why). Offline."""
    from rich.table import Table

    from deriva_upload.render import human_bytes

    journals = read_journals(root)
    if host:
        journals = [j for j in journals if j["destination"] and f"://{host.lower()}/" in j["destination"]]
    if catalog:
        journals = [j for j in journals if j["destination"] and j["destination"].endswith(f"/catalog/{catalog}")]
    if not journals:
        out.print(f"no upload journal under {root}" + (f" for {host}" if host else "")
                  + ": nothing has been uploaded from here yet (or it was uploaded with journaling off)",
                  markup=False)
        write_json(json_path, {"directory": str(root), "journals": []})
        return EXIT_OK
    any_failed = False
    for j in journals:
        files = j["files"]
        groups: dict[str, list[dict[str, Any]]] = {}
        for f in files:
            groups.setdefault(_STATE_GROUPS.get(f.get("state") or "new", "pending"), []).append(f)
        any_failed |= bool(groups.get("failed")) or bool(j.get("error"))
        out.print(f"[bold]{_escape(str(j['destination']))}[/]  [dim]({_escape(j['path'])})[/]")
        if j.get("error"):
            out.print(f"  [red]{_escape(j['error'])}[/]")
            continue
        nbytes = sum(int(f.get("size") or 0) for f in groups.get("done", []))
        out.print(f"  done {len(groups.get('done', []))} ({human_bytes(nbytes)}), "
                  f"partial {len(groups.get('partial', []))}, pending {len(groups.get('pending', []))}, "
                  f"failed {len(groups.get('failed', []))}", highlight=False)
        interesting = groups.get("partial", []) + groups.get("failed", [])
        if interesting:
            t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            t.add_column("state")
            t.add_column("file", overflow="fold")
            t.add_column("detail", overflow="fold")
            for f in interesting[:100]:
                state = f.get("state")
                if state == "failed":
                    detail = f.get("error") or "failed"
                elif f.get("job_url"):
                    detail = _chunk_progress(f, human_bytes)
                elif state == "stored":
                    detail = "object stored, row not yet inserted"
                else:
                    detail = "object upload started"
                t.add_row(f"[red]{state}[/]" if state == "failed" else f"[yellow]{state}[/]", f["rel"], detail)
            out.print(t)
            if len(interesting) > 100:
                out.print(f"  … and {len(interesting) - 100} more (see --json)")
    write_json(json_path, {"directory": str(root), "journals": journals})
    return EXIT_FAILED if any_failed else EXIT_OK


# -- commands ------------------------------------------------------------------------------


@app.command(epilog=EXIT_CODES_HELP)
def demo(
    files: Annotated[int, typer.Option("--files", "-n", min=0, help="Number of small images.")] = 300,
    large_mb: Annotated[int, typer.Option("--large-mb", min=0, help="Size of the model file in MiB.")] = 64,
    data_dir: Annotated[Optional[Path], typer.Option(
        "--data-dir", help="Keep the catalog and the staged files here (default: a new temporary "
                           "directory, kept afterwards). Run again with the same directory to see "
                           "everything 'already present'.", show_default=False)] = None,
    chunk_size: ChunkOpt = None,
    workers: WorkersOpt = None,
    json_path: JsonOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Upload a realistic ML execution into a local embedded catalog, then verify it.

    Starts the embedded catalog on a free loopback port, stages an execution (images with
    metadata, a model file, config files, asset types, a feature and a table CSV), uploads
    it with live progress, prints a summary, verifies rows and checksums, and says where
    the data is.
    """
    from deriva_upload import demo as demo_mod

    with _guard(debug):
        console = err_console()
        code = demo_mod.run_demo(
            files=files, large_mb=large_mb, data_dir=data_dir,
            options=_options(chunk_size, workers, None),
            console=console, out=_report_console(json_path), mode=progress_mode(console, quiet),
            json_path=json_path, write_json=write_json)
    raise typer.Exit(code)


@app.command(epilog=EXIT_CODES_HELP)
def serve(
    data_dir: Annotated[Optional[Path], typer.Option(
        "--data-dir", help="Catalog data directory (default: a new temporary directory).", show_default=False)] = None,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: a free one).")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    token: Annotated[Optional[str], typer.Option(
        "--token", envvar=TOKEN_ENV_VAR, show_envvar=True,
        help="Require this bearer token on every request (default: open, local user).", show_default=False)] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Serve https with a locally generated certificate.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Run the embedded catalog (ERMrest + Hatrac) in the foreground until Ctrl-C."""
    import tempfile
    import threading

    with _guard(debug, host=f"{host}:{port}", secrets=[token]):
        from deriva_upload.catalog import EmbeddedCatalog

        console = err_console()
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="deriva-upload-catalog-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        stop = threading.Event()
        try:
            with EmbeddedCatalog(data_dir=data_dir, host=host, port=port, token=token, tls=tls) as cat:
                url = f"{cat.scheme}://{cat.hostname}"
                out = out_console()
                out.print(f"[bold green]embedded catalog running[/] at {url}  (catalog {cat.catalog_id})")
                out.print(f"  data dir : {cat.data_dir}")
                out.print(f"  ERMrest  : {url}/ermrest/catalog/{cat.catalog_id}/schema")
                out.print(f"  Hatrac   : {url}/hatrac/")
                if cat.ca_file:
                    out.print(f"  CA file  : {cat.ca_file}  (use --ca-bundle with upload/plan/verify)")
                if token:
                    out.print("  auth     : bearer token required (the one you passed; not shown)")
                scheme_opt = "" if cat.scheme == "http" else " --scheme https"
                out.print(f"  upload to it: deriva-upload upload DIR --host {cat.hostname} "
                          f"--catalog {cat.catalog_id}{scheme_opt}")
                out.print("Press Ctrl-C to stop.")
                out.file.flush()
                import signal

                def on_signal(signum: int, frame: Any) -> None:
                    stop.set()

                previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    while not stop.wait(0.5):
                        pass
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
                console.print("stopping…")
        except OSError as exc:
            if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise CliExit(EXIT_USAGE, f"port {port} on {host} is already in use; pick another with --port "
                                          "(0 picks a free one)") from None
            raise


def _target_args(host: str, catalog: str, token: str | None, scheme: str | None, ca_bundle: Path | None) -> Target:
    if scheme is not None and scheme not in ("http", "https"):
        raise E.ConfigError(f"--scheme {scheme!r}: use http or https")
    return connect(host, catalog, token, scheme, ca_bundle)


def _remote(action: Any, make_options: Any, directory: Path, host: str, catalog: str, token: str | None,
            scheme: str | None, ca_bundle: Path | None, execution: str | None, json_path: Path | None,
            quiet: bool, debug: bool) -> None:
    """What upload, plan and verify share: check the input, connect, run ``action``, exit with its code."""
    with _guard(debug, host, [token]):
        options = make_options()
        root = check_directory(directory)
        target = _target_args(host, catalog, token, scheme, ca_bundle)
        console = err_console()
        code = action(target, root, options, execution=execution, console=console, out=_report_console(json_path),
                      mode=progress_mode(console, quiet), json_path=json_path, write_json=write_json)
    raise typer.Exit(code)


@app.command(epilog=EXIT_CODES_HELP)
def upload(
    directory: DirArg,
    host: HostOpt,
    catalog: CatalogOpt = "1",
    token: TokenOpt = None,
    scheme: SchemeOpt = None,
    ca_bundle: CaOpt = None,
    execution: ExecOpt = None,
    chunk_size: ChunkOpt = None,
    workers: WorkersOpt = None,
    shard: ShardOpt = None,
    json_path: JsonOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Upload a directory (an execution tree or a generic upload root) to a catalog."""
    _remote(do_upload, lambda: _options(chunk_size, workers, shard), directory, host, catalog, token, scheme, ca_bundle,
            execution, json_path, quiet, debug)


@app.command(epilog=EXIT_CODES_HELP)
def plan(
    directory: DirArg,
    host: HostOpt,
    catalog: CatalogOpt = "1",
    token: TokenOpt = None,
    scheme: SchemeOpt = None,
    ca_bundle: CaOpt = None,
    execution: ExecOpt = None,
    chunk_size: ChunkOpt = None,
    workers: WorkersOpt = None,
    shard: ShardOpt = None,
    json_path: JsonOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Dry run: which files go to which tables, how many bytes, what the catalog already has. Writes nothing."""
    _remote(do_plan, lambda: _options(chunk_size, workers, shard, dry_run=True), directory, host, catalog, token, scheme, ca_bundle,
            execution, json_path, quiet, debug)


@app.command(epilog=EXIT_CODES_HELP)
def status(
    directory: DirArg,
    host: Annotated[Optional[str], typer.Option("--host", "-H", help="Only the journal of this host "
                                                                     "(default: every journal in DIR).",
                                                show_default=False)] = None,
    catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="Only this catalog id.",
                                                   show_default=False)] = None,
    json_path: JsonOpt = None,
    debug: DebugOpt = False,
) -> None:
    """From the journal: what is done, partial (with chunk progress) or failed, and why. Offline."""
    with _guard(debug, host):
        root = check_directory(directory)
        code = do_status(root, host=host, catalog=catalog, out=_report_console(json_path),
                                    json_path=json_path, write_json=write_json)
    raise typer.Exit(code)


@app.command(epilog=EXIT_CODES_HELP)
def verify(
    directory: DirArg,
    host: HostOpt,
    catalog: CatalogOpt = "1",
    token: TokenOpt = None,
    scheme: SchemeOpt = None,
    ca_bundle: CaOpt = None,
    execution: ExecOpt = None,
    workers: WorkersOpt = None,
    shard: ShardOpt = None,
    json_path: JsonOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check every file: its catalog row exists and the object's server-side checksums equal the local file's."""
    _remote(do_verify, lambda: _options(None, workers, shard), directory, host, catalog, token, scheme, ca_bundle,
            execution, json_path, quiet, debug)


def _is_a(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is a click exception called ``name`` (typer may vendor its own click)."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point (``deriva-upload``).

    Usage errors (unknown command or option, invalid value) become one ``error:`` line
    with exit code 2, like every other error, instead of click's boxed usage text.
    """
    try:
        code = app(args=argv, prog_name="deriva-upload", standalone_mode=False)
    except KeyboardInterrupt:
        err_console().print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 — only click's own exceptions are handled here
        ctx = getattr(exc, "ctx", None)
        if _is_a(exc, "NoArgsIsHelpError"):  # bare "deriva-upload": show the help
            if ctx is not None:
                print(ctx.get_help())
            sys.exit(EXIT_USAGE)
        if _is_a(exc, "UsageError"):
            where = ctx.command_path if ctx is not None else "deriva-upload"
            message = exc.format_message()  # type: ignore[attr-defined]
            err_console().print(f"[bold red]error:[/] {_escape(message)} (see '{where} --help')", soft_wrap=True)
            sys.exit(EXIT_USAGE)
        if _is_a(exc, "Abort"):
            err_console().print("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        raise
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
