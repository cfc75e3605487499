"""Progress rendering from a stream of engine events, and the summary tables, as text a person reads."""

from __future__ import annotations

import io

from rich.console import Console

from deriva_upload.engine.events import Event, EventSink
from deriva_upload.progress import UploadProgress
from deriva_upload.render import ProgressView, human_bytes, human_rate, summary_lines, summary_table


def _console(terminal: bool = False, width: int = 120) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=width, color_system=None if not terminal else "standard",
                   highlight=False), buf


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_human_units():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(64 * 1024 * 1024) == "64.0 MiB"
    assert human_rate(10 * 1024 * 1024, 2.0) == "5.0 MiB/s"
    assert human_rate(1, 0) == "-"


def test_plain_mode_logs_start_heartbeat_failure_and_end():
    console, buf = _console()
    clock = Clock()
    with ProgressView(console, "plain", clock=clock) as view:
        sink = EventSink(view, interval=0.0)
        sink.set_total("hash", 4, 4000)
        for k in range(4):
            clock.t += 3.0
            sink.advance("hash", 1, 1000, path=f"f{k}.png")
        sink.set_total("upload", 2, 2000)
        sink.advance("upload", 1, 1000, path="a.png", message="403 Forbidden", failed=True)
        sink.advance("upload", 1, 1000)
        sink.message("done", "2 file(s) ok")
    lines = buf.getvalue().splitlines()
    assert lines[0] == "hashing: started (0/4 files, 0 B/3.9 KiB)"
    assert "hashing: 2/4 files, 2.0 KiB/3.9 KiB (50%)" in lines  # heartbeat after PLAIN_INTERVAL
    assert "hashing: done (4/4 files, 3.9 KiB/3.9 KiB)" in lines
    assert "failed uploading: a.png: 403 Forbidden" in lines
    assert lines[-1] == "uploading: done (2/2 files, 2.0 KiB/2.0 KiB)"
    assert view.failures == [("a.png", "403 Forbidden")]
    # each phase ends exactly once, and "done" prints nothing of its own
    assert sum("done (" in ln for ln in lines) == 2


def test_quiet_mode_has_no_heartbeats():
    console, buf = _console()
    clock = Clock()
    with ProgressView(console, "quiet", clock=clock) as view:
        for k in range(1, 11):
            clock.t += 10
            view(Event("upload", files_done=k, files_total=10))
    assert buf.getvalue().splitlines() == ["uploading: started (1/10 files)", "uploading: done (10/10 files)"]


def test_rich_mode_draws_bars_with_counts_bytes_and_rate():
    console, buf = _console(terminal=True)
    with ProgressView(console, "rich") as view:
        view(Event("hash", files_done=150, files_total=300, bytes_done=32 << 20, bytes_total=64 << 20))
        view(Event("insert", files_done=10, files_total=300))
    out = buf.getvalue()
    assert "hashing" in out and "150/300 files" in out and "64.0 MiB" in out
    assert "inserting rows" in out and "10/300 files" in out
    assert "100.0%" in out  # bars of unfinished phases are completed when the view closes


def test_seed_progress_from_upload_execution_is_rendered():
    console, buf = _console()
    with ProgressView(console, "plain") as view:
        view(UploadProgress(phase="validate", message="checking execution 1-X"))
        view(UploadProgress(phase="upload", bytes_completed=0, bytes_total=1000, percent_complete=0.0))
        view(UploadProgress(phase="upload", bytes_completed=1000, bytes_total=1000, percent_complete=100.0))
        view(UploadProgress(phase="link", message="linking assets to types and the execution"))
        view(UploadProgress(phase="done", message="execution 1-X: ok"))
    assert buf.getvalue().splitlines() == [
        "validate: checking execution 1-X",
        "uploading: started (0 B/1000 B, 0%)",
        "uploading: done (1000 B/1000 B, 100%)",
        "link: linking assets to types and the execution",
    ]


def test_a_broken_console_never_breaks_the_engine_sink():
    class Boom:
        def __call__(self, ev):
            raise RuntimeError("display broke")

    sink = EventSink(Boom(), interval=0)
    sink.set_total("hash", 1)  # logged and ignored, not raised
    sink.advance("hash", 1)


def test_summary_table_has_totals_and_throughput():
    console, buf = _console(width=120)
    tables = {"demo-schema:Image": {"inserted": 290, "present": 10, "failed": 0, "bytes": 300 * 1024},
              "deriva-ml:Execution_Asset": {"inserted": 1, "present": 0, "failed": 1, "bytes": 64 << 20}}
    console.print(summary_table(tables, elapsed=4.0))
    out = buf.getvalue()
    assert "demo-schema:Image" in out and "deriva-ml:Execution_Asset" in out
    total_line = next(ln for ln in out.splitlines() if "total" in ln)
    assert "291" in total_line and "10" in total_line and "1" in total_line and "64.3 MiB" in total_line
    assert "64.3 MiB sent in 4.0 s (16.1 MiB/s)" in out
    lines = summary_lines(tables, elapsed=4.0)
    assert lines[0] == "demo-schema:Image: inserted 290, already present 10, failed 0, 300.0 KiB"
    assert lines[-1].startswith("total: 64.3 MiB sent in 4.0 s")


def test_plan_table_and_lines():
    from deriva_upload.render import plan_lines, plan_table

    tables = {"demo-schema:Image": dict(files=10, bytes=10240, present=4, to_upload=6, upload_bytes=6144,
                                        to_insert=6, conflicts=0),
              "deriva-ml:Execution_Asset": dict(files=1, bytes=1 << 20, present=0, to_upload=0, upload_bytes=0,
                                                to_insert=1, conflicts=1)}
    rows = {"demo-schema:Execution_Image_Quality": 10}
    console, buf = _console(width=160)
    console.print(plan_table(tables, rows))
    out = buf.getvalue()
    assert "demo-schema:Execution_Image_Quality" in out and "≤ 10" in out
    total = [x for x in next(ln for ln in out.splitlines() if "total" in ln).split() if x != "│"]
    assert total == ["total", "11", "1.0", "MiB", "4", "6", "6.0", "KiB", "7", "1"]
    lines = plan_lines(tables, rows)
    assert lines[0] == ("demo-schema:Image: 10 files (10.0 KiB), already present 4, to upload 6 (6.0 KiB), "
                        "to insert 6, conflicts 0")
    assert lines[-1] == "demo-schema:Execution_Image_Quality: up to 10 row(s) to insert (existing rows are skipped)"
