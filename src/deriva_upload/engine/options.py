"""Knobs of one upload run, as one immutable value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from deriva_upload.engine import limits
from deriva_upload.errors import ConfigError


@dataclass(frozen=True)
class UploadOptions:
    """How to run an upload; every field has a safe default.

    ``max_retries``/``retry_delay`` keep the seed's meaning (retries after the first
    try; first back-off delay, doubling). ``timeout`` is seconds per request (a float,
    or the seed's ``(connect, read)`` tuple). ``shard=(i, n)`` uploads only the files
    whose stable hash falls in share ``i`` of ``n`` (several machines, one tree).
    ``chunk_size`` forces chunked upload (and its chunk length) for files larger than
    it; None uses the spec's ``hatrac_options.chunk_size`` or GenericUploader's 25 MiB.
    """

    workers: int = limits.DEFAULT_WORKERS
    chunk_size: int | None = None
    max_retries: int = 3
    retry_delay: float = 5.0
    timeout: float | tuple[float, float] | None = None
    dry_run: bool = False
    shard: tuple[int, int] | None = None
    journal_dir: Path | None = None
    use_journal: bool = True
    small_file_threshold: int = limits.SMALL_FILE_THRESHOLD
    max_inflight_bytes: int = limits.MAX_INFLIGHT_BYTES
    chunks_in_flight: int = limits.CHUNKS_IN_FLIGHT
    hash_threads: int = limits.DEFAULT_HASH_THREADS
    insert_batch: int = limits.INSERT_BATCH
    lookup_batch: int = limits.LOOKUP_BATCH
    window_files: int = limits.WINDOW_FILES
    # "auto": HEAD an object before PUT only when the journal cannot rule out that it
    # was already stored (crash mid-window, rebuilt journal); "always" / "never".
    head_before_put: str = "auto"
    # Keep each file's catalog row in the report (FileResult.record). None = "auto": the
    # first ``limits.RECORDS_KEPT`` rows only, so a 100,000-file run stays small;
    # api.upload_directory asks for True (the seed returns every row).
    keep_records: bool | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise ConfigError(f"chunk_size must be a positive number of bytes, got {self.chunk_size}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.retry_delay < 0:
            raise ConfigError(f"retry_delay must be >= 0, got {self.retry_delay}")
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise ConfigError(f"shard must be (i, n) with 0 <= i < n, got {self.shard}")
        if self.head_before_put not in ("auto", "always", "never"):
            raise ConfigError(f"head_before_put must be auto|always|never, got {self.head_before_put!r}")
        for name in ("small_file_threshold", "max_inflight_bytes", "chunks_in_flight", "hash_threads",
                     "insert_batch", "lookup_batch", "window_files"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.journal_dir is not None:
            object.__setattr__(self, "journal_dir", Path(self.journal_dir))

    def with_(self, **changes: object) -> UploadOptions:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def request_timeout(self) -> float | None:
        """One number for the transport: the larger of a seed ``(connect, read)`` tuple."""
        if self.timeout is None:
            return None
        if isinstance(self.timeout, tuple):
            return float(max(self.timeout))
        return float(self.timeout)
