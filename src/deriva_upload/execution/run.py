"""Upload staged executions: scan, validate, then write in order (sync and async entry points)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from deriva_upload.engine.destination import Destination
from deriva_upload.engine.ermrest import ErmrestClient
from deriva_upload.engine.retry import RetryPolicy
from deriva_upload.engine.transport import Transport
from deriva_upload.errors import DerivaUploadError
from deriva_upload.engine.ledger import RidLedger, ledger_path
from deriva_upload.execution.notify import notify, progress_adapter
from deriva_upload.execution.problems import ExecutionValidationError
from deriva_upload.execution.report import ExecutionReport
from deriva_upload.execution.scan import scan_execution
from deriva_upload.execution.steps import link_assets, upload_assets, write_features, write_tables
from deriva_upload.execution.validate import check_catalog
from deriva_upload.execution.write import Writer
from deriva_upload.layout import execution_rids
from deriva_upload.model import DerivaModel

RID = str
T = TypeVar("T")


def _seam(name: str, default: T) -> T:
    """The package's attribute ``name`` as it is now, else ``default``.

    The crash tests replace ``_write_features`` on the package to stop an upload
    between the links and the features; looking it up at call time lets them.
    """
    return getattr(sys.modules[__package__], name, default)


def _options(max_retries: int, retry_delay: float, timeout: float | tuple[float, float] | None,
             chunk_size: int | None, workers: int | None, journal_dir: Path | str | None) -> Any:
    """The engine's ``UploadOptions`` for these arguments (its defaults where None)."""
    from deriva_upload.engine.options import UploadOptions

    opts: dict[str, Any] = dict(max_retries=max_retries, retry_delay=retry_delay, timeout=timeout,
                                chunk_size=chunk_size)
    if workers is not None:
        opts["workers"] = workers
    if journal_dir is not None:
        opts["journal_dir"] = Path(journal_dir)
    return UploadOptions(**opts)


async def upload_execution_async(
    model: DerivaModel,
    prefix: Path | str,
    exec_rid: str,
    *,
    progress_callback: Callable[[Any], None] | None = None,
    max_retries: int = 3,
    retry_delay: float = 5.0,
    timeout: float | tuple[float, float] | None = None,
    chunk_size: int | None = None,
    workers: int | None = None,
    dest: Destination | None = None,
    journal_dir: Path | str | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> ExecutionReport:
    """Async form of :func:`upload_execution` (for callers already inside an event loop)."""
    started = time.monotonic()
    prefix = Path(prefix)
    dest = dest or Destination.from_model(model)
    options = _options(max_retries, retry_delay, timeout, chunk_size, workers, journal_dir)
    report = ExecutionReport(exec_rid)

    plan = scan_execution(model, prefix, exec_rid)
    report.unmatched.extend(plan.unmatched)
    policy = RetryPolicy.from_seed(max_retries, retry_delay)
    async with Transport(dest, policy, timeout=timeout, max_connections=options.workers) as transport:
        client = ErmrestClient(transport, dest.catalog_id)
        notify(progress_callback, "validate", f"checking execution {exec_rid}")
        await check_catalog(client, model, plan)
        if plan.problems:
            raise ExecutionValidationError(exec_rid, plan.problems)

        notify(progress_callback, "upload", f"uploading {len(plan.assets)} asset file(s)")
        if on_event is None:  # the seed's callback gets UploadProgress; on_event gets the engine's events
            on_event = progress_adapter(progress_callback)
        uploaded, failed = await upload_assets(plan, model, dest, options, on_event, report, transport)
        writer = Writer(client, model, report, lambda: RidLedger(ledger_path(prefix, dest, options.journal_dir),
                                                          dest.key()), batch_size=options.insert_batch)
        try:
            notify(progress_callback, "link", "linking assets to types and the execution")
            await link_assets(writer, plan, uploaded)
            n_features = sum(len(g.rows) for g in plan.features)
            notify(progress_callback, "features", f"inserting {n_features} feature row(s)")
            await _seam("_write_features", write_features)(writer, plan, uploaded, failed)
            notify(progress_callback, "tables", f"inserting {sum(len(g.rows) for g in plan.tables)} table row(s)")
            await write_tables(writer, plan)
        finally:
            writer.close()
        report.bytes_sent += transport.stats.bytes_sent
        report.requests += transport.stats.requests
        report.retries += transport.stats.retries
    report.warnings.extend(plan.warnings)
    report.elapsed = time.monotonic() - started
    notify(progress_callback, "done", f"execution {exec_rid}: {'ok' if report.ok else 'incomplete'}")
    return report


def upload_execution(
    model: DerivaModel,
    prefix: Path | str,
    exec_rid: str,
    *,
    progress_callback: Callable[[Any], None] | None = None,
    max_retries: int = 3,
    retry_delay: float = 5.0,
    timeout: float | tuple[float, float] | None = None,
    chunk_size: int | None = None,
    workers: int | None = None,
    dest: Destination | None = None,
    journal_dir: Path | str | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> ExecutionReport:
    """Upload ``<prefix>/deriva-ml/execution/<exec_rid>/`` completely, in order, re-runnably.

    Raises :class:`ExecutionValidationError` (nothing written) when the staged files
    cannot be uploaded as they are; otherwise returns an :class:`ExecutionReport` whose
    ``ok`` is False if some file or row failed (a rerun completes the rest).
    ``progress_callback`` receives the seed's ``UploadProgress``; ``on_event``, if given,
    receives the engine's events instead (with file counts per phase), as the CLI's bars do.
    """
    return run_sync(lambda: upload_execution_async(
        model, prefix, exec_rid, progress_callback=progress_callback, max_retries=max_retries,
        retry_delay=retry_delay, timeout=timeout, chunk_size=chunk_size, workers=workers, dest=dest,
        journal_dir=journal_dir, on_event=on_event))


def run_sync(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code, even inside a running loop (Jupyter).

    ``asyncio.run`` refuses to nest; in that case the coroutine gets its own loop in a
    worker thread and this call blocks until it is done.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deriva-upload") as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


def upload_executions(model: DerivaModel, prefix: Path | str, **kw: Any) -> dict[RID, ExecutionReport]:
    """:func:`upload_execution` for every execution staged under ``prefix``.

    One execution's failure does not stop the others: its report carries the error.
    """
    reports: dict[RID, ExecutionReport] = {}
    for rid in execution_rids(prefix):
        try:
            reports[rid] = upload_execution(model, prefix, rid, **kw)
        except DerivaUploadError as e:
            report = ExecutionReport(rid, error=str(e))
            if isinstance(e, ExecutionValidationError):
                report.failures.extend(e.problems)
            reports[rid] = report
    return reports
