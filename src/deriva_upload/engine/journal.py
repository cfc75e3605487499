"""The per-destination SQLite journal: what each file's upload has achieved so far.

One journal per (upload root, destination, spec): ``<root>/.deriva-upload/journal-<key>.sqlite``
(the scanner never enters ``.deriva-upload``). Per file it remembers size+mtime and the
digests computed for them, the object's version URL, an open chunked job with the
chunks already sent, and the row's RID. Writes are buffered and committed in batches
(one transaction per batch); WAL mode keeps the file consistent through ``kill -9``.
A journal that cannot be read is moved aside with a warning and rebuilt — the catalog
is the source of truth, the journal only saves work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deriva_upload.engine import limits
from deriva_upload.engine.items import Digests

log = logging.getLogger("deriva_upload.engine.journal")

JOURNAL_DIR = ".deriva-upload"
SCHEMA_VERSION = "1"
# Entries kept in memory after they were written (a few windows' worth), so the many
# small updates of one file need no SELECT; older ones are read back from SQLite.
RECENT_ENTRIES = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    rel TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    md5 TEXT, sha256 TEXT,
    url TEXT,
    job_url TEXT, job_chunk INTEGER, chunks TEXT,
    rid TEXT,
    state TEXT NOT NULL DEFAULT 'new',
    error TEXT,
    updated REAL NOT NULL
);
"""
_COLUMNS = ("rel", "size", "mtime_ns", "md5", "sha256", "url", "job_url", "job_chunk", "chunks", "rid",
            "state", "error", "updated")


@dataclass(frozen=True, slots=True)
class Entry:
    """What the journal knows about one file.

    ``state``: ``hashed`` (digests known), ``putting`` (an object PUT/job may have been
    started), ``stored`` (object stored at ``url``), ``done`` (row ``rid`` exists),
    ``failed``.
    """

    rel: str
    size: int
    mtime_ns: int
    md5: str | None = None
    sha256: str | None = None
    url: str | None = None
    job_url: str | None = None
    job_chunk: int | None = None
    chunks: frozenset[int] = field(default_factory=frozenset)
    rid: str | None = None
    state: str = "new"
    error: str | None = None

    def digests_for(self, size: int, mtime_ns: int) -> Digests | None:
        """The recorded digests if they belong to this exact size and mtime."""
        if self.md5 and self.sha256 and (self.size, self.mtime_ns) == (size, mtime_ns):
            return Digests(self.md5, self.sha256)
        return None


def journal_key(dest_key: str, spec: Mapping[str, Any]) -> str:
    """Short stable hash of (destination, spec): names the journal file."""
    spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{dest_key}\n{spec_json}".encode()).hexdigest()[:16]


def journal_path(root: Path, dest_key: str, spec: Mapping[str, Any], journal_dir: Path | None = None) -> Path:
    base = Path(journal_dir) if journal_dir is not None else Path(root) / JOURNAL_DIR
    return base / f"journal-{journal_key(dest_key, spec)}.sqlite"


class Journal:
    """Buffered access to one journal file (used from the event-loop thread only)."""

    def __init__(self, path: Path | None, dest_key: str = "", batch: int = limits.JOURNAL_BATCH) -> None:
        self.path = path
        self.dest_key = dest_key
        self.batch = batch
        self.rebuilt = False  # a corrupt journal was moved aside: the catalog must be consulted
        self.created = False  # no journal existed before this run
        self.warnings: list[str] = []
        self._pending: dict[str, Entry] = {}
        self._cache: dict[str, Entry] = {}
        self._db: sqlite3.Connection | None = None
        if path is None:
            self.created = True
            return
        self._open()

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def for_upload(cls, root: Path, dest_key: str, spec: Mapping[str, Any], journal_dir: Path | None = None,
                   batch: int = limits.JOURNAL_BATCH) -> Journal:
        """The journal of (root, destination, spec); in memory when no place is writable."""
        path = journal_path(root, dest_key, spec, journal_dir)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            j = cls(None, dest_key, batch)
            j.warnings.append(f"journal directory {path.parent} not writable ({e}); resuming after a crash "
                              "will re-check everything against the catalog")
            return j
        try:
            return cls(path, dest_key, batch)
        except (sqlite3.Error, OSError) as e:
            j = cls(None, dest_key, batch)
            j.warnings.append(f"journal {path} cannot be used ({e}); resuming after a crash will re-check "
                              "everything against the catalog")
            return j

    @classmethod
    def memory(cls) -> Journal:
        return cls(None)

    def _open(self) -> None:
        assert self.path is not None
        self.created = not self.path.exists()
        try:
            self._connect()
            self._check()
        except sqlite3.DatabaseError as e:
            self._close_quietly()
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    try:
                        os.replace(src, Path(str(aside) + suffix))
                    except OSError:
                        src.unlink(missing_ok=True)
            msg = f"journal {self.path} was unreadable ({e}); moved to {aside.name} and rebuilt from the catalog"
            log.warning(msg)
            self.warnings.append(msg)
            self.rebuilt = True
            self.created = True
            self._connect()
            self._check()

    def _connect(self) -> None:
        assert self.path is not None
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    def _check(self) -> None:
        assert self._db is not None
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if not row or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        meta = dict(self._db.execute("SELECT k, v FROM meta").fetchall())
        if not meta:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO meta (k, v) VALUES (?, ?)",
                                 [("schema_version", SCHEMA_VERSION), ("destination", self.dest_key),
                                  ("created", str(time.time()))])
            self._db.execute("COMMIT")
        elif meta.get("schema_version") != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"unknown journal schema version {meta.get('schema_version')!r}")

    def _close_quietly(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    # -- reading ----------------------------------------------------------------------

    def get_many(self, rels: Iterable[str]) -> dict[str, Entry]:
        """Entries for these files (pending, not yet flushed writes included)."""
        rels = list(rels)
        out: dict[str, Entry] = {}
        missing: list[str] = []
        for r in rels:
            e = self._pending.get(r) or self._cache.get(r)
            if e is not None:
                out[r] = e
            else:
                missing.append(r)
        if self._db is not None and missing:
            for i in range(0, len(missing), 500):
                part = missing[i:i + 500]
                q = f"SELECT {', '.join(_COLUMNS)} FROM files WHERE rel IN ({','.join('?' * len(part))})"
                for row in self._db.execute(q, part):
                    out[row[0]] = _entry(row)
        return out

    def get(self, rel: str) -> Entry | None:
        return self.get_many([rel]).get(rel)

    def all(self) -> list[Entry]:
        """Every entry (for ``status``)."""
        self.flush()
        if self._db is None:
            return sorted(self._cache.values(), key=lambda e: e.rel)
        return [_entry(r) for r in self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM files ORDER BY rel")]

    # -- writing ----------------------------------------------------------------------

    def put(self, entry: Entry) -> None:
        """Record an entry; committed with the next batch."""
        self._pending[entry.rel] = entry
        self._cache[entry.rel] = entry  # recent entries: update() needs no SELECT
        if len(self._pending) >= self.batch:
            self.flush()

    def update(self, rel: str, size: int, mtime_ns: int, **changes: Any) -> Entry:
        """Change some fields of a file's entry (creating it if needed)."""
        cur = self.get(rel)
        if cur is None or (cur.size, cur.mtime_ns) != (size, mtime_ns):
            base = Entry(rel, size, mtime_ns)  # new content: nothing recorded for the old one applies
        else:
            base = cur
        if "chunks" in changes and not isinstance(changes["chunks"], frozenset):
            changes["chunks"] = frozenset(changes["chunks"])
        new = replace(base, size=size, mtime_ns=mtime_ns, **changes)
        self.put(new)
        return new

    def flush(self) -> None:
        """Commit buffered entries in one transaction."""
        if self._db is not None and len(self._cache) > RECENT_ENTRIES:
            self._cache = {r: e for r, e in self._cache.items() if r in self._pending}
        if not self._pending:
            return
        if self._db is None:
            self._pending.clear()
            return
        now = time.time()
        rows = [(e.rel, e.size, e.mtime_ns, e.md5, e.sha256, e.url, e.job_url, e.job_chunk,
                 ",".join(map(str, sorted(e.chunks))) or None, e.rid, e.state, e.error, now)
                for e in self._pending.values()]
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO files ({', '.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
                rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            msg = f"journal write failed ({e}); continuing without resume information for {len(rows)} file(s)"
            log.warning(msg)
            self.warnings.append(msg)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._close_quietly()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _entry(row: tuple[Any, ...]) -> Entry:
    chunks = frozenset(int(x) for x in row[8].split(",")) if row[8] else frozenset()
    return Entry(rel=row[0], size=row[1], mtime_ns=row[2], md5=row[3], sha256=row[4], url=row[5],
                 job_url=row[6], job_chunk=row[7], chunks=chunks, rid=row[9], state=row[10], error=row[11])
