"""Build upload trees for tests with the real layout code (``deriva_upload.layout``).

Every file gets distinct, deterministic content (so each has its own MD5 and its own
row), and the helpers return the paths written so tests can compare them with what
the catalog holds afterwards.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deriva.core.ermrest_model import Table

from deriva_upload import layout
from deriva_upload.model import DerivaModel

# Demo domain schema's asset table (tests/conftest.py bootstraps it in every catalog).
DEFAULT_ASSET_TABLE = "Image"


@dataclass(frozen=True)
class LocalFile:
    """A file written into the tree and its digests (hex MD5, hex SHA-256, like the rows)."""

    path: Path
    size: int
    md5: str
    sha256: str


def digests(data: bytes) -> tuple[str, str]:
    """Hex MD5 and SHA-256 of ``data``."""
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def local_file(path: Path) -> LocalFile:
    data = Path(path).read_bytes()
    md5, sha = digests(data)
    return LocalFile(Path(path), len(data), md5, sha)


def unique_bytes(index: int, size: int, salt: str = "") -> bytes:
    """``size`` bytes that differ for every (index, salt): a header line, then filler."""
    head = f"file {index} {salt}\n".encode()
    if size < len(head):  # too small for the header: distinct digest bytes instead
        return (hashlib.sha256(head).digest() * (size // 32 + 1))[:size]
    filler = (hashlib.sha256(head).hexdigest().encode() + b"\n") * (size // 65 + 1)
    return (head + filler)[:size]


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Incompressible deterministic bytes (for chunked-upload files)."""
    return random.Random(seed).randbytes(size)


def asset_table(model: DerivaModel | Table, table: str = DEFAULT_ASSET_TABLE) -> Table:
    return model if isinstance(model, Table) else model.name_to_table(table)


def write_asset(prefix: Path, model: DerivaModel | Table, exec_rid: str, file_name: str, data: bytes, *,
                table: str = DEFAULT_ASSET_TABLE, metadata: Mapping[str, Any] | None = None,
                rid: str | None = None) -> LocalFile:
    """Write one asset file where ``layout.asset_file_path`` puts it."""
    path = layout.asset_file_path(prefix, exec_rid, asset_table(model, table), file_name, dict(metadata or {}),
                                  rid=rid)
    path.write_bytes(data)
    md5, sha = digests(data)
    return LocalFile(path, len(data), md5, sha)


def build_asset_tree(prefix: Path, model: DerivaModel | Table, exec_rid: str, n: int, *, size: int = 64,
                     table: str = DEFAULT_ASSET_TABLE, salt: str = "", metadata: Mapping[str, Any] | None = None,
                     name: str = "f{i:05d}.txt") -> list[LocalFile]:
    """``n`` small asset files with distinct contents under one execution."""
    t = asset_table(model, table)
    directory = layout.asset_file_path(prefix, exec_rid, t, "x", dict(metadata or {})).parent
    out = []
    for i in range(n):
        data = unique_bytes(i, size, salt or exec_rid)
        path = directory / name.format(i=i)
        path.write_bytes(data)
        md5, sha = digests(data)
        out.append(LocalFile(path, len(data), md5, sha))
    return out


def write_large(prefix: Path, model: DerivaModel | Table, exec_rid: str, size: int, *, seed: int = 1,
                file_name: str = "big.bin", table: str = DEFAULT_ASSET_TABLE) -> LocalFile:
    """One incompressible file (sent as a chunked job when larger than the chunk size)."""
    return write_asset(prefix, model, exec_rid, file_name, random_bytes(size, seed), table=table)


def touch_later(path: Path, seconds: float = 10.0) -> None:
    """Move a file's mtime forward (a changed file without changing its size)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


def by_md5(files: Iterable[LocalFile]) -> dict[str, LocalFile]:
    return {f.md5: f for f in files}


__all__ = ["DEFAULT_ASSET_TABLE", "LocalFile", "asset_table", "build_asset_tree", "by_md5", "digests",
           "local_file", "random_bytes", "touch_later", "unique_bytes", "write_asset", "write_large"]
