"""Progress events: throttled, totals, a failing callback never breaks the run."""

from __future__ import annotations

from deriva_upload.engine.events import Event, EventSink


def test_throttle_and_forced_events() -> None:
    now = [0.0]
    got: list[Event] = []
    sink = EventSink(got.append, interval=1.0, clock=lambda: now[0])
    sink.set_total("upload", 10, 1000)
    for _ in range(5):
        sink.advance("upload", files=1, nbytes=100)
    assert len(got) == 1  # only the phase start; the advances came within the interval
    now[0] = 2.0
    sink.advance("upload", files=1, nbytes=100)
    assert got[-1].files_done == 6 and got[-1].bytes_done == 600 and got[-1].percent == 60.0
    sink.advance("upload", path="x", message="boom", failed=True)
    assert got[-1].failed and got[-1].path == "x"
    sink.finish("upload")
    assert got[-1].phase == "upload" and len(got) == 4


def test_callback_errors_are_swallowed() -> None:
    def bad(ev: Event) -> None:
        raise RuntimeError("display broke")

    sink = EventSink(bad)
    sink.set_total("hash", 1)
    sink.advance("hash", files=1, force=True)
    assert sink.files_done["hash"] == 1
