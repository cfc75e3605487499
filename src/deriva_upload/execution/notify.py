"""Progress for the seed's ``UploadProgress`` callback: step announcements and engine events."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

ProgressCallback = Callable[[Any], None]


def progress_adapter(callback: ProgressCallback | None) -> ProgressCallback | None:
    """Engine events -> the seed's ``UploadProgress`` callback."""
    if callback is None:
        return None
    from deriva_upload.progress import UploadProgress

    def on_event(ev: Any) -> None:
        path = getattr(ev, "path", None) or ""
        callback(UploadProgress(
            file_path=path, file_name=Path(path).name if path else "",
            bytes_completed=getattr(ev, "bytes_done", 0), bytes_total=getattr(ev, "bytes_total", 0),
            percent_complete=getattr(ev, "percent", 0.0), phase=str(getattr(ev, "phase", "")),
            message=getattr(ev, "message", ""),
        ))
    return on_event


def notify(callback: ProgressCallback | None, phase: str, message: str) -> None:
    """Announce a step; a broken progress display must not fail the upload."""
    if callback is None:
        return
    from deriva_upload.progress import UploadProgress

    try:
        callback(UploadProgress(phase=phase, message=message))
    except Exception:  # noqa: BLE001 — a broken progress display must not fail the upload
        pass
