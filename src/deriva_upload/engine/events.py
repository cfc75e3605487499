"""Progress events: what the engine tells a CLI bar or a seed-style callback.

The engine emits :class:`Event` values through an :class:`EventSink`, which throttles
per-file events (one every ``EVENT_INTERVAL`` seconds per phase) but always delivers
phase starts, phase ends and failures. A callback that raises is logged and ignored:
a broken progress bar must not fail an upload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from deriva_upload.engine import limits

Phase = Literal["scan", "hash", "lookup", "upload", "insert", "link", "done"]
PHASES: tuple[str, ...] = ("scan", "hash", "lookup", "upload", "insert", "link", "done")

log = logging.getLogger("deriva_upload.engine")


@dataclass(frozen=True)
class Event:
    """One progress report: counts and bytes done so far out of the totals known now."""

    phase: Phase
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    path: str | None = None
    message: str = ""
    failed: bool = False

    @property
    def percent(self) -> float:
        """Percent complete (bytes when known, else files)."""
        if self.bytes_total:
            return 100.0 * self.bytes_done / self.bytes_total
        if self.files_total:
            return 100.0 * self.files_done / self.files_total
        return 0.0


EventCallback = Callable[[Event], None]


class EventSink:
    """Counts progress per phase and forwards (throttled) events to a callback."""

    def __init__(self, callback: EventCallback | None, interval: float = limits.EVENT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cb = callback
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self.files_done: dict[str, int] = {}
        self.bytes_done: dict[str, int] = {}
        self.files_total: dict[str, int] = {}
        self.bytes_total: dict[str, int] = {}

    def set_total(self, phase: Phase, files: int, nbytes: int = 0) -> None:
        """Declare how much work a phase has (and announce the phase)."""
        self.files_total[phase] = files
        self.bytes_total[phase] = nbytes
        self._emit(phase, force=True)

    def add_total(self, phase: Phase, files: int, nbytes: int = 0) -> None:
        """Grow a phase's totals as work is discovered (windowed pipeline)."""
        self.files_total[phase] = self.files_total.get(phase, 0) + files
        self.bytes_total[phase] = self.bytes_total.get(phase, 0) + nbytes

    def advance(self, phase: Phase, files: int = 0, nbytes: int = 0, *, path: str | None = None,
                message: str = "", failed: bool = False, force: bool = False) -> None:
        """Record progress; forward an event unless one was sent for this phase very recently."""
        self.files_done[phase] = self.files_done.get(phase, 0) + files
        self.bytes_done[phase] = self.bytes_done.get(phase, 0) + nbytes
        self._emit(phase, path=path, message=message, failed=failed, force=force or failed)

    def finish(self, phase: Phase, message: str = "") -> None:
        """Always-delivered end-of-phase event."""
        self._emit(phase, message=message, force=True)

    def message(self, phase: Phase, message: str, *, path: str | None = None, failed: bool = False) -> None:
        self._emit(phase, path=path, message=message, failed=failed, force=True)

    def _emit(self, phase: Phase, *, path: str | None = None, message: str = "", failed: bool = False,
              force: bool = False) -> None:
        if self._cb is None:
            return
        now = self._clock()
        if not force and now - self._last.get(phase, -1e18) < self._interval:
            return
        self._last[phase] = now
        ev = Event(phase=phase, files_done=self.files_done.get(phase, 0),
                   files_total=self.files_total.get(phase, 0), bytes_done=self.bytes_done.get(phase, 0),
                   bytes_total=self.bytes_total.get(phase, 0), path=path, message=message, failed=failed)
        try:
            self._cb(ev)
        except Exception:  # noqa: BLE001 — progress display must never break an upload
            log.warning("progress callback raised; ignoring", exc_info=True)
