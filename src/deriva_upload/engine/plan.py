"""Pure planning: given an item, what the journal and the catalog know, what is left to do.

``decide`` is the one rule the pipeline, the dry run and ``verify`` share. ``Plan`` is
what ``plan_upload`` (the dry run) returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from deriva_upload.engine import limits
from deriva_upload.engine.items import Digests, Item
from deriva_upload.engine.journal import Entry

Action = Literal["present", "insert", "upload", "resume", "table", "table-done", "conflict"]


@dataclass(frozen=True)
class Decision:
    """What one file still needs.

    ``present``: its row exists (``row``). ``insert``: the object is stored (``url``),
    only the row is missing. ``upload``: send the object (``head`` first if a previous
    run may have stored it already), then insert. ``resume``: continue the chunked job
    ``job``. ``table``/``table-done``: a table file to POST / already POSTed.
    ``conflict``: the pre-allocated RID holds another file (``reason``).
    """

    action: Action
    row: Mapping[str, Any] | None = None
    url: str | None = None
    head: bool = False
    job: str | None = None
    reason: str = ""


def find_row(item: Item, digests: Digests, rows_by_md5: Mapping[str, list[Mapping[str, Any]]],
             rows_by_rid: Mapping[str, Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, str]:
    """The existing row of this file (record_query_template: MD5 + Filename; or its RID).

    Returns ``(row, conflict_reason)``; a RID holding different content is a conflict.
    """
    if item.rid is not None and item.rid in rows_by_rid:
        row = rows_by_rid[item.rid]
        if row.get("MD5") == digests.md5:
            return row, ""
        return None, (f"pre-allocated RID {item.rid} already holds another file "
                      f"({row.get('Filename')!r}, MD5 {row.get('MD5')})")
    for row in rows_by_md5.get(digests.md5, ()):
        if row.get("Filename") == item.file_name:
            return row, ""
    return None, ""


def is_chunked(item: Item, chunk_size: int | None) -> tuple[bool, int]:
    """Whether the object goes through a chunked job, and the chunk length.

    GenericUploader chunks empty files and files above 25 MiB; an explicit smaller
    ``chunk_size`` (option or spec) lowers the threshold to itself.
    """
    length = chunk_size or item.chunk_size or limits.DEFAULT_CHUNK_SIZE
    threshold = min(length, limits.DEFAULT_CHUNK_SIZE)
    return (item.size == 0 or item.size > threshold), length


def decide(item: Item, digests: Digests | None, entry: Entry | None, row: Mapping[str, Any] | None,
           conflict: str = "", *, head_policy: str = "auto", journal_rebuilt: bool = False) -> Decision:
    """The next step for ``item`` (see :class:`Decision`)."""
    if item.kind == "table":
        if entry is not None and entry.state == "done" and (entry.size, entry.mtime_ns) == (item.size, item.mtime_ns):
            return Decision("table-done")
        return Decision("table")
    if conflict:
        return Decision("conflict", reason=conflict)
    if row is not None:
        return Decision("present", row=row, url=row.get("URL"))
    same = entry is not None and digests is not None and entry.digests_for(item.size, item.mtime_ns) == digests
    if same and entry is not None and entry.url:
        return Decision("insert", url=entry.url)
    if same and entry is not None and entry.job_url:
        return Decision("resume", job=entry.job_url, head=True)
    if head_policy == "always":
        head = True
    elif head_policy == "never":
        head = False
    else:
        head = journal_rebuilt or (entry is not None and entry.state in ("putting", "stored", "failed"))
    return Decision("upload", head=head)


# -- dry run --------------------------------------------------------------------------


@dataclass
class TablePlan:
    """Per target table: what the dry run found."""

    files: int = 0
    bytes: int = 0
    present: int = 0
    to_upload: int = 0
    upload_bytes: int = 0
    to_insert: int = 0
    conflicts: int = 0


@dataclass(repr=False)
class Plan:
    """What an upload would do; nothing was written anywhere to compute it."""

    def __repr__(self) -> str:  # short: asyncio formats the repr of asyncio.run's result on exit
        return f"<Plan {self.total_files} file(s), {self.total_bytes} bytes, {len(self.unmatched)} unmatched>"

    tables: dict[str, TablePlan] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, item: Item, decision: Decision, digests: Digests | None) -> None:
        t = self.tables.setdefault(item.table_key, TablePlan())
        t.files += 1
        t.bytes += item.size
        if decision.action == "present":
            t.present += 1
        elif decision.action in ("upload", "resume"):
            t.to_upload += 1
            t.upload_bytes += item.size
            t.to_insert += 1
        elif decision.action in ("insert", "table"):
            t.to_insert += 1
        elif decision.action == "table-done":
            t.present += 1
        elif decision.action == "conflict":
            t.conflicts += 1
        self.files.append({"path": item.rel, "table": item.table_key, "kind": item.kind, "size": item.size,
                           "action": decision.action, "rid": item.rid, "metadata": dict(item.metadata),
                           "md5": digests.md5 if digests else None, "reason": decision.reason or None})

    @property
    def total_files(self) -> int:
        return sum(t.files for t in self.tables.values())

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {"tables": {k: asdict(v) for k, v in self.tables.items()}, "files": list(self.files),
                "unmatched": [{"path": p, "reason": r} for p, r in self.unmatched], "errors": dict(self.errors),
                "total_files": self.total_files, "total_bytes": self.total_bytes}

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), default=str, **kw)


def group_rows(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    """Rows indexed by one column's value."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        v = r.get(key)
        if v is not None:
            out.setdefault(str(v), []).append(r)
    return out
