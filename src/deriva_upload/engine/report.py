"""The result of an upload run: per file, per table, and run statistics.

Plain data with ``to_dict``/``to_json``; ``api.upload_directory`` turns it into the
seed's ``dict[path, FileUploadState]``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from collections.abc import Mapping
from typing import Any

from deriva_upload.progress import UploadState


@dataclass(slots=True)
class FileResult:
    """What happened to one file (``path`` is its absolute path, ``rel`` relative to the root)."""

    rel: str
    state: UploadState
    status: str = ""
    table: str | None = None
    rid: str | None = None
    url: str | None = None
    md5: str | None = None
    sha256: str | None = None
    length: int | None = None
    record: Mapping[str, Any] | None = None  # the catalog row (a compact read-only mapping)
    error: str | None = None
    # what the engine did: "uploaded" (object sent), "present" (row already there),
    # "inserted" (object reused, row added), "resumed" (chunked job continued), "table"
    action: str = ""
    # The path is derived from one root string shared by the whole run (a 100,000-file
    # report would otherwise hold 100,000 absolute path strings); ``abs_path`` is set
    # only for a file that does not live at root/rel.
    root: str | None = None
    abs_path: str | None = None

    @property
    def path(self) -> str:
        if self.abs_path is not None:
            return self.abs_path
        return os.path.join(self.root, self.rel) if self.root else self.rel

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("root", "abs_path")}
        d["path"] = self.path
        d["state"] = self.state.name
        d["record"] = dict(self.record) if self.record is not None else None
        return d


@dataclass(slots=True)
class TableCounts:
    """Per target table: rows inserted, rows already present, files failed, bytes sent."""

    inserted: int = 0
    present: int = 0
    failed: int = 0
    bytes: int = 0


@dataclass
class RunStats:
    """Wire and timing statistics of one run."""

    requests: int = 0
    retries: int = 0
    bytes_sent: int = 0
    elapsed: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


@dataclass(repr=False)
class UploadReport:
    """Everything an upload run did. ``failed`` lists the files that did not make it.

    ``repr`` is a one-line summary: asyncio formats the repr of a finished main task's
    result when ``asyncio.run`` exits, which for a full repr of a 100,000-file report
    would cost seconds and a huge string.
    """

    files: dict[str, FileResult] = field(default_factory=dict)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    tables: dict[str, TableCounts] = field(default_factory=dict)
    stats: RunStats = field(default_factory=RunStats)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, FileResult]:
        return {p: r for p, r in self.files.items() if r.state != UploadState.success}

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self, table: str) -> TableCounts:
        return self.tables.setdefault(table, TableCounts())

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": {p: r.to_dict() for p, r in self.files.items()},
            "unmatched": [{"path": p, "reason": r} for p, r in self.unmatched],
            "tables": {t: asdict(c) for t, c in self.tables.items()},
            "stats": asdict(self.stats),
            "warnings": list(self.warnings),
            "failed": sorted(self.failed),
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), default=str, **kw)

    def __repr__(self) -> str:
        return f"<UploadReport {self.summary()}>"

    def summary(self) -> str:
        """One line: files ok/failed, unmatched, requests and time."""
        n_ok = len(self.files) - len(self.failed)
        return (f"{n_ok} file(s) ok, {len(self.failed)} failed, {len(self.unmatched)} unmatched; "
                f"{self.stats.requests} requests, {self.stats.bytes_sent} bytes sent in {self.stats.elapsed:.2f}s")


@dataclass(repr=False)
class VerifyReport:
    """``verify``: per file, whether the row exists and the object's digests match."""

    def __repr__(self) -> str:
        return f"<VerifyReport {len(self.ok)} ok, {len(self.problems)} problem(s)>"

    ok: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # table files: not checkable row by row

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": list(self.ok), "problems": dict(self.problems),
                "unmatched": [{"path": p, "reason": r} for p, r in self.unmatched], "skipped": list(self.skipped),
                "passed": self.passed}
