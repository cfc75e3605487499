"""What an execution upload did, per table, for callers and ``--json`` output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from deriva_upload.engine.report import TableCounts
from deriva_upload.execution.problems import Problem

#: Rows of one table: inserted now, already present, failed; bytes sent for them.
#: The same tally the engine keeps for asset tables, so both add up directly.
TableTally = TableCounts


def add_counts(tally: TableTally, counts: TableCounts) -> None:
    """Add the engine's counts for one table to the execution's tally."""
    tally.inserted += counts.inserted
    tally.present += counts.present
    tally.failed += counts.failed
    tally.bytes += counts.bytes


@dataclass
class ExecutionReport:
    """What ``upload_execution`` did, per table, with the RIDs of the uploaded assets."""

    execution_rid: str
    tables: dict[str, TableTally] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)
    failures: list[Problem] = field(default_factory=list)
    unmatched: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    requests: int = 0
    retries: int = 0
    elapsed: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every staged row and file made it (or was already there)."""
        return self.error is None and not self.failures

    def tally(self, table: str) -> TableTally:
        return self.tables.setdefault(table, TableTally())

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_rid": self.execution_rid,
            "ok": self.ok,
            "tables": {t: asdict(c) for t, c in sorted(self.tables.items())},
            "assets": dict(sorted(self.assets.items())),
            "failures": [asdict(p) for p in self.failures],
            "unmatched": [asdict(p) for p in self.unmatched],
            "warnings": list(self.warnings),
            "bytes_sent": self.bytes_sent,
            "requests": self.requests,
            "retries": self.retries,
            "elapsed": round(self.elapsed, 3),
            "error": self.error,
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), default=str, **kw)
