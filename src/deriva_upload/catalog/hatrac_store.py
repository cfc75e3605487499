"""Storage layer of the embedded Hatrac: a local folder for bytes, SQLite for names.

The HTTP layer (:mod:`deriva_upload.catalog.hatrac`) validates names and streams
bodies; this module owns every file and every row.  User-supplied names never
become filesystem paths: object bytes live under ``data/<vv>/<version-id>``,
where the version id is random, and upload jobs under ``jobs/<job-id>``.

Durability: each object file is written to ``tmp/``, fsync'ed and renamed into
place *before* its row is committed, so a committed version always has its
bytes.  A crash can only leave unreferenced files behind, never a dangling row.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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
    created      REAL NOT NULL
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
        db = self._conn()
        db.executescript(SCHEMA)

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
        """Check (and with ``parents`` create) the namespaces above ``name``, inside a txn."""
        missing: list[str] = []
        p = parent_of(name)
        while p != "":
            row = db.execute("SELECT kind, deleted FROM names WHERE name=?", (p,)).fetchone()
            if row is not None:
                if row[1]:
                    raise HatracError(409, f"Name /hatrac{p} not available.")
                if row[0] != "ns":
                    raise HatracError(409, f"Parent /hatrac{p} is not a namespace.")
                break
            if not parents:
                raise HatracError(404, f"Parent namespace /hatrac{p} not found.")
            missing.append(p)
            p = parent_of(p)
        now = time.time()
        for ns in reversed(missing):
            db.execute("INSERT INTO names (name, parent, kind, owner, created) VALUES (?,?,?,?,?)",
                       (ns, parent_of(ns), "ns", owner, now))

    def create_namespace(self, name: str, parents: bool, owner: str) -> None:
        with self._write() as db:
            if name == "" or db.execute("SELECT 1 FROM names WHERE name=?", (name,)).fetchone():
                raise HatracError(409, f"Name /hatrac{name} not available.")
            self._ensure_parents(db, name, parents, owner)
            db.execute("INSERT INTO names (name, parent, kind, owner, created) VALUES (?,?,?,?,?)",
                       (name, parent_of(name), "ns", owner, time.time()))

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
                         db.execute("SELECT version FROM versions WHERE name=?", (name,))]
                jobs = [j for (j,) in db.execute("SELECT job FROM jobs WHERE name=?", (name,))]
                files += [self.jobs_dir / j for j in jobs]
                db.execute("DELETE FROM versions WHERE name=?", (name,))
                for j in jobs:
                    db.execute("DELETE FROM chunks WHERE job=?", (j,))
                db.execute("DELETE FROM jobs WHERE name=?", (name,))
            db.execute("UPDATE names SET deleted=1 WHERE name=?", (name,))
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

    def put_bytes(self, name: str, parents: bool, owner: str, data: bytes, content_type: str,
                  disposition: str | None, md5: bytes, sha256: bytes) -> str:
        """Store a small body held in memory as a new version; returns the version id."""
        version = new_id()
        tmp = self.new_temp()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        return self.commit_file(name, parents, owner, version, tmp, len(data), content_type, disposition,
                                md5, sha256)

    def commit_file(self, name: str, parents: bool, owner: str, version: str, tmp: Path, size: int,
                    content_type: str, disposition: str | None, md5: bytes, sha256: bytes) -> str:
        """Move a complete, synced file into place and record it as the newest version."""
        final = self._version_dir(version) / version
        try:
            os.rename(tmp, final)
            with self._write() as db:
                row = db.execute("SELECT kind, deleted FROM names WHERE name=?", (name,)).fetchone()
                if row is None:
                    self._ensure_parents(db, name, parents, owner)
                    db.execute("INSERT INTO names (name, parent, kind, owner, created) VALUES (?,?,?,?,?)",
                               (name, parent_of(name), "obj", owner, time.time()))
                else:
                    _check_object_name(name, (row[0], bool(row[1])))
                db.execute("INSERT INTO versions (name, version, size, content_type, md5, sha256, disposition,"
                           " owner, created) VALUES (?,?,?,?,?,?,?,?,?)",
                           (name, version, size, content_type, md5, sha256, disposition, owner, time.time()))
        except BaseException:
            _unlink(tmp)
            _unlink(final)
            raise
        return version

    def get_version(self, name: str, version: str | None = None) -> VersionInfo:
        """The named (or current) version of an object, with 404/409 as Hatrac answers."""
        db = self._conn()
        cols = "version, size, content_type, md5, sha256, disposition"
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
        return VersionInfo(name, row[0], row[1], row[2], row[3], row[4], row[5], self._version_path(row[0]))

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
                os.fdatasync(self.fd)  # an acknowledged chunk survives a crash (resume relies on it)
        finally:
            os.close(self.fd)
        with self.store._write() as db:
            db.execute("INSERT OR IGNORE INTO chunks (job, n) VALUES (?,?)", (self.info.job, self.n))
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
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
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
