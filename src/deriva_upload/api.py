"""The seed's upload entry points, ``upload_directory`` and ``upload_asset``, on our engine.

Same signatures, return values and exceptions as ``deriva_ml.dataset.upload``:
``upload_directory`` returns ``{path: FileUploadState}`` for the uploaded files and
raises ``DerivaMLException`` naming every file that failed; ``upload_asset`` stores one
file at ``/hatrac/<Table>/<md5>.<name>`` and returns its row. ``engine="deriva-py"``
runs deriva-py's GenericUploader the way the seed does (for comparison), except that
the URL scheme comes from the catalog instead of a hard-coded ``https`` (quirk 13).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from deriva_upload.engine.destination import Destination
from deriva_upload.engine.events import Event
from deriva_upload.engine.items import Item
from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.pipeline import run_upload
from deriva_upload.engine.report import UploadReport
from deriva_upload.errors import ConfigError, DerivaMLException
from deriva_upload.progress import FileUploadState, UploadProgress, UploadState

log = logging.getLogger("deriva_ml")

# The seed's DEFAULT_UPLOAD_TIMEOUT for GenericUploader sessions: (connect, read) seconds.
DEFAULT_UPLOAD_TIMEOUT = (600, 600)
ENGINES = ("deriva-upload", "deriva-py")

_PHASE_NAMES = {"scan": "scanning", "hash": "hashing", "lookup": "checking", "upload": "uploading",
                "insert": "inserting", "link": "linking", "done": "complete"}


def _progress_adapter(callback: Callable[[UploadProgress], None]) -> Callable[[Event], None]:
    """Engine events -> the seed's ``UploadProgress`` objects."""

    def on_event(ev: Event) -> None:
        phase = _PHASE_NAMES.get(ev.phase, ev.phase)
        if ev.phase == "upload":
            message = ev.message or f"Uploading file {min(ev.files_done + 1, ev.files_total)} of {ev.files_total}"
        else:
            message = ev.message or f"{phase.capitalize()}: {ev.files_done} of {ev.files_total} file(s)"
        callback(UploadProgress(
            file_path=ev.path or "", file_name=Path(ev.path).name if ev.path else "",
            bytes_completed=ev.bytes_done, bytes_total=ev.bytes_total,
            percent_complete=ev.percent if ev.phase != "done" else 100.0, phase=phase, message=message))

    return on_event


def _results(report: UploadReport) -> dict[str, FileUploadState]:
    out: dict[str, FileUploadState] = {}
    for r in report.files.values():
        if r.state != UploadState.success:
            continue
        result: Any = dict(r.record) if r.record is not None else None
        if result is None:  # table files: the seed had the POST response; give the counts
            result = {"RID": None, "table": r.table, "status": r.status}
        out[r.path] = FileUploadState(state=r.state, status=r.status, result=result)
    return out


def upload_directory(
    model: Any,
    directory: Path | str,
    progress_callback: Callable[[UploadProgress], None] | None = None,
    max_retries: int = 3,
    retry_delay: float = 5.0,
    timeout: tuple[int, int] | None = None,
    chunk_size: int | None = None,
    *,
    engine: str = "deriva-upload",
    options: UploadOptions | None = None,
    dest: Destination | None = None,
    credential_file: str | None = None,
) -> dict[Any, FileUploadState] | None:
    """Upload every asset and table file under ``directory`` (seed signature and results).

    Args:
        model: the ``DerivaModel`` of the target catalog.
        directory: directory holding the upload layout (or part of it).
        progress_callback: called with ``UploadProgress`` objects.
        max_retries: retries per request after the first try (transient failures).
        retry_delay: first back-off delay in seconds; doubles, with jitter.
        timeout: ``(connect, read)`` seconds per request.
        chunk_size: chunk length for Hatrac chunked uploads (also lowers the chunking threshold).
        engine: ``"deriva-upload"`` (ours) or ``"deriva-py"`` (GenericUploader, as the seed).
        options: full engine options (override the seed arguments).
        dest: where to upload (default: the model's catalog).

    Returns: ``{file path: FileUploadState}`` of the files uploaded.
    Raises: ``DerivaMLException`` when the directory is missing or any file failed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DerivaMLException("Directory does not exist")
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {ENGINES}, got {engine!r}")
    from deriva_upload.spec import bulk_upload_configuration

    spec = bulk_upload_configuration(model, chunk_size=chunk_size)
    destination = dest or Destination.from_model(model)
    if engine == "deriva-py":
        return _upload_with_deriva_py(model, destination, directory, spec, progress_callback, max_retries,
                                      retry_delay, timeout, credential_file)
    opts = options or UploadOptions(chunk_size=chunk_size, max_retries=max_retries, retry_delay=retry_delay,
                                    timeout=timeout, keep_records=True)
    if opts.keep_records is None:
        opts = opts.with_(keep_records=True)  # the seed returns every file's row
    on_event = _progress_adapter(progress_callback) if progress_callback else None
    report = run_upload(directory, spec, destination, opts, on_event=on_event)
    for path, reason in report.unmatched:
        log.warning("not uploaded: %s: %s", path, reason)
    failed = report.failed
    if failed:
        details = "; ".join(f"{r.path}: {r.error or r.status}" for r in failed.values())
        raise DerivaMLException(f"Failed to upload {len(failed)} file(s) after {max_retries} retries: {details}")
    return _results(report)


def upload_asset(model: Any, file: Path | str, table: Any, **kwargs: Any) -> dict:
    """Upload one file into Hatrac and insert its row into asset ``table`` (seed behaviour).

    The object goes to ``/hatrac/<Table>/<md5>.<file name>``; the row carries URL,
    Filename, Length, MD5 and ``kwargs`` as further columns. An identical file already
    uploaded to the same table returns the existing row instead of a second one.
    """
    tbl = model.name_to_table(table)
    if not model.is_asset(tbl):
        raise DerivaMLException(f"Table {tbl.name} is not an asset table.")
    path = Path(file)
    if not path.is_file():
        raise DerivaMLException(f"File {file} does not exist.")
    columns = {c.name for c in tbl.columns}
    unknown = sorted(set(kwargs) - columns)
    if unknown:
        raise DerivaMLException(f"Columns {unknown} are not columns of {tbl.schema.name}:{tbl.name}.")
    metadata = {k: (None if v is None else str(v)) for k, v in kwargs.items() if k != "RID"}
    rid = kwargs.get("RID")
    item = Item.for_file(path, path.parent, tbl.schema.name, tbl.name, metadata, rid=rid)
    dest = Destination.from_model(model)
    spec = {"asset_mappings": [], "upload_asset": f"{tbl.schema.name}:{tbl.name}"}
    report = run_upload(path.parent, spec, dest, UploadOptions(use_journal=False, workers=4, keep_records=True), items=[item])
    res = report.files.get(item.rel)
    if res is None or res.state != UploadState.success or res.record is None:
        msg = res.error if res is not None else "no result"
        raise DerivaMLException(f"Upload of {path} into {tbl.schema.name}:{tbl.name} failed: {msg}")
    return dict(res.record)


# -- the seed's GenericUploader path (for comparison) ----------------------------------------


def _upload_with_deriva_py(model: Any, dest: Destination, directory: Path, spec: dict,
                           progress_callback: Callable[[UploadProgress], None] | None, max_retries: int,
                           retry_delay: float, timeout: tuple[int, int] | None,
                           credential_file: str | None) -> dict[Any, FileUploadState]:
    """The seed's ``upload_directory`` body, with the scheme taken from the catalog."""
    from deriva.core import DEFAULT_SESSION_CONFIG
    from deriva.transfer import GenericUploader

    upload_state = {"completed_files": 0, "total_files": 0, "status_calls": 0}
    for _root, _dirs, files in os.walk(directory):
        upload_state["total_files"] += len(files)

    def file_callback(**kwargs: Any) -> bool:
        if progress_callback is not None:
            file_path = kwargs.get("file_path", "")
            done, total = kwargs.get("completed", 0), kwargs.get("total", 0)
            progress_callback(UploadProgress(
                file_path=file_path, file_name=Path(file_path).name if file_path else "", bytes_completed=done,
                bytes_total=total, percent_complete=(done / total * 100) if total > 0 else 0,
                phase="uploading_chunks", message=f"Uploading large file: chunk {done} of {total}"))
        return True

    def status_callback() -> None:
        if progress_callback is not None:
            upload_state["status_calls"] += 1
            if upload_state["status_calls"] % 2 == 0:
                upload_state["completed_files"] += 1
            current = (upload_state["status_calls"] + 1) // 2
            total = upload_state["total_files"]
            progress_callback(UploadProgress(
                phase="uploading", message=f"Uploading file {current} of {total}",
                percent_complete=(upload_state["completed_files"] / total * 100) if total > 0 else 0))

    session_config = DEFAULT_SESSION_CONFIG.copy()
    session_config["timeout"] = timeout if timeout is not None else DEFAULT_UPLOAD_TIMEOUT
    all_results: dict[Any, FileUploadState] = {}
    with TemporaryDirectory() as temp_dir:
        spec_file = Path(temp_dir) / "config.json"
        spec_file.write_text(json.dumps(spec))
        attempt, delay = 0, retry_delay
        while attempt <= max_retries:
            uploader = GenericUploader(server={"host": dest.host, "protocol": dest.scheme,
                                               "catalog_id": dest.catalog_id, "session": session_config},
                                       config_file=str(spec_file), credential_file=credential_file)
            try:
                uploader.getUpdatedConfig()
                uploader.scanDirectory(directory, purge_state=True)
                raw = uploader.uploadFiles(file_callback=file_callback if progress_callback else None,
                                           status_callback=status_callback if progress_callback else None)
                failed = []
                for path, result in raw.items():
                    state = UploadState(result["State"])
                    if state == UploadState.failed or result["Result"] is None:
                        failed.append((path, result["Status"]))
                    else:
                        all_results[path] = FileUploadState(state=state, status=result["Status"],
                                                            result=result["Result"])
                if not failed:
                    break
                attempt += 1
                if attempt > max_retries:
                    details = "; ".join(f"{p}: {m}" for p, m in failed)
                    raise DerivaMLException(
                        f"Failed to upload {len(failed)} file(s) after {max_retries} retries: {details}")
                log.warning("Upload failed for %d file(s), retrying in %.1fs (attempt %d/%d)", len(failed), delay,
                            attempt, max_retries)
                time.sleep(delay)
                delay *= 2
                upload_state["status_calls"] = 0
            finally:
                uploader.cleanup()
    return all_results


__all__ = ["upload_directory", "upload_asset", "DEFAULT_UPLOAD_TIMEOUT"]
