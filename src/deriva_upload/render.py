"""Terminal rendering for the CLI: live progress from engine events, summary tables.

Progress goes to stderr (a rich ``Console(stderr=True)``) so stdout stays clean for the
final report or JSON. On a terminal, :class:`ProgressView` shows one rich bar per
engine phase (files and bytes, rate, ETA); elsewhere (a pipe, CI log, ``--quiet``) it
prints plain, timestamp-free log lines: phase start, failures, a heartbeat every few
seconds, and phase end.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from deriva_upload.engine.events import Event

Mode = Literal["rich", "plain", "quiet"]

PHASE_LABELS: dict[str, str] = {
    "scan": "scanning",
    "hash": "hashing",
    "lookup": "checking catalog",
    "upload": "uploading",
    "insert": "inserting rows",
    "link": "linking",
    "done": "done",
}

# Step announcements of ``upload_execution`` (its seed-style progress phases).
STEP_LABELS: dict[str, str] = {
    "validate": "validate",
    "upload": "assets",
    "link": "link",
    "features": "features",
    "tables": "tables",
}

# Engine phases that see every file once but announce no total of their own: their bars
# borrow the file count announced by the hash/upload phases.
PER_FILE_PHASES = frozenset({"lookup", "insert"})

# Steps of ``upload_execution`` that come after every file was sent.
AFTER_TRANSFER_STEPS = frozenset({"link", "features", "tables"})

# Seconds between two plain-mode heartbeat lines of one phase: frequent enough to show
# a CI log that the run is alive, rare enough that a 100,000-file run logs a few lines.
PLAIN_INTERVAL = 5.0
# Failures printed one per line before the rest are only counted (a run where every file
# fails must not flood the terminal; the JSON report lists them all).
MAX_FAILURE_LINES = 20


def human_bytes(n: float) -> str:
    """``1.5 MiB``-style size (binary units, one decimal above bytes)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def human_rate(nbytes: float, seconds: float) -> str:
    """Throughput as ``12.3 MiB/s`` (``-`` when no time has passed)."""
    if seconds <= 0:
        return "-"
    return f"{human_bytes(nbytes / seconds)}/s"


def _files(n: int) -> str:
    return "file" if n == 1 else "files"


def _counts(ev: Event, final: bool = False) -> str:
    """``3/10 files, 1.0 KiB/4.0 KiB`` for a log line; totals left out while unknown."""
    parts = []
    if ev.files_total:
        parts.append(f"{ev.files_done}/{ev.files_total} {_files(ev.files_total)}")
    elif ev.files_done or final:
        parts.append(f"{ev.files_done} {_files(ev.files_done)}")
    if ev.bytes_total:
        parts.append(f"{human_bytes(ev.bytes_done)}/{human_bytes(ev.bytes_total)}")
    return ", ".join(parts)


class _CountsColumn(ProgressColumn):
    """``123/300 files · 4.5/64.0 MiB`` from the task's fields."""

    def render(self, task: Task) -> Text:
        f = task.fields
        parts = []
        if f.get("files_total"):
            parts.append(f"{f.get('files_done', 0):,}/{f['files_total']:,} {_files(f['files_total'])}")
        elif f.get("files_done"):
            parts.append(f"{f['files_done']:,} {_files(f['files_done'])}")
        if f.get("bytes_total"):
            parts.append(f"{human_bytes(f.get('bytes_done', 0))}/{human_bytes(f['bytes_total'])}")
        return Text(" · ".join(parts), style="progress.download")


class _PercentColumn(ProgressColumn):
    """``42.0%``; blank while a phase's total is unknown (its bar pulses instead)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("      ")
        return Text(f"{task.percentage:>5.1f}%", style="progress.percentage")


class _RateColumn(ProgressColumn):
    """Bytes per second for byte phases, files per second otherwise."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("", style="progress.data.speed")
        if task.fields.get("bytes_total"):
            return Text(f"{human_bytes(speed)}/s", style="progress.data.speed")
        if task.fields.get("files_total"):
            return Text(f"{speed:,.0f} files/s", style="progress.data.speed")
        return Text("")


class ProgressView:
    """Turns engine :class:`Event` values into bars or log lines; use as a context manager.

    Thread-safe: the engine may call it from worker threads.
    """

    def __init__(self, console: Console, mode: Mode = "rich", clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.mode: Mode = mode
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}
        self._last_line: dict[str, float] = {}
        self._finished: set[str] = set()
        self._last_event: dict[str, Event] = {}
        self._closed = False
        self._known_files = 0  # files announced by the hash/upload phases so far
        self.failures: list[tuple[str | None, str]] = []
        self._progress: Progress | None = None
        if mode == "rich":
            self._progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("[bold]{task.description:<16}"),
                BarColumn(bar_width=30),
                _PercentColumn(),
                _CountsColumn(),
                _RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
                refresh_per_second=8,
            )

    # -- context manager --------------------------------------------------------------

    def __enter__(self) -> ProgressView:
        if self._progress is not None:
            self._progress.start()
        return self

    def _close_bars(self) -> None:
        """Complete every bar and stop the live display (lines printed later go below it)."""
        if self._progress is None or self._closed:
            return
        self._closed = True
        for task_id in self._tasks.values():
            task = self._progress.tasks[task_id]
            f = task.fields
            # a phase that ended without reaching its total (skipped work, throttled last
            # event, or a total never announced) is complete once the run has moved on
            fields = dict(files_done=max(f.get("files_done", 0), f.get("files_total", 0)),
                          bytes_done=max(f.get("bytes_done", 0), f.get("bytes_total", 0)))
            if task.total is None:
                done = max(task.completed, 1)
                self._progress.update(task_id, total=done, completed=done, **fields)
            elif not task.finished:
                self._progress.update(task_id, completed=task.total, **fields)
        self._progress.stop()

    def _finish_lines(self) -> None:
        """Plain mode: a ``done`` line for every phase that started but never reported its end."""
        for phase, ev in self._last_event.items():
            if phase not in self._finished:
                self._finished.add(phase)
                # the phase is over: its last (throttled) event may predate the final counts
                final = dataclasses.replace(ev, files_done=max(ev.files_done, ev.files_total),
                                            bytes_done=max(ev.bytes_done, ev.bytes_total))
                counts = _counts(final) if (final.files_done or final.bytes_done) else ""
                label = PHASE_LABELS.get(phase, phase)
                self._print(f"{label}: done ({counts})" if counts else f"{label}: done")

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._progress is not None:
                self._close_bars()
            else:
                self._finish_lines()
        hidden = len(self.failures) - MAX_FAILURE_LINES
        if hidden > 0:
            self.console.print(f"… and {hidden} more failure(s); see the report for all of them")

    # -- events -------------------------------------------------------------------------

    def __call__(self, ev: Any) -> None:
        if not isinstance(ev, Event):
            self.on_seed_progress(ev)
            return
        if ev.bytes_total and ev.bytes_done > ev.bytes_total:
            # never show more than 100% even if a phase counts some bytes twice
            ev = dataclasses.replace(ev, bytes_done=ev.bytes_total)
        with self._lock:
            if ev.failed:
                self._failure(ev)
            if ev.phase == "done":
                return
            if self._progress is not None:
                if not self._closed:
                    self._update_bar(ev)
            else:
                self._log_line(ev)

    def on_seed_progress(self, p: Any) -> None:
        """The seed's ``UploadProgress`` (what ``upload_execution`` reports): bytes and percent only.

        A message without byte counts is a step announcement (validate, link, features…)
        and is printed as a line; byte/percent updates drive the phase's bar.
        """
        phase = str(getattr(p, "phase", "") or "")
        message = str(getattr(p, "message", "") or "")
        bytes_total = int(getattr(p, "bytes_total", 0) or 0)
        bytes_done = int(getattr(p, "bytes_completed", 0) or 0)
        percent = float(getattr(p, "percent_complete", 0.0) or 0.0)
        path = getattr(p, "file_path", "") or None
        with self._lock:
            if phase == "done":
                return
            if message and not bytes_total and not percent:
                if phase in AFTER_TRANSFER_STEPS:
                    # the file transfer is over: its bars / done lines go above the next steps
                    if self._progress is not None:
                        self._close_bars()
                    else:
                        self._finish_lines()
                where = f"{path}: " if path else ""
                self._print(f"{STEP_LABELS.get(phase, phase)}: {where}{message}")
                return
            if self._closed:
                return
            if self._progress is not None:
                label = PHASE_LABELS.get(phase, phase)
                if bytes_total:
                    total, done = bytes_total, bytes_done
                else:
                    total, done = 100.0, percent
                fields = dict(files_done=0, files_total=0, bytes_done=bytes_done, bytes_total=bytes_total)
                task_id = self._tasks.get(phase)
                if task_id is None:
                    self._tasks[phase] = self._progress.add_task(label, total=total, completed=done, **fields)
                else:
                    self._progress.update(task_id, total=total, completed=done, **fields)
            else:
                now = self._clock()
                complete = percent >= 100.0 or (bytes_total and bytes_done >= bytes_total)
                label = PHASE_LABELS.get(phase, phase)
                counts = f"{percent:.0f}%"
                if bytes_total:
                    counts = f"{human_bytes(bytes_done)}/{human_bytes(bytes_total)}, {counts}"
                if phase not in self._last_line:
                    self._last_line[phase] = now
                    if not complete:
                        self._print(f"{label}: started ({counts})")
                if complete:
                    if phase not in self._finished:
                        self._finished.add(phase)
                        self._print(f"{label}: done ({counts})")
                elif self.mode == "plain" and now - self._last_line[phase] >= PLAIN_INTERVAL:
                    self._last_line[phase] = now
                    self._print(f"{label}: {counts}")

    def _failure(self, ev: Event) -> None:
        self.failures.append((ev.path, ev.message))
        if len(self.failures) <= MAX_FAILURE_LINES:
            where = f"{ev.path}: " if ev.path else ""
            self.console.print(f"[red]failed[/] {PHASE_LABELS.get(ev.phase, ev.phase)}: {where}{ev.message}",
                               highlight=False, markup=True)

    def _update_bar(self, ev: Event) -> None:
        assert self._progress is not None
        if ev.phase in ("hash", "upload"):
            self._known_files = max(self._known_files, ev.files_total)
        elif ev.phase in PER_FILE_PHASES and not ev.files_total and not ev.bytes_total and self._known_files:
            # these phases announce no total of their own: they handle each file once
            ev = dataclasses.replace(ev, files_total=max(self._known_files, ev.files_done))
        by_bytes = ev.bytes_total > 0
        total = ev.bytes_total if by_bytes else ev.files_total
        done = ev.bytes_done if by_bytes else ev.files_done
        fields = dict(files_done=ev.files_done, files_total=ev.files_total, bytes_done=ev.bytes_done,
                      bytes_total=ev.bytes_total)
        task_id = self._tasks.get(ev.phase)
        if task_id is None:
            task_id = self._progress.add_task(PHASE_LABELS.get(ev.phase, ev.phase), total=total or None,
                                              completed=done, **fields)
            self._tasks[ev.phase] = task_id
        else:
            self._progress.update(task_id, total=total or None, completed=done, **fields)

    def _log_line(self, ev: Event) -> None:
        phase = ev.phase
        now = self._clock()
        label = PHASE_LABELS.get(phase, phase)
        self._last_event[phase] = ev
        complete = ev.files_total > 0 and ev.files_done >= ev.files_total
        counts = _counts(ev)
        if phase not in self._last_line:
            self._last_line[phase] = now
            if not complete:
                self._print(f"{label}: started ({counts})" if counts else f"{label}: started")
        if complete:
            if phase not in self._finished:
                self._finished.add(phase)
                self._print(f"{label}: done ({counts})")
            return
        self._finished.discard(phase)  # totals grew (windowed pipeline): not done after all
        if self.mode == "plain" and now - self._last_line[phase] >= PLAIN_INTERVAL:
            self._last_line[phase] = now
            self._print(f"{label}: {counts} ({ev.percent:.0f}%)")

    def _print(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)


# -- summary tables ----------------------------------------------------------------------


def _get(obj: Any, name: str, default: Any = 0) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def summary_table(tables: Mapping[str, Any], *, title: str = "Upload summary", elapsed: float = 0.0,
                  bytes_sent: int | None = None, extra_rows: Iterable[tuple[str, int, int, int, int]] = ()) -> Table:
    """Per table: inserted / already present / failed / bytes, a totals row and throughput.

    ``tables`` maps ``schema:table`` to anything with ``inserted``, ``present``,
    ``failed`` and ``bytes`` (the engine's ``TableCounts`` or plain dicts).
    """
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("table")
    t.add_column("inserted", justify="right")
    t.add_column("already present", justify="right")
    t.add_column("failed", justify="right")
    t.add_column("bytes sent", justify="right")
    totals = [0, 0, 0, 0]
    rows = [(name, int(_get(c, "inserted")), int(_get(c, "present")), int(_get(c, "failed")), int(_get(c, "bytes")))
            for name, c in sorted(tables.items())]
    rows += list(extra_rows)
    for name, ins, pres, fail, nbytes in rows:
        for k, v in enumerate((ins, pres, fail, nbytes)):
            totals[k] += v
        t.add_row(name, f"{ins:,}", f"{pres:,}", f"[red]{fail:,}[/]" if fail else "0", human_bytes(nbytes))
    t.add_section()
    sent = totals[3] if bytes_sent is None else bytes_sent
    t.add_row("[bold]total[/]", f"[bold]{totals[0]:,}[/]", f"[bold]{totals[1]:,}[/]",
              f"[bold red]{totals[2]:,}[/]" if totals[2] else "[bold]0[/]", f"[bold]{human_bytes(sent)}[/]")
    if elapsed > 0:
        t.caption = f"{human_bytes(sent)} sent in {elapsed:.1f} s ({human_rate(sent, elapsed)})"
        t.caption_justify = "left"
    return t


def summary_lines(tables: Mapping[str, Any], *, elapsed: float = 0.0, bytes_sent: int | None = None) -> list[str]:
    """The same numbers as :func:`summary_table`, one plain line per table."""
    out = []
    total_bytes = 0
    for name, c in sorted(tables.items()):
        total_bytes += int(_get(c, "bytes"))
        out.append(f"{name}: inserted {_get(c, 'inserted')}, already present {_get(c, 'present')}, "
                   f"failed {_get(c, 'failed')}, {human_bytes(_get(c, 'bytes'))}")
    sent = total_bytes if bytes_sent is None else bytes_sent
    tail = f" in {elapsed:.1f} s ({human_rate(sent, elapsed)})" if elapsed > 0 else ""
    out.append(f"total: {human_bytes(sent)} sent{tail}")
    return out


PLAN_FIELDS = ("files", "bytes", "present", "to_upload", "upload_bytes", "to_insert", "conflicts")
"""Per-table numbers of a dry run (``engine.plan.TablePlan`` fields)."""


def plan_table(tables: Mapping[str, Mapping[str, int]], rows: Mapping[str, int] | None = None, *,
               title: str = "Plan (dry run, nothing written)") -> Table:
    """The dry run per table (files, bytes, present, to upload, upload size, to insert, conflicts) and totals.

    ``rows`` adds tables that receive rows only (features, table CSVs): at most that many
    inserts, since existing rows are skipped.
    """
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("table", no_wrap=True)
    for col in ("files", "bytes", "present", "to upload", "upload size", "to insert", "conflicts"):
        t.add_column(col, justify="right")
    totals = dict.fromkeys(PLAN_FIELDS, 0)
    for name, m in sorted(tables.items()):
        for k in PLAN_FIELDS:
            totals[k] += int(m.get(k, 0))
        t.add_row(name, f"{m['files']:,}", human_bytes(m["bytes"]), f"{m['present']:,}", f"{m['to_upload']:,}",
                  human_bytes(m["upload_bytes"]), f"{m['to_insert']:,}",
                  f"[red]{m['conflicts']}[/]" if m["conflicts"] else "0")
    for name, n in sorted((rows or {}).items()):
        t.add_row(name, "[dim]rows[/]", "", "", "", "", f"≤ {n:,}", "")
    t.add_section()
    t.add_row("[bold]total[/]", f"{totals['files']:,}", human_bytes(totals["bytes"]), f"{totals['present']:,}",
              f"{totals['to_upload']:,}", human_bytes(totals["upload_bytes"]), f"{totals['to_insert']:,}",
              f"[red]{totals['conflicts']}[/]" if totals["conflicts"] else "0")
    return t


def plan_lines(tables: Mapping[str, Mapping[str, int]], rows: Mapping[str, int] | None = None) -> list[str]:
    """The same dry run, one plain line per table."""
    out = [f"{name}: {m['files']} files ({human_bytes(m['bytes'])}), already present {m['present']}, "
           f"to upload {m['to_upload']} ({human_bytes(m['upload_bytes'])}), to insert {m['to_insert']}, "
           f"conflicts {m['conflicts']}" for name, m in sorted(tables.items())]
    out += [f"{name}: up to {n} row(s) to insert (existing rows are skipped)" for name, n in sorted((rows or {}).items())]
    return out


def problems_table(problems: Mapping[str, str], *, title: str) -> Table:
    """A two-column table of ``path -> reason`` (verify mismatches, failed files)."""
    t = Table(title=title, title_justify="left", header_style="bold red")
    t.add_column("file", overflow="fold")
    t.add_column("problem", overflow="fold")
    for path, reason in sorted(problems.items()):
        t.add_row(path, reason)
    return t


__all__ = [
    "PHASE_LABELS",
    "PLAN_FIELDS",
    "plan_lines",
    "plan_table",
    "ProgressView",
    "human_bytes",
    "human_rate",
    "problems_table",
    "summary_lines",
    "summary_table",
]
