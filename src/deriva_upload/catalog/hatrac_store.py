"""Storage layer of the embedded Hatrac: a local folder for bytes, SQLite for names.

The HTTP layer (:mod:`deriva_upload.catalog.hatrac`) validates names and streams
bodies; this module owns every file and every row.  User-supplied names never
become filesystem paths: object bytes live under ``data/<vv>/<version-id>``,
where the version id is random, and upload jobs under ``jobs/<job-id>``.

Small objects (up to :data:`INLINE_MAX_BYTES`) are kept as BLOBs in the version
row instead: one group-committed WAL sync then makes a whole batch of small PUTs
durable, where a file each would cost one fsync each (the reason the embedded
store reaches >= 1,000 durable PUT/s on two cores).

Durability (``durable=True``, the default): each object file is written to
``tmp/``, fsync'ed and renamed into place *before* its row is committed, and
commits use ``synchronous=FULL``, so a 201 means the version (inline bytes
included) survives a crash; a crash can only leave unreferenced files behind,
never a dangling row.  ``durable=False`` skips both syncs (faster, not crash-safe).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from deriva_upload.errors import ServerError

DB_FILE = "hatrac.sqlite"
# Bytes per read/write/hash step: big enough that syscall and GIL overhead vanish
# next to the copy, small enough to keep a few dozen concurrent requests cheap.
IO_BLOCK = 1024 * 1024
# Waiting on another writer inside SQLite; writers are serialized by a lock in
# this process already, so this only matters for a second process on the folder.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Version and job ids: 16 random bytes in RFC 4648 base32 without padding, 26
# characters, the shape the reference Hatrac uses.
ID_BYTES = 16
# Row changes committed together by the group committer: one WAL sync for up to this
# many concurrent PUTs (bounded so a burst does not hold the write lock for long).
MAX_COMMIT_BATCH = 256
# Objects up to this size live in their SQLite row (see the module docstring).  64 KiB
# keeps rows small enough that the WAL and page cache stay cheap.
INLINE_MAX_BYTES = 64 * 1024
# Names per "IN (...)" query: below SQLite's default limit of 999 bound parameters on
# old builds.
SQL_IN_LIMIT = 500
# Files in tmp/ older than this are leftovers of a crash (a PUT streams for minutes
# at most) and are removed when a store opens.
STALE_TMP_S = 24 * 3600

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS names (
    name    TEXT PRIMARY KEY,          -- percent-encoded form, '/ns/obj'
    parent  TEXT NOT NULL,             -- '' is the root namespace
    kind    TEXT NOT NULL CHECK (kind IN ('ns', 'obj')),
    deleted INTEGER NOT NULL DEFAULT 0,
    owner   TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS names_by_parent ON names (parent, name);
CREATE TABLE IF NOT EXISTS versions (
    seq          INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL UNIQUE,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    md5          BLOB NOT NULL,
    sha256       BLOB NOT NULL,
    disposition  TEXT,
    owner        TEXT NOT NULL,
    created      REAL NOT NULL,
    data         BLOB                  -- the bytes of a small object; NULL: in data/
);
CREATE INDEX IF NOT EXISTS versions_by_name ON versions (name, seq);
CREATE TABLE IF NOT EXISTS jobs (
    job            TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    owner          TEXT NOT NULL,
    chunk_length   INTEGER NOT NULL,
    content_length INTEGER NOT NULL,
    content_type   TEXT NOT NULL,
    md5            BLOB,
    sha256         BLOB,
    disposition    TEXT,
    created        REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_name ON jobs (name);
CREATE TABLE IF NOT EXISTS chunks (
    job TEXT NOT NULL,
    n   INTEGER NOT NULL,
    PRIMARY KEY (job, n)
) WITHOUT ROWID;
"""


class HatracError(ServerError):
    """A request the store refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg, status=status)
        self.message = msg


def new_id() -> str:
    """A fresh version or job id (26 characters of base32)."""
    return base64.b32encode(os.urandom(ID_BYTES)).decode("ascii").rstrip("=")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def parent_of(name: str) -> str:
    """'/a/b' -> '/a'; '/a' -> '' (the root)."""
    return name.rsplit("/", 1)[0]


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    size: int
    content_type: str
    md5: bytes
    sha256: bytes
    disposition: str | None
    path: Path
    inline: bool  # bytes kept in the row: read them with ObjectStore.read_inline


@dataclass(frozen=True)
class JobInfo:
    job: str
    name: str
    owner: str
    chunk_length: int
    content_length: int
    content_type: str
    md5: bytes | None
    sha256: bytes | None
    disposition: str | None

    @property
    def chunk_count(self) -> int:
        return -(-self.content_length // self.chunk_length)

    def chunk_size(self, n: int) -> int:
        """Exact byte length chunk ``n`` must have (the last one is the remainder)."""
        return min(self.chunk_length, self.content_length - n * self.chunk_length)


ANY = "*"  # a precondition matching any current version


@dataclass(frozen=True)
class NewVersion:
    """What an object PUT says about the version it creates (bytes and size aside)."""

    name: str
    parents: bool
    owner: str
    content_type: str
    disposition: str | None
    md5: bytes
    sha256: bytes
    # If-Match / If-None-Match: ANY, or the version ids the current version must (not) be.
    if_match: str | frozenset[str] | None = None
    if_none_match: str | frozenset[str] | None = None

    def check_precondition(self, current: str | None) -> None:
        """412 unless the object's current version (None: no content) satisfies the PUT."""
        m, n = self.if_match, self.if_none_match
        if m is not None and (current is None or (m != ANY and current not in m)):
            raise HatracError(412, f"Precondition If-Match failed for /hatrac{self.name}.")
        if n is not None and current is not None and (n == ANY or current in n):
            raise HatracError(412, f"Precondition If-None-Match failed for /hatrac{self.name}.")


@dataclass(frozen=True)
class _VersionRow:
    """A new version waiting for the group commit (``data`` set for inline objects)."""

    meta: NewVersion
    version: str
    size: int
    data: bytes | None


@dataclass
class _JobHash:
    """Running digests of a job's chunks received in order (so finalize need not re-read).

    ``next_n`` chunks have been hashed; ``claimed`` is set while a request for chunk
    ``next_n`` hashes its bytes as they stream in.  Any doubt (re-sent chunk, failed
    request) sets ``valid`` False and finalize hashes the assembled file once instead.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    md5: "hashlib._Hash" = field(default_factory=hashlib.md5)
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    next_n: int = 0
    claimed: bool = False
    valid: bool = True
    present: set[int] = field(default_factory=set)


class ObjectStore:
    """Names, versions and upload jobs of one Hatrac store rooted at a folder.

    Thread-safe: read queries use one connection per thread; write transactions are
    serialized by a lock (cheaper than SQLite's sleep-and-retry busy handler).
    """

    def __init__(self, root: Path, durable: bool = True) -> None:
        self.root = Path(root)
        self.durable = durable
        self.data_dir = self.root / "data"
        self.tmp_dir = self.root / "tmp"
        self.jobs_dir = self.root / "jobs"
        for d in (self.data_dir, self.tmp_dir, self.jobs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._known_dirs: set[str] = set()
        self._hashes: dict[str, _JobHash] = {}
        self._hashes_lock = threading.Lock()
        self._committer = _GroupCommitter(self)
        self._live_ns: set[str] = set()  # see _ensure_parents
        db = self._conn()
        db.executescript(SCHEMA)
        self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TMP_S
        for entry in os.scandir(self.tmp_dir):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass

    def close(self) -> None:
        """Stop the commit thread once queued changes are committed.  Idempotent."""
        self._committer.stop()

    # ------------------------------------------------------------------ SQLite
    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / DB_FILE, isolation_level=None, check_same_thread=False,
                                 timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a 201 means the row survives power loss (the WAL is synced per commit).
            db.execute("PRAGMA synchronous=%s" % ("FULL" if self.durable else "NORMAL"))
            db.execute("PRAGMA busy_timeout=%d" % SQLITE_BUSY_TIMEOUT_MS)
            self._local.db = db
        return db

    def _write(self) -> "_WriteTxn":
        return _WriteTxn(self)

    # ------------------------------------------------------------------ names
    def lookup(self, name: str) -> tuple[str, bool] | None:
        """(kind, deleted) of a name, or None if it never existed.  '' is the root."""
        if name == "":
            return ("ns", False)
        row = self._conn().execute("SELECT kind, deleted FROM names WHERE name=?", (name,)).fetchone()
        return None if row is None else (row[0], bool(row[1]))

    def _ensure_parents(self, db: sqlite3.Connection, name: str, parents: bool, owner: str) -> None:
        """Check (and with ``parents`` create) the namespaces above ``name``, inside a txn.

        Live namespaces are remembered in ``_live_ns`` (kept under the write lock and
        dropped whenever a transaction fails), so the common case costs no query.
        """
        missing: list[str] = []
        p = parent_of(name)
        live = self._live_ns
        while p != "" and p not in live:
            row = db.execute("SELECT kind, deleted FROM names WHERE name=?", (p,)).fetchone()
            if row is not None:
                if row[1]:
                    raise HatracError(409, f"Name /hatrac{p} not available.")
                if row[0] != "ns":
                    raise HatracError(409, f"Parent /hatrac{p} is not a namespace.")
                live.add(p)
                break
            if not parents:
                raise HatracError(404, f"Parent namespace /hatrac{p} not found.")
            missing.append(p)
            p = parent_of(p)
        now = time.time()
        for ns in reversed(missing):
            db.execute("INSERT INTO names (name, parent, kind, owner, created) VALUES (?,?,?,?,?)",
                       (ns, parent_of(ns), "ns", owner, now))
            live.add(ns)

    def create_namespace(self, name: str, parents: bool, owner: str) -> None:
        with self._write() as db:
            if name == "" or db.execute("SELECT 1 FROM names WHERE name=?", (name,)).fetchone():
                raise HatracError(409, f"Name /hatrac{name} not available.")
            self._ensure_parents(db, name, parents, owner)
            db.execute("INSERT INTO names (name, parent, kind, owner, created) VALUES (?,?,?,?,?)",
                       (name, parent_of(name), "ns", owner, time.time()))
            self._live_ns.add(name)

    def list_namespace(self, name: str) -> list[str]:
        """Live children of a namespace (404/409 if it is not one)."""
        self._require_namespace(name)
        rows = self._conn().execute(
            "SELECT name FROM names WHERE parent=? AND deleted=0 ORDER BY name", (name,)).fetchall()
        return [r[0] for r in rows]

    def _require_namespace(self, name: str) -> None:
        info = self.lookup(name)
        if info is None or info[1]:
            raise HatracError(404, f"Resource /hatrac{name} not found.")
        if info[0] != "ns":
            raise HatracError(409, f"Resource /hatrac{name} is not a namespace.")

    def delete_name(self, name: str) -> None:
        """Tombstone a namespace (must be empty) or an object (with all versions and jobs)."""
        if name == "":
            raise HatracError(409, "The root namespace cannot be deleted.")
        files: list[Path] = []
        with self._write() as db:
            row = db.execute("SELECT kind, deleted FROM names WHERE name=?", (name,)).fetchone()
            if row is None or row[1]:
                raise HatracError(404, f"Resource /hatrac{name} not found.")
            if row[0] == "ns":
                if db.execute("SELECT 1 FROM names WHERE parent=? AND deleted=0 LIMIT 1", (name,)).fetchone():
                    raise HatracError(409, f"Namespace /hatrac{name} is not empty.")
            else:
                files = [self._version_path(v) for (v,) in
                         db.execute("SELECT version FROM versions WHERE name=? AND data IS NULL", (name,))]
                jobs = [j for (j,) in db.execute("SELECT job FROM jobs WHERE name=?", (name,))]
                files += [self.jobs_dir / j for j in jobs]
                db.execute("DELETE FROM versions WHERE name=?", (name,))
                for j in jobs:
                    db.execute("DELETE FROM chunks WHERE job=?", (j,))
                db.execute("DELETE FROM jobs WHERE name=?", (name,))
            db.execute("UPDATE names SET deleted=1 WHERE name=?", (name,))
            self._live_ns.discard(name)
        for f in files:
            _unlink(f)
        self._drop_hashes(files)

    # ------------------------------------------------------------------ versions
    def _version_path(self, version: str) -> Path:
        return self.data_dir / version[:2] / version

    def _version_dir(self, version: str) -> Path:
        sub = version[:2]
        d = self.data_dir / sub
        if sub not in self._known_dirs:
            d.mkdir(exist_ok=True)
            self._known_dirs.add(sub)
        return d

    def precheck_object(self, name: str, parents: bool) -> None:
        """Cheap read-only check that a PUT to ``name`` can succeed (before storing bytes)."""
        info = self.lookup(name)
        if info is not None:
            _check_object_name(name, info)
            return
        p = parent_of(name)
        while True:
            pinfo = self.lookup(p)
            if pinfo is not None:
                if pinfo[1]:
                    raise HatracError(409, f"Name /hatrac{p} not available.")
                if pinfo[0] != "ns":
                    raise HatracError(409, f"Parent /hatrac{p} is not a namespace.")
                return
            if not parents:
                raise HatracError(404, f"Parent namespace /hatrac{p} not found.")
            p = parent_of(p)

    def new_temp(self) -> Path:
        return self.tmp_dir / new_id()

    def put_bytes(self, meta: NewVersion, data: bytes) -> str:
        """Store a body held in memory as a file-backed version; returns the version id."""
        version = new_id()
        tmp = self.new_temp()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        os.close(fd)
        return self.commit_file(meta, version, tmp, len(data))

    def commit_file(self, meta: NewVersion, version: str, tmp: Path, size: int) -> str:
        """Move a complete, synced file into place and record it as the newest version."""
        final = self._version_dir(version) / version
        try:
            os.rename(tmp, final)
            self._committer.submit(_VersionRow(meta, version, size, None)).result()
        except BaseException:
            _unlink(tmp)
            _unlink(final)
            raise
        return version

    def _record_versions(self, db: sqlite3.Connection, rows: list[_VersionRow]) -> list[HatracError | None]:
        """Insert a batch of new versions (inside the committer's txn); per row, None or its refusal.

        Bulk statements rather than one savepoint per row: every statement is a GIL
        hand-off, which is what a PUT costs most in this process.
        """
        known: dict[str, tuple[str, bool]] = {}
        names = list({r.meta.name for r in rows})
        for i in range(0, len(names), SQL_IN_LIMIT):
            part = names[i:i + SQL_IN_LIMIT]
            marks = ",".join("?" * len(part))
            for n, kind, deleted in db.execute(f"SELECT name, kind, deleted FROM names WHERE name IN ({marks})",
                                               part):
                known[n] = (kind, bool(deleted))
        now = time.time()
        outcomes: list[HatracError | None] = []
        values = []
        added: dict[str, str] = {}  # name -> version accepted earlier in this batch
        for r in rows:
            m = r.meta
            try:
                info = known.get(m.name)
                if info is None:
                    self._ensure_parents(db, m.name, m.parents, m.owner)
                    db.execute("INSERT INTO names (name, parent, kind, owner, created) VALUES (?,?,?,?,?)",
                               (m.name, parent_of(m.name), "obj", m.owner, now))
                    known[m.name] = ("obj", False)
                else:
                    _check_object_name(m.name, info)
                if m.if_match is not None or m.if_none_match is not None:
                    m.check_precondition(added.get(m.name) or self._current_version(db, m.name))
            except HatracError as e:
                outcomes.append(e)
                continue
            outcomes.append(None)
            added[m.name] = r.version
            values.append((m.name, r.version, r.size, m.content_type, m.md5, m.sha256, m.disposition, m.owner,
                           now, r.data))
        db.executemany("INSERT INTO versions (name, version, size, content_type, md5, sha256, disposition,"
                       " owner, created, data) VALUES (?,?,?,?,?,?,?,?,?,?)", values)
        return outcomes

    @staticmethod
    def _current_version(db: sqlite3.Connection, name: str) -> str | None:
        row = db.execute("SELECT version FROM versions WHERE name=? ORDER BY seq DESC LIMIT 1", (name,)).fetchone()
        return None if row is None else row[0]

    def put_inline(self, meta: NewVersion, data: bytes, fut: Any = None) -> Any:
        """Queue a small object (<= INLINE_MAX_BYTES) for the next group commit.

        Non-blocking, so the event loop can call it (passing ``fut``, an asyncio future
        of that loop); the future yields the version id once the row (bytes included)
        is committed, or the HatracError refusing it.
        """
        assert len(data) <= INLINE_MAX_BYTES
        return self._committer.submit(_VersionRow(meta, new_id(), len(data), data), fut)

    def get_version(self, name: str, version: str | None = None) -> VersionInfo:
        """The named (or current) version of an object, with 404/409 as Hatrac answers."""
        db = self._conn()
        cols = "version, size, content_type, md5, sha256, disposition, data IS NOT NULL"
        if version is None:
            row = db.execute(f"SELECT {cols} FROM versions WHERE name=? ORDER BY seq DESC LIMIT 1",
                             (name,)).fetchone()
        else:
            row = db.execute(f"SELECT {cols} FROM versions WHERE name=? AND version=?",
                             (name, version)).fetchone()
        if row is None:
            info = self.lookup(name)
            if info is None or info[1]:
                raise HatracError(404, f"Resource /hatrac{name} not found.")
            if info[0] == "ns":
                raise HatracError(409, f"Resource /hatrac{name} is a namespace.")
            if version is not None:
                raise HatracError(404, f"Resource /hatrac{name}:{version} not found.")
            raise HatracError(409, f"Object /hatrac{name} currently has no content.")
        return VersionInfo(name, row[0], row[1], row[2], row[3], row[4], row[5], self._version_path(row[0]),
                           bool(row[6]))

    def read_inline(self, version: str) -> bytes:
        row = self._conn().execute("SELECT data FROM versions WHERE version=?", (version,)).fetchone()
        if row is None or row[0] is None:
            raise FileNotFoundError(version)  # deleted meanwhile
        return bytes(row[0])

    def list_versions(self, name: str) -> list[str]:
        self._require_object(name)
        rows = self._conn().execute("SELECT version FROM versions WHERE name=? ORDER BY seq", (name,))
        return [r[0] for r in rows]

    def _require_object(self, name: str) -> None:
        info = self.lookup(name)
        if info is None or info[1]:
            raise HatracError(404, f"Resource /hatrac{name} not found.")
        if info[0] != "obj":
            raise HatracError(409, f"Resource /hatrac{name} is a namespace.")

    def delete_version(self, name: str, version: str) -> None:
        with self._write() as db:
            cur = db.execute("DELETE FROM versions WHERE name=? AND version=?", (name, version))
            if cur.rowcount == 0:
                raise HatracError(404, f"Resource /hatrac{name}:{version} not found.")
        _unlink(self._version_path(version))

    # ------------------------------------------------------------------ jobs
    def create_job(self, name: str, parents: bool, owner: str, chunk_length: int, content_length: int,
                   content_type: str, md5: bytes | None, sha256: bytes | None,
                   disposition: str | None) -> str:
        """Open an upload job (creating the object name, with no version, if needed)."""
        job = new_id()
        part = self.jobs_dir / job
        with open(part, "xb") as f:
            f.truncate(content_length)  # sparse: chunks are pwrite'd into place
        try:
            with self._write() as db:
                row = db.execute("SELECT kind, deleted FROM names WHERE name=?", (name,)).fetchone()
                if row is None:
                    self._ensure_parents(db, name, parents, owner)
                    db.execute("INSERT INTO names (name, parent, kind, owner, created) VALUES (?,?,?,?,?)",
                               (name, parent_of(name), "obj", owner, time.time()))
                else:
                    _check_object_name(name, (row[0], bool(row[1])))
                db.execute("INSERT INTO jobs (job, name, owner, chunk_length, content_length, content_type,"
                           " md5, sha256, disposition, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (job, name, owner, chunk_length, content_length, content_type, md5, sha256,
                            disposition, time.time()))
        except BaseException:
            _unlink(part)
            raise
        return job

    def get_job(self, name: str, job: str) -> JobInfo:
        row = self._conn().execute(
            "SELECT owner, chunk_length, content_length, content_type, md5, sha256, disposition"
            " FROM jobs WHERE job=? AND name=?", (job, name)).fetchone()
        if row is None:
            raise HatracError(404, f"Resource /hatrac{name};upload/{job} not found.")
        return JobInfo(job, name, *row)

    def list_jobs(self, name: str) -> list[str]:
        self._require_object(name)
        rows = self._conn().execute("SELECT job FROM jobs WHERE name=? ORDER BY created", (name,))
        return [r[0] for r in rows]

    def open_job_count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM jobs").fetchone()[0]

    def _hash_state(self, job: str) -> _JobHash:
        with self._hashes_lock:
            st = self._hashes.get(job)
            if st is None:
                st = self._hashes[job] = _JobHash()
                present = {n for (n,) in self._conn().execute("SELECT n FROM chunks WHERE job=?", (job,))}
                if present:
                    # Restarted mid-job: we do not know what was hashed; finalize hashes once.
                    st.valid = False
                    st.present = present
            return st

    def _drop_hashes(self, paths: list[Path]) -> None:
        with self._hashes_lock:
            for p in paths:
                self._hashes.pop(p.name, None)

    def chunk_begin(self, info: JobInfo, n: int) -> "ChunkWriter":
        """Start receiving chunk ``n``; the caller feeds bytes, then calls ``finish``."""
        if n >= info.chunk_count:
            raise HatracError(409, f"Uploaded chunk number {n} out of range.")
        st = self._hash_state(info.job)
        with st.lock:
            hashing = st.valid and not st.claimed and st.next_n == n
            if hashing:
                st.claimed = True
        return ChunkWriter(self, info, n, st, hashing)

    def finalize_job(self, name: str, job: str, owner: str) -> str:
        """Verify a complete job and turn it into a version (version id = job id)."""
        info = self.get_job(name, job)
        present = self._conn().execute("SELECT count(*) FROM chunks WHERE job=?", (job,)).fetchone()[0]
        if present != info.chunk_count:
            raise HatracError(409, f"Upload job /hatrac{name};upload/{job} is missing "
                                   f"{info.chunk_count - present} of {info.chunk_count} chunks.")
        part = self.jobs_dir / job
        st = self._hash_state(job)
        with st.lock:
            if st.valid and not st.claimed and st.next_n == info.chunk_count:
                md5, sha256 = st.md5.digest(), st.sha256.digest()
            else:
                md5, sha256 = _hash_file(part)
        if info.md5 is not None and md5 != info.md5:
            raise HatracError(409, f"Received content MD5 {b64(md5)} does not match expected {b64(info.md5)}.")
        if info.sha256 is not None and sha256 != info.sha256:
            raise HatracError(409, f"Received content SHA256 {b64(sha256)} does not match expected "
                                   f"{b64(info.sha256)}.")
        if self.durable:
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)  # chunks were synced as they came; this is cheap
            finally:
                os.close(fd)
        final = self._version_dir(job) / job
        with self._write() as db:
            if db.execute("DELETE FROM jobs WHERE job=?", (job,)).rowcount == 0:
                raise HatracError(404, f"Resource /hatrac{name};upload/{job} not found.")
            db.execute("DELETE FROM chunks WHERE job=?", (job,))
            _check_object_name(name, db.execute("SELECT kind, deleted FROM names WHERE name=?",
                                                (name,)).fetchone() or ("obj", True))
            db.execute("INSERT INTO versions (name, version, size, content_type, md5, sha256, disposition,"
                       " owner, created) VALUES (?,?,?,?,?,?,?,?,?)",
                       (name, job, info.content_length, info.content_type, md5, sha256, info.disposition,
                        owner, time.time()))
            # Rename inside the transaction: if it fails, the rows roll back with it.
            os.rename(part, final)
        with self._hashes_lock:
            self._hashes.pop(job, None)
        return job

    def cancel_job(self, name: str, job: str) -> None:
        with self._write() as db:
            if db.execute("DELETE FROM jobs WHERE job=? AND name=?", (job, name)).rowcount == 0:
                raise HatracError(404, f"Resource /hatrac{name};upload/{job} not found.")
            db.execute("DELETE FROM chunks WHERE job=?", (job,))
        _unlink(self.jobs_dir / job)
        with self._hashes_lock:
            self._hashes.pop(job, None)


class ChunkWriter:
    """Writes one chunk into the job's part file at its offset, hashing when in order.

    ``write`` and ``finish`` do blocking I/O: call them from a worker thread.
    """

    def __init__(self, store: ObjectStore, info: JobInfo, n: int, st: _JobHash, hashing: bool) -> None:
        self.store, self.info, self.n, self.st, self.hashing = store, info, n, st, hashing
        self.expected = info.chunk_size(n)
        self.offset = n * info.chunk_length
        self.written = 0
        self.fd = os.open(store.jobs_dir / info.job, os.O_WRONLY)

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self.expected:
            raise HatracError(409, f"Chunk {self.n} is longer than its expected {self.expected} bytes.")
        view = memoryview(data)
        pos = self.offset + self.written
        while view:
            k = os.pwrite(self.fd, view, pos)
            view, pos = view[k:], pos + k
        if self.hashing:
            self.st.md5.update(data)
            self.st.sha256.update(data)
        self.written += len(data)

    def abort(self) -> None:
        """The request failed: the running digests (if ours) are no longer trustworthy."""
        os.close(self.fd)
        if self.hashing:
            with self.st.lock:
                self.st.claimed = False
                self.st.valid = False

    def finish(self) -> None:
        if self.written != self.expected:
            self.abort()
            raise HatracError(409, f"Chunk {self.n} has {self.written} bytes; expected {self.expected}.")
        try:
            if self.store.durable:
                _datasync(self.fd)  # an acknowledged chunk survives a crash (resume relies on it)
        finally:
            os.close(self.fd)
        job, n = self.info.job, self.n
        self.store._committer.run(
            lambda db: db.execute("INSERT OR IGNORE INTO chunks (job, n) VALUES (?,?)", (job, n)))
        st = self.st
        with st.lock:
            if self.hashing:
                st.claimed = False
                st.next_n = self.n + 1
            elif self.n < st.next_n or (st.claimed and self.n == st.next_n):
                st.valid = False  # re-sent bytes may differ from what was hashed
            st.present.add(self.n)
            if st.valid and not st.claimed:
                self._catch_up(st)

    def _catch_up(self, st: _JobHash) -> None:
        """Hash chunks that arrived early, now that their predecessors are in (lock held)."""
        path = self.store.jobs_dir / self.info.job
        fd = None
        try:
            while st.next_n in st.present and st.next_n < self.info.chunk_count:
                if fd is None:
                    fd = os.open(path, os.O_RDONLY)
                n = st.next_n
                for block in _read_range(fd, n * self.info.chunk_length, self.info.chunk_size(n)):
                    st.md5.update(block)
                    st.sha256.update(block)
                st.next_n = n + 1
        finally:
            if fd is not None:
                os.close(fd)


class _GroupCommitter:
    """One thread that commits queued row changes together (group commit).

    Concurrent PUTs each wait for their rows to be committed; whatever queued up
    while one transaction was syncing goes into the next one, so N PUTs cost one
    WAL sync instead of N.  A refused change (409, 404) does not spoil its
    neighbours: generic changes run in their own SAVEPOINT, new versions are
    checked before the bulk insert.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.queue: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], object] | _VersionRow,
                                             concurrent.futures.Future] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()

    def submit(self, change: Callable[[sqlite3.Connection], T] | _VersionRow,
               fut: Any = None) -> Any:
        """Queue ``change(db)`` (or a new version) for the next transaction.

        The future (a new thread future, or the asyncio future given) resolves once
        committed: to the change's result (the version id).
        """
        if fut is None:
            fut = concurrent.futures.Future()
        self.queue.put((change, fut))
        if self.thread is None:
            with self.start_lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._loop, name="hatrac-commit", daemon=True)
                    self.thread.start()
        return fut

    def run(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Apply ``change(db)`` in a committed transaction; blocks until durable."""
        return self.submit(change).result()

    def stop(self) -> None:
        with self.start_lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.queue.put(None)  # type: ignore[arg-type]  (the stop sign)
            thread.join()

    def _loop(self) -> None:
        store = self.store
        stopping = False
        while not stopping:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_COMMIT_BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            changes = [(c, f) for c, f in batch if not isinstance(c, _VersionRow)]
            versions = [(c, f) for c, f in batch if isinstance(c, _VersionRow)]
            outcomes: list[tuple[concurrent.futures.Future, object, BaseException | None]] = []
            try:
                with store._write() as db:
                    for change, fut in changes:
                        db.execute("SAVEPOINT one")
                        try:
                            outcomes.append((fut, change(db), None))
                            db.execute("RELEASE one")
                        except Exception as e:  # noqa: BLE001 (handed to the waiting request)
                            db.execute("ROLLBACK TO one")
                            db.execute("RELEASE one")
                            outcomes.append((fut, None, e))
                    if versions:
                        refused = store._record_versions(db, [row for row, _ in versions])
                        outcomes += [(fut, row.version, err) for (row, fut), err in zip(versions, refused)]
            except Exception as e:  # noqa: BLE001 (the commit itself failed: nothing is stored)
                outcomes = [(fut, None, e) for _, fut in batch]
            _settle(outcomes)


def _settle(outcomes: list[tuple[Any, object, BaseException | None]]) -> None:
    """Resolve waiting futures: thread futures directly, asyncio futures with one
    wake-up per event loop for the whole batch (not one self-pipe write each)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, object, BaseException | None]]] = {}
    for item in outcomes:
        fut = item[0]
        if isinstance(fut, asyncio.Future):
            by_loop.setdefault(fut.get_loop(), []).append(item)
        elif not fut.done():  # a thread future nobody cancelled: the waiter is blocked on it
            if item[2] is None:
                fut.set_result(item[1])
            else:
                fut.set_exception(item[2])
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_in_loop, items)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _settle_in_loop(items: list[tuple[Any, object, BaseException | None]]) -> None:
    for fut, result, err in items:
        if fut.done():
            continue  # the request was cancelled (client gone)
        if err is None:
            fut.set_result(result)
        else:
            fut.set_exception(err)


class _WriteTxn:
    """``with store._write() as db``: one serialized BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._write_lock.acquire()
        try:
            self.db = self.store._conn()
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.store._write_lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        ok = False
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            ok = exc_type is None
        finally:
            if not ok:
                self.store._live_ns.clear()  # it may name namespaces that were rolled back
            self.store._write_lock.release()


def _check_object_name(name: str, info: tuple[str, bool]) -> None:
    kind, deleted = info
    if deleted:
        raise HatracError(409, f"Name /hatrac{name} not available.")
    if kind != "obj":
        raise HatracError(409, f"Name /hatrac{name} is a namespace.")


def _read_range(fd: int, offset: int, length: int) -> Iterator[bytes]:
    end = offset + length
    while offset < end:
        block = os.pread(fd, min(IO_BLOCK, end - offset), offset)
        if not block:
            raise OSError(f"short read at offset {offset}")
        offset += len(block)
        yield block


def _hash_file(path: Path) -> tuple[bytes, bytes]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        for block in _read_range(fd, 0, os.fstat(fd).st_size):
            md5.update(block)
            sha256.update(block)
    finally:
        os.close(fd)
    return md5.digest(), sha256.digest()


# fdatasync skips the inode timestamps; macOS has only fsync.
_datasync = getattr(os, "fdatasync", os.fsync)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_jobs(root: Path) -> int:
    """How many upload jobs are open in the store at ``root`` (for tests and tooling)."""
    db = sqlite3.connect(Path(root) / DB_FILE, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        return db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    finally:
        db.close()
