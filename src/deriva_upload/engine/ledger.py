"""The SQLite ledger of leased RIDs for rows that have no natural key.

Keyed by (destination, file, line, row content): a rerun re-sends the same RID and
``onconflict=skip`` drops the duplicate; an edited row gets a new RID.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from deriva_upload.engine.destination import Destination


class RowSource(Protocol):
    """A row with where it came from: the file, its line, and its values."""

    file: str
    line: int | None
    values: Mapping[str, Any]


# Hex digits of the destination key's SHA-256 in the ledger's file name: enough to keep
# catalogs apart in one directory, short enough to read.
DEST_DIGEST_CHARS = 16


class RidLedger:
    """Leased RIDs of rows without a natural key, remembered across runs.

    Keyed by (destination, file, line, row content): a rerun re-sends the same RID and
    ``onconflict=skip`` drops the duplicate; an edited row gets a new RID.
    """

    def __init__(self, path: Path, dest_key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dest_key = dest_key
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (dest TEXT, tbl TEXT, file TEXT, line INTEGER, "
                        "digest TEXT, rid TEXT NOT NULL, PRIMARY KEY (dest, tbl, file, line, digest))")
        self.db.commit()

    @staticmethod
    def digest(values: Mapping[str, Any]) -> str:
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, tbl: str, row: RowSource) -> str | None:
        cur = self.db.execute("SELECT rid FROM rows WHERE dest=? AND tbl=? AND file=? AND line=? AND digest=?",
                              (self.dest_key, tbl, row.file, row.line or 0, self.digest(row.values)))
        hit = cur.fetchone()
        return hit[0] if hit else None

    def put_many(self, tbl: str, pairs: Sequence[tuple[RowSource, str]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?,?)",
                                [(self.dest_key, tbl, r.file, r.line or 0, self.digest(r.values), rid)
                                 for r, rid in pairs])

    def close(self) -> None:
        self.db.close()


def ledger_path(prefix: Path, dest: Destination, journal_dir: Path | None, *, under_upload_root: bool = True) -> Path:
    """The ledger file: next to the engine's journal, else under ``<prefix>/deriva-ml/.deriva-upload/``
    (or ``<prefix>/.deriva-upload/`` for a generic upload root)."""
    default = prefix / "deriva-ml" / ".deriva-upload" if under_upload_root else prefix / ".deriva-upload"
    base = Path(journal_dir) if journal_dir is not None else default
    key = hashlib.sha256(dest.key().encode()).hexdigest()[:DEST_DIGEST_CHARS]
    return base / f"rows-{key}.sqlite"
