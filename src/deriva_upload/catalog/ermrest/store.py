"""Catalog storage: one SQLite file per catalog (WAL) and a registry of catalogs.

Writes are serialized per catalog by a lock around one writer connection (SQLite has a
single writer anyway; serializing in-process avoids busy-waiting).  Each write request is
one transaction: it either commits completely or leaves nothing behind.  Reads use a small
pool of reader connections and run concurrently with the writer thanks to WAL.
"""

from __future__ import annotations

import json
import queue
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .errors import Conflict, NotFound
from .model import ModelEditor, ModelState, digest, new_model_doc, phys_name, qi, table_ddl
from .rid import rid_encode, snaptime_encode

T = TypeVar("T")

# How long a connection waits for a lock held by another process before failing; the
# server is the only writer in practice, so this only matters for external tools.
BUSY_TIMEOUT_S = 30
# Reader connections kept open per catalog (more are opened on demand and closed after use).
READER_POOL_SIZE = 8
CATALOG_FILE = "catalog-{id}.sqlite"
REGISTRY_FILE = "registry.sqlite"
_META_DDL = "CREATE TABLE IF NOT EXISTS _ermrest_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)"


def now_timestamp() -> str:
    """Server timestamps (RCT/RMT) in the ISO form ERMrest emits for timestamptz."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _regexp(pattern: str | None, value: object) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if _compiled(pattern, 0).search(value if isinstance(value, str) else str(value)) else 0


def _ciregexp(pattern: str | None, value: object) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if _compiled(pattern, re.IGNORECASE).search(value if isinstance(value, str) else str(value)) else 0


def _textsearch(pattern: str | None, value: object) -> int | None:
    """Rough stand-in for PostgreSQL full-text search: every word appears, case-insensitively."""
    if pattern is None or value is None:
        return None
    text = (value if isinstance(value, str) else str(value)).lower()
    return 1 if all(w in text for w in pattern.lower().split()) else 0


_RE_CACHE: dict[tuple[str, int], re.Pattern] = {}


def _compiled(pattern: str, flags: int) -> re.Pattern:
    key = (pattern, flags)
    r = _RE_CACHE.get(key)
    if r is None:
        try:
            r = re.compile(pattern, flags)
        except re.error as e:
            raise sqlite3.OperationalError(f"invalid regular expression: {e}") from None
        if len(_RE_CACHE) > 256:
            _RE_CACHE.clear()
        _RE_CACHE[key] = r
    return r


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.create_function("regexp", 2, _regexp, deterministic=True)
    conn.create_function("ciregexp", 2, _ciregexp, deterministic=True)
    conn.create_function("textsearch", 2, _textsearch, deterministic=True)
    return conn


class CatalogStore:
    """One catalog: its SQLite file, the model digest, the RID sequence and the write lock."""

    def __init__(self, catalog_id: str, path: Path) -> None:
        self.id = catalog_id
        self.path = path
        self.lock = threading.RLock()
        self.writer = connect(path)
        self.writer.execute(_META_DDL)
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self.closed = False
        self.known_clients: set[str] = set()
        self.seq = 1
        self.model: ModelState = digest(new_model_doc())
        self._snap_us = int(time.time() * 1_000_000)
        meta = dict(self.writer.execute("SELECT k, v FROM _ermrest_meta").fetchall())
        if "model" not in meta:
            with self.transaction() as conn:
                conn.execute("INSERT INTO _ermrest_meta VALUES ('model', ?), ('rid_seq', '1')", (json.dumps(new_model_doc()),))
            meta = dict(self.writer.execute("SELECT k, v FROM _ermrest_meta").fetchall())
        self.model = digest(json.loads(meta["model"]))
        self.seq = int(meta["rid_seq"])

    # -- RIDs and snaptimes
    def next_rid(self) -> str:
        """Allocate one RID; only call with the write lock held inside a transaction."""
        n = self.seq
        self.seq += 1
        return rid_encode(n)

    def allocate(self, count: int) -> range:
        start = self.seq
        self.seq += count
        return range(start, start + count)

    def bump_seq(self, value: int) -> None:
        if value >= self.seq:
            self.seq = value + 1

    @property
    def snaptime(self) -> str:
        return snaptime_encode(self._snap_us)

    # -- connections
    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        if self.closed:
            raise NotFound(f"Catalog {self.id} does not exist.")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = connect(self.path)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            if self.closed or self._readers.qsize() >= READER_POOL_SIZE:
                conn.close()
            else:
                self._readers.put(conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK and restore the sequence."""
        with self.lock:
            if self.closed:
                raise NotFound(f"Catalog {self.id} does not exist.")
            conn = self.writer
            seq0, model0, clients0 = self.seq, self.model, set(self.known_clients)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                if self.seq != seq0:
                    conn.execute("UPDATE _ermrest_meta SET v = ? WHERE k = 'rid_seq'", (str(self.seq),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self.seq, self.model, self.known_clients = seq0, model0, clients0
                raise
            self._snap_us = max(int(time.time() * 1_000_000), self._snap_us + 1)

    # -- model edits
    def edit_model(self, fn: Callable[[ModelEditor], T]) -> T:
        """Run ``fn`` on a model editor, then apply its SQLite plan and save, atomically."""
        with self.lock:
            editor = ModelEditor(self.model, self.next_rid)
            fk_off = False
            try:
                with self.transaction() as conn:
                    result = fn(editor)
                    new_state = editor.finish()
                    plan = editor.plan
                    if plan.rebuild or plan.drop:
                        # foreign_keys cannot change inside a transaction; nothing is written yet
                        conn.execute("COMMIT")
                        conn.execute("PRAGMA foreign_keys=OFF")
                        fk_off = True
                        conn.execute("BEGIN IMMEDIATE")
                    try:
                        for phys in plan.drop:
                            conn.execute(f"DROP TABLE IF EXISTS {qi(phys)}")
                        for rid in plan.create:
                            for stmt in table_ddl(new_state, new_state.by_rid[rid]):
                                conn.execute(stmt)
                        for rid, mapping in plan.rebuild.items():
                            self._rebuild(conn, new_state, rid, mapping)
                        if fk_off and conn.execute("PRAGMA foreign_key_check").fetchall():
                            raise Conflict("Existing rows violate the changed model (foreign key check failed).")
                    except sqlite3.IntegrityError as e:
                        raise Conflict(f"Existing rows violate the changed model: {e}") from None
                    conn.execute(
                        "UPDATE _ermrest_meta SET v = ? WHERE k = 'model'",
                        (json.dumps(new_state.doc, separators=(",", ":")),),
                    )
                    self.model = new_state
            finally:
                if fk_off:
                    self.writer.execute("PRAGMA foreign_keys=ON")
            return result

    def _rebuild(self, conn: sqlite3.Connection, state: ModelState, rid: str, mapping: dict[str, str | None]) -> None:
        info = state.by_rid[rid]
        tmp = info.phys + "__new"
        stmts = table_ddl(state, info, phys=tmp)
        conn.execute(stmts[0])
        dest, src = [], []
        for c in info.columns:
            old = mapping.get(c.name)
            dest.append(qi(c.name))
            if old is not None:
                src.append(qi(old))
            else:
                src.append("?")
        params = [c.default for c in info.columns if mapping.get(c.name) is None]
        conn.execute(f"INSERT INTO {qi(tmp)} ({', '.join(dest)}) SELECT {', '.join(src)} FROM {qi(info.phys)}", params)
        conn.execute(f"DROP TABLE {qi(info.phys)}")
        conn.execute(f"ALTER TABLE {qi(tmp)} RENAME TO {qi(info.phys)}")
        for stmt in stmts[1:]:
            conn.execute(stmt.replace(f"ON {qi(tmp)}", f"ON {qi(info.phys)}"))

    def register_client(self, conn: sqlite3.Connection, client: dict) -> None:
        """Make sure ``client`` has an ERMrest_Client row (RCB/RMB reference it)."""
        cid = client["id"]
        if cid in self.known_clients:
            return
        try:
            info = self.model.table("public", "ERMrest_Client")
        except Exception:
            return
        now = now_timestamp()
        cur = conn.execute(f"SELECT 1 FROM {qi(info.phys)} WHERE \"ID\" = ?", (cid,))
        if cur.fetchone() is None:
            cols = info.colmap
            row = {
                "RID": self.next_rid(),
                "RCT": now,
                "RMT": now,
                "RCB": None,
                "RMB": None,
                "ID": cid,
                "Display_Name": client.get("display_name"),
                "Full_Name": client.get("full_name"),
                "Email": client.get("email"),
                "Client_Object": json.dumps(client, separators=(",", ":")),
            }
            row = {k: v for k, v in row.items() if k in cols}
            conn.execute(
                f"INSERT INTO {qi(info.phys)} ({', '.join(qi(k) for k in row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
        self.known_clients.add(cid)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.writer.close()
            while True:
                try:
                    self._readers.get_nowait().close()
                except queue.Empty:
                    break


def snapshot(store: CatalogStore) -> sqlite3.Connection:
    """An in-memory copy of a catalog, used to stamp out identical catalogs quickly."""
    mem = sqlite3.connect(":memory:", check_same_thread=False)
    with store.lock:
        store.writer.backup(mem)
    return mem


class Registry:
    """The catalogs under one data directory (ids are never reused)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.conn = connect(self.data_dir / REGISTRY_FILE)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS catalogs (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL, deleted TEXT)"
        )
        self.open: dict[str, CatalogStore] = {}

    def ids(self) -> list[str]:
        with self.lock:
            return [str(r[0]) for r in self.conn.execute("SELECT id FROM catalogs WHERE deleted IS NULL ORDER BY id")]

    def get(self, catalog_id: str) -> CatalogStore:
        store = self.open.get(catalog_id)
        if store is not None:
            return store
        with self.lock:
            store = self.open.get(catalog_id)
            if store is not None:
                return store
            if not catalog_id.isdigit():
                raise NotFound(f"Catalog {catalog_id} does not exist.")
            row = self.conn.execute("SELECT 1 FROM catalogs WHERE id = ? AND deleted IS NULL", (int(catalog_id),)).fetchone()
            if row is None:
                raise NotFound(f"Catalog {catalog_id} does not exist.")
            store = CatalogStore(catalog_id, self.data_dir / CATALOG_FILE.format(id=catalog_id))
            self.open[catalog_id] = store
            return store

    def create(self, catalog_id: str | None = None, template: sqlite3.Connection | None = None) -> CatalogStore:
        """Register and open a new catalog; ``template`` (see :func:`snapshot`) seeds its file."""
        with self.lock:
            if catalog_id is not None:
                if not catalog_id.isdigit():
                    raise Conflict("Embedded catalog ids must be decimal integers.")
                if self.conn.execute("SELECT 1 FROM catalogs WHERE id = ?", (int(catalog_id),)).fetchone():
                    raise Conflict(f"Catalog {catalog_id} already exists.")
                self.conn.execute("INSERT INTO catalogs (id, created) VALUES (?, ?)", (int(catalog_id), now_timestamp()))
                cid = catalog_id
            else:
                cur = self.conn.execute("INSERT INTO catalogs (created) VALUES (?)", (now_timestamp(),))
                cid = str(cur.lastrowid)
            path = self.data_dir / CATALOG_FILE.format(id=cid)
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            if template is not None:
                dest = sqlite3.connect(str(path))
                try:
                    template.backup(dest)
                finally:
                    dest.close()
            store = CatalogStore(cid, path)
            self.open[cid] = store
            return store

    def delete(self, catalog_id: str) -> None:
        store = self.get(catalog_id)
        with self.lock:
            self.conn.execute("UPDATE catalogs SET deleted = ? WHERE id = ?", (now_timestamp(), int(catalog_id)))
            self.open.pop(catalog_id, None)
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(store.path) + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        with self.lock:
            for store in self.open.values():
                store.close()
            self.open.clear()
            self.conn.close()


__all__ = ["CatalogStore", "Registry", "now_timestamp", "phys_name"]
