"""The Hatrac storage layer on its own: versions, tombstones, upload-job hashing."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deriva_upload.catalog.hatrac_store import (
    ANY,
    INLINE_MAX_BYTES,
    HatracError,
    NewVersion,
    ObjectStore,
    open_jobs,
)


_opened: list[ObjectStore] = []


def _open(root: Path) -> ObjectStore:
    store = ObjectStore(root)
    _opened.append(store)
    return store


@pytest.fixture(autouse=True)
def _close_stores():  # type: ignore[no-untyped-def]
    yield
    while _opened:
        _opened.pop().close()


def _digests(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.md5(data).digest(), hashlib.sha256(data).digest()


def _meta(name: str, data: bytes, parents: bool = True, **kw) -> NewVersion:
    return NewVersion(name, parents, "u", "t", None, *_digests(data), **kw)


def _read(store: ObjectStore, name: str, version: str | None = None) -> bytes:
    info = store.get_version(name, version)
    return store.read_inline(info.version) if info.inline else info.path.read_bytes()


def _job(store: ObjectStore, name: str, data: bytes, k: int, declare: bool = True) -> str:
    md5, sha = _digests(data)
    return store.create_job(name, True, "u", k, len(data), "x/y", md5 if declare else None,
                            sha if declare else None, None)


def _chunk(store: ObjectStore, name: str, job: str, n: int, payload: bytes, split: int = 1) -> None:
    w = store.chunk_begin(store.get_job(name, job), n)
    step = max(1, len(payload) // split)
    for i in range(0, len(payload), step):
        w.write(payload[i:i + step])
    w.finish()


@pytest.mark.parametrize("size", [0, 10, INLINE_MAX_BYTES, INLINE_MAX_BYTES + 1, 300_000])
def test_small_and_file_versions(tmp_path: Path, size: int) -> None:
    store = _open(tmp_path)
    data = os.urandom(size)
    if size <= INLINE_MAX_BYTES:
        v = store.put_inline(_meta("/a/b", data), data).result()
    else:
        v = store.put_bytes(_meta("/a/b", data), data)
    info = store.get_version("/a/b")
    assert info.version == v and info.size == size and info.inline == (size <= INLINE_MAX_BYTES)
    assert _read(store, "/a/b") == data
    # Every stored file name is a version id, never the user's name.
    assert all(p.name == v for p in (tmp_path / "data").rglob("*") if p.is_file())


def test_refused_commit_does_not_spoil_the_batch(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.create_namespace("/ns", False, "u")
    data = b"x"
    futs = [store.put_inline(_meta(f"/ns/o{i}" if i % 2 else "/ns", data, parents=False), data)
            for i in range(20)]
    for i, f in enumerate(futs):
        if i % 2:
            assert len(f.result()) == 26
        else:
            with pytest.raises(HatracError) as e:
                f.result()
            assert e.value.status == 409
    assert len(store.list_namespace("/ns")) == 10


def test_preconditions_within_one_batch(tmp_path: Path) -> None:
    """If-None-Match: * lets exactly one of many concurrent creators win, even in one commit."""
    store = _open(tmp_path)
    futs = [store.put_inline(_meta("/pc/o", b"x", if_none_match=ANY), b"x") for _ in range(10)]
    outcomes = []
    for f in futs:
        try:
            outcomes.append(f.result())
        except HatracError as e:
            outcomes.append(e.status)
    winners = [o for o in outcomes if o != 412]
    assert len(winners) == 1 and outcomes.count(412) == 9
    assert store.put_inline(_meta("/pc/o", b"y", if_match=frozenset(winners)), b"y").result()
    with pytest.raises(HatracError) as e:
        store.put_inline(_meta("/pc/o", b"z", if_match=frozenset(winners)), b"z").result()
    assert e.value.status == 412
    with pytest.raises(HatracError):
        store.put_inline(_meta("/pc/new", b"z", if_match=ANY), b"z").result()


def test_tombstones(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.put_inline(_meta("/n/o", b"1"), b"1").result()
    store.delete_name("/n/o")
    with pytest.raises(HatracError) as e:
        store.put_inline(_meta("/n/o", b"1"), b"1").result()
    assert e.value.status == 409 and "not available" in e.value.message
    with pytest.raises(HatracError):
        store.create_job("/n/o", True, "u", 1, 1, "t", None, None, None)
    store.delete_name("/n")
    with pytest.raises(HatracError) as e:
        store.put_inline(_meta("/n/p", b"1"), b"1").result()
    assert e.value.status == 409


@pytest.mark.parametrize("order", ["in", "reverse", "shuffled"])
def test_job_hashing_orders(tmp_path: Path, order: str) -> None:
    store = _open(tmp_path)
    k = 1000
    data = os.urandom(7 * k + 3)
    job = _job(store, "/j/o", data, k)
    idx = list(range(8))
    if order == "reverse":
        idx.reverse()
    elif order == "shuffled":
        idx = [3, 0, 7, 1, 2, 6, 5, 4]
    for n in idx:
        _chunk(store, "/j/o", job, n, data[n * k:(n + 1) * k], split=3)
    assert store.finalize_job("/j/o", job, "u") == job
    assert _read(store, "/j/o") == data
    assert open_jobs(tmp_path) == 0


def test_resent_chunk_with_other_bytes_is_caught(tmp_path: Path) -> None:
    """Chunk 0 hashed in order, then re-sent with the right bytes: the result must be right."""
    store = _open(tmp_path)
    data = os.urandom(30)
    job = _job(store, "/r/o", data, 10)
    _chunk(store, "/r/o", job, 0, b"\xff" * 10)   # hashed in order ...
    _chunk(store, "/r/o", job, 1, data[10:20])
    _chunk(store, "/r/o", job, 0, data[:10])      # ... then replaced
    _chunk(store, "/r/o", job, 2, data[20:])
    store.finalize_job("/r/o", job, "u")
    assert _read(store, "/r/o") == data


def test_wrong_content_is_refused_and_job_stays(tmp_path: Path) -> None:
    store = _open(tmp_path)
    data = os.urandom(20)
    job = _job(store, "/w/o", data, 10)
    _chunk(store, "/w/o", job, 0, data[:10])
    _chunk(store, "/w/o", job, 1, b"\0" * 10)
    with pytest.raises(HatracError) as e:
        store.finalize_job("/w/o", job, "u")
    assert e.value.status == 409
    _chunk(store, "/w/o", job, 1, data[10:])  # the client can fix the chunk and retry
    store.finalize_job("/w/o", job, "u")
    assert _read(store, "/w/o") == data


def test_missing_chunk_is_refused_even_without_digests(tmp_path: Path) -> None:
    store = _open(tmp_path)
    data = os.urandom(30)
    job = _job(store, "/m/o", data, 10, declare=False)
    _chunk(store, "/m/o", job, 0, data[:10])
    with pytest.raises(HatracError) as e:
        store.finalize_job("/m/o", job, "u")
    assert e.value.status == 409 and "missing 2 of 3" in e.value.message


def test_aborted_chunk_and_restart(tmp_path: Path) -> None:
    store = _open(tmp_path)
    data = os.urandom(40)
    job = _job(store, "/x/o", data, 10)
    w = store.chunk_begin(store.get_job("/x/o", job), 0)
    w.write(b"\1" * 5)
    w.abort()                                      # client went away mid-chunk
    _chunk(store, "/x/o", job, 0, data[:10])
    _chunk(store, "/x/o", job, 1, data[10:20])
    # The server restarts: a new store over the same folder resumes the job.
    store2 = _open(tmp_path)
    assert open_jobs(tmp_path) == 1
    _chunk(store2, "/x/o", job, 2, data[20:30])
    _chunk(store2, "/x/o", job, 3, data[30:])
    store2.finalize_job("/x/o", job, "u")
    assert _read(store2, "/x/o") == data


def test_chunk_length_enforced(tmp_path: Path) -> None:
    store = _open(tmp_path)
    job = _job(store, "/c/o", os.urandom(15), 10)
    w = store.chunk_begin(store.get_job("/c/o", job), 1)
    with pytest.raises(HatracError):
        w.write(b"x" * 6)                          # last chunk is 5 bytes
    w.abort()
    w = store.chunk_begin(store.get_job("/c/o", job), 0)
    w.write(b"x" * 9)
    with pytest.raises(HatracError):
        w.finish()                                 # short chunk
    with pytest.raises(HatracError) as e:
        store.chunk_begin(store.get_job("/c/o", job), 2)
    assert e.value.status == 409


def test_parallel_chunks_threads(tmp_path: Path) -> None:
    store = _open(tmp_path)
    k = 4096
    data = os.urandom(k * 40 + 1)
    job = _job(store, "/p/o", data, k)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: _chunk(store, "/p/o", job, n, data[n * k:(n + 1) * k], split=2),
                      range(40, -1, -1)))
    store.finalize_job("/p/o", job, "u")
    assert _read(store, "/p/o") == data


def test_empty_job(tmp_path: Path) -> None:
    store = _open(tmp_path)
    job = _job(store, "/e/o", b"", 10)
    store.finalize_job("/e/o", job, "u")
    info = store.get_version("/e/o")
    assert info.size == 0 and info.md5 == hashlib.md5(b"").digest()


def test_cancel_removes_part_file(tmp_path: Path) -> None:
    store = _open(tmp_path)
    job = _job(store, "/k/o", b"abc", 2)
    assert (tmp_path / "jobs" / job).exists()
    store.cancel_job("/k/o", job)
    assert not (tmp_path / "jobs" / job).exists() and open_jobs(tmp_path) == 0
    with pytest.raises(HatracError) as e:
        store.finalize_job("/k/o", job, "u")
    assert e.value.status == 404


def test_stale_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    _open(tmp_path)
    old, fresh = tmp_path / "tmp" / "OLD", tmp_path / "tmp" / "FRESH"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (1, 1))
    _open(tmp_path)
    assert not old.exists() and fresh.exists()  # a fresh one may be a PUT in flight
