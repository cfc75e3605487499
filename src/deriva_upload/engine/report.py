"""The result of an upload run: per file, per table, and run statistics.

Plain data with ``to_dict``/``to_json``; ``api.upload_directory`` turns it into the
seed's ``dict[path, FileUploadState]``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from collections.abc import Mapping
from typing import Any

from deriva_upload.progress import UploadState


@dataclass(slots=True)
class FileResult:
    """What happened to one file."""

    path: str
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

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
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


@dataclass
class UploadReport:
    """Everything an upload run did. ``failed`` lists the files that did not make it."""

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

    def summary(self) -> str:
        """One line: files ok/failed, unmatched, requests and time."""
        n_ok = len(self.files) - len(self.failed)
        return (f"{n_ok} file(s) ok, {len(self.failed)} failed, {len(self.unmatched)} unmatched; "
                f"{self.stats.requests} requests, {self.stats.bytes_sent} bytes sent in {self.stats.elapsed:.2f}s")


@dataclass
class VerifyReport:
    """``verify``: per file, whether the row exists and the object's digests match."""

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
