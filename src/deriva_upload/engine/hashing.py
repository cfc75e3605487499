"""MD5 + SHA-256 in one read of each file, off the event loop.

Small files are read whole and their bytes can be kept for the PUT (read once, the
bytes hashed are the bytes sent). Large files stream in ``HASH_READ_SIZE`` buffers;
MD5 and SHA-256 run in two threads on the same buffer (hashlib releases the GIL), so a
large file costs about the slower of the two digests instead of their sum. A file whose
size or mtime changes while it is read is read again (a growing log file would
otherwise be sent with stale digests).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deriva_upload.engine import limits
from deriva_upload.engine.items import Digests
from deriva_upload.errors import IntegrityError

# Attempts at hashing a file that keeps changing before giving up on it.
MAX_HASH_ATTEMPTS = 3
# Files at least this large hash MD5 and SHA-256 in parallel threads; below it the
# thread hand-off costs more than it saves.
PARALLEL_DIGEST_MIN = 16 * limits.MiB


@dataclass(frozen=True)
class HashResult:
    """Digests of a file plus the size/mtime they belong to (and maybe its bytes)."""

    digests: Digests
    size: int
    mtime_ns: int
    data: bytes | None = None


def digest_bytes(data: bytes) -> Digests:
    """Digests of an in-memory body."""
    return Digests(hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())


def _hash_stream(f, size_hint: int, helper: ThreadPoolExecutor | None) -> Digests:
    md5, sha = hashlib.md5(), hashlib.sha256()
    buf_size = limits.HASH_READ_SIZE
    pending: Future[None] | None = None
    while True:
        buf = f.read(buf_size)
        if not buf:
            break
        if helper is not None:
            if pending is not None:
                pending.result()
            pending = helper.submit(sha.update, buf)
            md5.update(buf)
        else:
            md5.update(buf)
            sha.update(buf)
    if pending is not None:
        pending.result()
    return Digests(md5.hexdigest(), sha.hexdigest())


def hash_file(path: Path | str, keep_limit: int = 0) -> HashResult:
    """Hash ``path`` in one read; keep its bytes when it is at most ``keep_limit`` long.

    Raises ``IntegrityError`` when the file keeps changing while being read, and
    ``OSError`` when it cannot be read.
    """
    for _ in range(MAX_HASH_ATTEMPTS):
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            if before.st_size <= keep_limit:
                data = f.read()
                digests = digest_bytes(data)
                kept: bytes | None = data
            else:
                kept = None
                if before.st_size >= PARALLEL_DIGEST_MIN:
                    with ThreadPoolExecutor(1, thread_name_prefix="sha256") as helper:
                        digests = _hash_stream(f, before.st_size, helper)
                else:
                    digests = _hash_stream(f, before.st_size, None)
            after = os.fstat(f.fileno())
        read_size = len(kept) if kept is not None else after.st_size
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) and \
                read_size == after.st_size and _same_on_disk(path, after):
            return HashResult(digests, after.st_size, after.st_mtime_ns, kept)
    raise IntegrityError(f"{path}: file kept changing while it was hashed; upload it once it is complete")


def _same_on_disk(path: Path | str, st: os.stat_result) -> bool:
    """The path still names a file of the same size and mtime (not replaced meanwhile)."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def hash_group(paths: Iterable[Path | str], keep_limit: int) -> list[HashResult | BaseException]:
    """Hash several (small) files in one worker-thread task; errors are returned, not raised."""
    out: list[HashResult | BaseException] = []
    for p in paths:
        try:
            out.append(hash_file(p, keep_limit))
        except (OSError, IntegrityError) as e:
            out.append(e)
    return out


def read_range(path: Path | str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``path`` from ``offset`` (one chunk of a chunked upload)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts: list[bytes] = []
        remaining = length
        pos = offset
        while remaining > 0:
            b = os.pread(fd, remaining, pos)
            if not b:
                break
            parts.append(b)
            pos += len(b)
            remaining -= len(b)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)
    if len(data) != length:
        raise IntegrityError(f"{path}: file shrank while uploading (wanted {length} bytes at {offset})")
    return data
