"""The upload engine: scan -> hash -> look up -> put -> insert -> report, with bounded concurrency.

Files flow in windows of ``window_files``: a producer task scans, hashes (worker
threads) and looks up a window (batched ``MD5=any(...)`` queries) while a consumer
task sends the previous window's objects (pooled keep-alive connections, ``workers``
at once; large files as chunked jobs with chunks in parallel) and inserts its rows in
batches (``onconflict=skip``). The journal is written once per window (plus once per
chunk of a large file), never per small file. Memory stays bounded: at most two
windows are prepared, kept small-file bodies are capped by ``max_inflight_bytes``,
chunks stream from disk.

Public entry points: :func:`upload_tree` (async), :func:`run_upload` (sync),
:func:`plan_upload` (dry run), :func:`status`, :func:`verify`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deriva_upload.engine import limits
from deriva_upload.engine.destination import Destination
from deriva_upload.engine.ermrest import ErmrestClient, table_ref
from deriva_upload.engine.events import EventCallback, EventSink
from deriva_upload.engine.hashing import digest_bytes, hash_group
from deriva_upload.engine.hatrac import HatracClient, n_chunks
from deriva_upload.engine.http1 import FastTransport
from deriva_upload.engine.items import (
    Digests,
    Item,
    asset_row,
    content_disposition,
    content_type,
    hatrac_path,
    object_url,
)
from deriva_upload.engine.journal import Entry, Journal
from deriva_upload.engine.ledger import RidLedger, ledger_path
from deriva_upload.engine.options import UploadOptions
from deriva_upload.engine.plan import Decision, Plan, decide, find_row, group_rows, is_chunked
from deriva_upload.engine.report import FileResult, UploadReport, VerifyReport
from deriva_upload.engine.retry import RetryPolicy
from deriva_upload.engine.scan import SpecMatcher, Unmatched, in_shard, iter_scan
from deriva_upload.engine.tables import body_with_rids, parse_table_file
from deriva_upload.engine.transport import Transport
from deriva_upload.errors import ConfigError, DerivaUploadError, IntegrityError, ServerError
from deriva_upload.progress import UploadState

log = logging.getLogger("deriva_upload.engine")

# Bytes per read when streaming a chunk from disk into the request body.
STREAM_PIECE = 1 * limits.MiB
# Columns ERMrest fills itself (never listed in ``defaults`` ourselves).
_SYSTEM = ("RID", "RCT", "RMT", "RCB", "RMB")


# -- small helpers -----------------------------------------------------------------------


class ByteBudget:
    """Non-blocking budget for small-file bodies kept in memory between hash and PUT."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def try_take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, DerivaUploadError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def file_stream(path: Path, offset: int, length: int) -> Callable[[], AsyncIterator[bytes]]:
    """A replayable body: ``length`` bytes of ``path`` from ``offset``, read in pieces off-loop."""

    def factory() -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            fd = await loop.run_in_executor(None, os.open, str(path), os.O_RDONLY)
            try:
                pos, end = offset, offset + length
                while pos < end:
                    piece = await loop.run_in_executor(None, os.pread, fd, min(STREAM_PIECE, end - pos), pos)
                    if not piece:
                        raise IntegrityError(f"{path}: file shrank while it was being sent")
                    pos += len(piece)
                    yield piece
            finally:
                os.close(fd)
        return gen()

    return factory


@dataclass
class Prepared:
    """One item after hashing and look-up, ready for the transfer stage."""

    item: Item
    digests: Digests | None = None
    data: bytes | None = None
    entry: Entry | None = None
    decision: Decision | None = None


@dataclass
class Window:
    items: list[Prepared] = field(default_factory=list)


class _Run:
    """State of one upload run (one transport, one journal, one report)."""

    def __init__(self, root: Path, spec: Mapping[str, Any], dest: Destination, options: UploadOptions,
                 transports: Sequence[Any], journal: Journal, sink: EventSink, report: UploadReport,
                 object_transports: Sequence[Any] | None = None) -> None:
        self.root = root
        self.root_str = os.path.abspath(root)
        self.spec = spec
        self.dest = dest
        self.opt = options
        self.transports = list(transports)
        self.tr = self.transports[0]
        self.erm = ErmrestClient(self.tr, dest.catalog_id)
        self.hatracs = [HatracClient(t) for t in (object_transports or self.transports)]
        self.hatrac = self.hatracs[0]
        self._next_pool = itertools.count()
        self.journal = journal
        self.sink = sink
        self.report = report
        self.budget = ByteBudget(options.max_inflight_bytes)
        self.pool = ThreadPoolExecutor(options.hash_threads, thread_name_prefix="hash")
        self.requests = asyncio.Semaphore(options.workers)
        # per table: does a sample of the journal's "done" rows still exist? (see trust_journal)
        self.journal_trusted: dict[tuple[str, str], bool] = {}
        self._ledger: RidLedger | None = None
        self._columns: dict[str, list[str]] | None = None
        self._columns_lock = asyncio.Lock()
        self.phase_time: dict[str, float] = defaultdict(float)
        self._records_kept = 0

    # -- results --------------------------------------------------------------------

    def where(self, item: Item) -> dict[str, Any]:
        """FileResult location fields: the shared root string, the path only if not root/rel."""
        path = str(item.path)
        if path == os.path.join(self.root_str, item.rel):
            return {"rel": item.rel, "root": self.root_str}
        return {"rel": item.rel, "abs_path": path}

    def fail(self, item: Item, exc: BaseException | str, digests: Digests | None = None) -> None:
        msg = exc if isinstance(exc, str) else _error_text(exc)
        self.report.files[item.rel] = FileResult(
            **self.where(item), state=UploadState.failed, status=msg, table=item.table_key, rid=item.rid,
            md5=digests.md5 if digests else None, sha256=digests.sha256 if digests else None, length=item.size,
            error=msg, action="failed")
        self.report.counts(item.table_key).failed += 1
        self.sink.advance("upload", files=1, path=item.rel, message=msg, failed=True)
        if not self.opt.dry_run:
            self.journal.update(item.rel, item.size, item.mtime_ns, state="failed", error=msg[:500],
                                **({"md5": digests.md5, "sha256": digests.sha256} if digests else {}))

    def succeed(self, p: Prepared, row: Mapping[str, Any], action: str) -> None:
        item, d = p.item, p.digests
        assert d is not None
        row = _compact_row(row, d)
        url = row.get("URL")
        keep = self.opt.keep_records
        if keep is None:
            keep = self._records_kept < limits.RECORDS_KEPT
            if not keep and self._records_kept == limits.RECORDS_KEPT:
                self.report.warnings.append(f"more than {limits.RECORDS_KEPT} files: rows are not kept in the "
                                            "report beyond that (pass keep_records=True to keep them all)")
                self._records_kept += 1
        if keep:
            self._records_kept += 1
        status = {"present": "Already in the catalog", "uploaded": "Uploaded",
                  "inserted": "Object already stored; row inserted", "resumed": "Uploaded (resumed)"}.get(
            action, action)
        self.report.files[item.rel] = FileResult(
            **self.where(item), state=UploadState.success, status=status, table=item.table_key,
            rid=row.get("RID"), url=url, md5=d.md5, sha256=d.sha256, length=item.size, record=row if keep else None,
            action=action)
        counts = self.report.counts(item.table_key)
        if action == "present":
            counts.present += 1
        else:
            counts.inserted += 1
        e = p.entry
        unchanged = (e is not None and e.state == "done" and e.job_url is None and not e.chunks and e.error is None
                     and (e.size, e.mtime_ns, e.md5, e.sha256, e.url, e.rid)
                     == (item.size, item.mtime_ns, d.md5, d.sha256, url, row.get("RID")))
        if not unchanged:  # a no-op rerun writes nothing to the journal
            self.journal.update(item.rel, item.size, item.mtime_ns, md5=d.md5, sha256=d.sha256, url=url,
                                rid=row.get("RID"), state="done", job_url=None, chunks=(), error=None)

    # -- hash stage -----------------------------------------------------------------

    async def hash_window(self, items: list[Item]) -> list[Prepared]:
        """Digests for every item (journal-known ones reused), bodies kept for small files."""
        t0 = time.perf_counter()
        entries = self.journal.get_many(i.rel for i in items)
        prepared = [Prepared(i, entry=entries.get(i.rel)) for i in items]
        todo: list[Prepared] = []
        for p in prepared:
            known = p.entry.digests_for(p.item.size, p.item.mtime_ns) if p.entry else None
            if known is not None:
                p.digests = known
                self.sink.advance("hash", files=1, nbytes=p.item.size)
            else:
                todo.append(p)
        loop = asyncio.get_running_loop()
        threshold = self.opt.small_file_threshold
        groups: list[list[Prepared]] = []
        current: list[Prepared] = []
        current_bytes = 0
        for p in todo:
            if p.item.size > threshold:
                groups.append([p])
                continue
            current.append(p)
            current_bytes += p.item.size
            if len(current) >= limits.HASH_GROUP_FILES or current_bytes >= limits.HASH_GROUP_BYTES:
                groups.append(current)
                current, current_bytes = [], 0
        if current:
            groups.append(current)
        gate = asyncio.Semaphore(self.opt.hash_threads)

        async def run_group(group: list[Prepared]) -> None:
            async with gate:
                want = sum(g.item.size for g in group if g.item.size <= threshold)
                # keep bodies only if the whole group fits the in-memory budget (else re-read at PUT)
                keep = threshold if want and self.budget.try_take(want) else 0
                results = await loop.run_in_executor(self.pool, hash_group, [g.item.path for g in group], keep)
            unused = want if keep else 0
            for p, res in zip(group, results):
                if isinstance(res, BaseException):
                    self.fail(p.item, res)
                    p.decision = Decision("conflict", reason="hash failed")
                    continue
                if (res.size, res.mtime_ns) != (p.item.size, p.item.mtime_ns):
                    p.item = replace(p.item, size=res.size, mtime_ns=res.mtime_ns)
                p.digests = res.digests
                if res.data is not None and keep:
                    p.data = res.data
                    unused -= len(res.data)
                if not self.opt.dry_run:
                    self.journal.update(p.item.rel, p.item.size, p.item.mtime_ns, md5=res.digests.md5,
                                        sha256=res.digests.sha256, state="hashed")
                    p.entry = self.journal.get(p.item.rel)
                self.sink.advance("hash", files=1, nbytes=p.item.size, path=p.item.rel)
            if unused > 0:
                self.budget.give(unused)

        await asyncio.gather(*(run_group(g) for g in groups))
        self.phase_time["hash"] += time.perf_counter() - t0
        return [p for p in prepared if p.digests is not None]

    # -- look-up stage --------------------------------------------------------------

    async def lookup_window(self, prepared: list[Prepared]) -> None:
        """Existing rows for the window's files, by MD5 (and by RID), in batched GETs."""
        t0 = time.perf_counter()
        assets = [p for p in prepared if p.item.kind == "asset" and p.decision is None]
        by_table: dict[tuple[str, str], list[Prepared]] = defaultdict(list)
        for p in assets:
            by_table[(p.item.schema, p.item.table)].append(p)
        for (schema, table), ps in by_table.items():
            ps = await self.trust_journal(schema, table, ps)
            if not ps:
                continue
            md5s = sorted({p.digests.md5 for p in ps if p.digests})
            rids = sorted({p.item.rid for p in ps if p.item.rid})
            tasks = [self._lookup(schema, table, "MD5", md5s[k:k + self.opt.lookup_batch])
                     for k in range(0, len(md5s), self.opt.lookup_batch)]
            tasks += [self._lookup(schema, table, "RID", rids[k:k + self.opt.lookup_batch])
                      for k in range(0, len(rids), self.opt.lookup_batch)]
            try:
                results = await asyncio.gather(*tasks)
            except Exception as exc:  # noqa: BLE001 — the whole table's files fail, others go on
                for p in ps:
                    self.fail(p.item, exc, p.digests)
                    p.decision = Decision("conflict", reason="lookup failed")
                continue
            rows = [r for batch in results for r in batch]
            by_md5 = group_rows(rows, "MD5")
            by_rid = {str(r["RID"]): r for r in rows if r.get("RID")}
            for p in ps:
                assert p.digests is not None
                row, conflict = find_row(p.item, p.digests, by_md5, by_rid)
                p.decision = decide(p.item, p.digests, p.entry, row, conflict, head_policy=self.opt.head_before_put,
                                    journal_rebuilt=self.journal.rebuilt)
            self.sink.advance("lookup", files=len(ps))
        for p in prepared:
            if p.decision is None:
                p.decision = decide(p.item, p.digests, p.entry, None)
        self.phase_time["lookup"] += time.perf_counter() - t0

    async def trust_journal(self, schema: str, table: str, ps: list[Prepared]) -> list[Prepared]:
        """Settle files the journal records as done and unchanged; return the rest.

        A no-op rerun must not cost one look-up per hundred files: for files whose journal
        entry is ``done`` with the same size, mtime and digests, the journal is trusted once
        one sample of their RIDs per table (a single request) is found in the catalog with
        the recorded MD5s. If any sampled row is gone (catalog reset, rows deleted), the
        table's files are all looked up as usual. ``verify`` checks every row.
        """
        done = [p for p in ps if p.entry is not None and p.entry.state == "done" and p.entry.rid
                and p.entry.url and p.digests is not None
                and p.entry.digests_for(p.item.size, p.item.mtime_ns) == p.digests]
        if not done:
            return ps
        key = (schema, table)
        if key not in self.journal_trusted:
            sample = {str(p.entry.rid): p.entry.md5 for p in done[: self.opt.lookup_batch]}  # type: ignore[union-attr]
            try:
                rows = await self._lookup(schema, table, "RID", sorted(sample))
            except Exception:  # noqa: BLE001 — fall back to the full look-up, which reports errors
                rows = []
            found = {str(r.get("RID")): r.get("MD5") for r in rows}
            self.journal_trusted[key] = found == sample
        if not self.journal_trusted[key]:
            return ps
        settled = {id(p) for p in done}
        for p in done:
            e = p.entry
            assert e is not None
            row = {"RID": e.rid, "URL": e.url, "MD5": e.md5, "Filename": p.item.file_name, "Length": p.item.size}
            p.decision = Decision("present", row=row, url=e.url)
        self.sink.advance("lookup", files=len(done))
        return [p for p in ps if id(p) not in settled]

    async def _lookup(self, schema: str, table: str, column: str, values: list[str]) -> list[dict[str, Any]]:
        async with self.requests:
            return await self.erm.lookup(schema, table, column, values)

    # -- transfer stage -------------------------------------------------------------

    async def transfer_window(self, window: Window) -> None:
        """Objects of the window, then its rows."""
        await self.insert_window(await self.send_window(window))

    async def insert_window(self, rows: list[tuple[Prepared, dict[str, Any], str]]) -> None:
        """Rows of one window (batched per table), then one journal transaction."""
        t1 = time.perf_counter()
        await self.insert_rows(rows)
        self.journal.flush()
        self.phase_time["insert"] += time.perf_counter() - t1

    async def send_window(self, window: Window) -> list[tuple[Prepared, dict[str, Any], str]]:
        """Objects of the window; returns the rows to insert."""
        t0 = time.perf_counter()
        work = [p for p in window.items if p.decision is not None]
        for p in work:
            assert p.decision is not None
            if p.decision.action == "conflict":
                if p.item.rel not in self.report.files:
                    self.fail(p.item, p.decision.reason, p.digests)
                self._release(p)
            elif p.decision.action == "present":
                assert p.decision.row is not None
                self.succeed(p, p.decision.row, "present")
                self.sink.advance("upload", files=1, nbytes=p.item.size, path=p.item.rel)
                self._release(p)
        sending = [p for p in work if p.decision and p.decision.action in ("upload", "resume")]
        for p in sending:
            if p.entry is None or p.entry.state not in ("putting",):
                self.journal.update(p.item.rel, p.item.size, p.item.mtime_ns, state="putting")
        self.journal.flush()  # a crash from here on makes the next run HEAD these objects first
        rows: list[tuple[Prepared, dict[str, Any], str]] = []

        async def one(p: Prepared) -> None:
            try:
                res = await self.send_object(p)
                if res is not None:
                    url, action = res
                    assert p.digests is not None
                    rows.append((p, asset_row(p.item, p.digests, object_url(url, p.item.versioned_urls)), action))
            except Exception as exc:  # noqa: BLE001 — one file's failure must not stop the others
                self.fail(p.item, exc, p.digests)
            finally:
                self._release(p)

        await asyncio.gather(*(one(p) for p in sending))
        for p in work:
            if p.decision and p.decision.action == "insert":
                assert p.digests is not None and p.decision.url is not None
                self.sink.advance("upload", files=1, nbytes=p.item.size, path=p.item.rel)
                rows.append((p, asset_row(p.item, p.digests, object_url(p.decision.url, p.item.versioned_urls)),
                             "inserted"))
        self.phase_time["upload"] += time.perf_counter() - t0
        return rows

    def pick_hatrac(self) -> HatracClient:
        """Round-robin over the connection pools (one file's requests stay on one pool)."""
        return self.hatracs[next(self._next_pool) % len(self.hatracs)]

    def _release(self, p: Prepared) -> None:
        if p.data is not None:
            self.budget.give(len(p.data))
            p.data = None

    async def send_object(self, p: Prepared) -> tuple[str, str] | None:
        """Store the object (unless HEAD shows it is there); returns (version path, action)."""
        item, d, dec = p.item, p.digests, p.decision
        assert d is not None and dec is not None
        path = hatrac_path(item, d)
        ctype, disp = content_type(item), content_disposition(item)
        chunked, chunk_len = is_chunked(item, self.opt.chunk_size)
        hc = self.pick_hatrac()
        if dec.head:
            async with self.requests:
                info = await hc.head(path)
            if info is not None and info.location and info.same_content(d):
                self._stored(item, d, info.location)
                self.sink.advance("upload", files=1, nbytes=item.size, path=item.rel)
                return info.location, "inserted"
        if chunked:
            url = await self.send_chunked(p, hc, path, ctype, disp, chunk_len)
            action = "resumed" if dec.action == "resume" else "uploaded"
        else:
            async with self.requests:  # read only when a connection is free: bounded bodies in memory
                data = p.data
                if data is None:
                    data, fresh = await asyncio.get_running_loop().run_in_executor(self.pool, _read_and_digest,
                                                                                   item.path)
                    if fresh != d or len(data) != item.size:
                        changed = (data, fresh)
                    else:
                        changed = None
                else:
                    changed = None
                if changed is None:
                    url = await hc.put(path, data, len(data), d, ctype, disp)
                del data
            if changed is not None:
                return await self._changed(p, *changed)
            action = "uploaded"
        self._stored(item, d, url)
        self.sink.advance("upload", files=1, nbytes=item.size, path=item.rel)
        return url, action

    async def _changed(self, p: Prepared, data: bytes, fresh: Digests) -> tuple[str, str] | None:
        """The file changed after hashing: use the new content's digests (re-hashed), re-check the catalog."""
        st = p.item.path.stat()
        p.item = replace(p.item, size=len(data), mtime_ns=st.st_mtime_ns)
        p.digests = fresh
        rows = await self._lookup(p.item.schema, p.item.table, "MD5", [fresh.md5])
        row, conflict = find_row(p.item, fresh, group_rows(rows, "MD5"), {})
        if row is not None:
            self.succeed(p, row, "present")
            return None
        if conflict:
            raise IntegrityError(conflict)
        p.data = data
        p.decision = Decision("upload", head=True)
        return await self.send_object(p)

    def _stored(self, item: Item, d: Digests, url: str) -> None:
        self.journal.update(item.rel, item.size, item.mtime_ns, md5=d.md5, sha256=d.sha256, url=url,
                            state="stored", job_url=None, chunks=())

    async def send_chunked(self, p: Prepared, hc: HatracClient, path: str, ctype: str, disp: str | None,
                           chunk_len: int) -> str:
        """Chunked job: resume the recorded one if the server still has it, else create one."""
        item, d = p.item, p.digests
        assert d is not None
        job: str | None = None
        done: set[int] = set()
        entry = p.entry
        if entry is not None and entry.job_url and entry.job_chunk:
            async with self.requests:
                status = await hc.job_status(entry.job_url)
            if (status is not None and status.get("content-md5") in (None, d.md5_b64)
                    and int(status.get("content-length", item.size)) == item.size):
                job = entry.job_url
                chunk_len = int(status.get("chunk-length") or entry.job_chunk)
                done = set(entry.chunks) if chunk_len == entry.job_chunk else set()
        if job is None:
            async with self.requests:
                job = await hc.create_job(path, item.size, chunk_len, d, ctype, disp)
                status = await hc.job_status(job)
            if status is not None and status.get("chunk-length"):
                chunk_len = int(status["chunk-length"])
            self.journal.update(item.rel, item.size, item.mtime_ns, md5=d.md5, sha256=d.sha256, job_url=job,
                                job_chunk=chunk_len, chunks=(), state="putting")
            self.journal.flush()
        total = n_chunks(item.size, chunk_len)
        missing = [i for i in range(total) if i not in done]
        per_file = asyncio.Semaphore(max(1, self.opt.chunks_in_flight))

        async def send(i: int) -> None:
            start = i * chunk_len
            length = min(chunk_len, item.size - start)
            async with per_file, self.requests:
                await hc.put_chunk(job, i, file_stream(item.path, start, length), length)
            done.add(i)
            # one small transaction per chunk (chunks are MiBs): a crash loses at most the chunks in flight
            self.journal.update(item.rel, item.size, item.mtime_ns, chunks=frozenset(done))
            self.journal.flush()
            self.sink.advance("upload", nbytes=length, path=item.rel)

        async def abandon(reason: str) -> IntegrityError:
            # the bytes on disk are no longer the ones hashed: the job can never verify, close it
            async with self.requests:
                await hc.cancel(job)
            st = item.path.stat()
            self.journal.update(item.rel, st.st_size, st.st_mtime_ns, state="new", job_url=None, chunks=())
            self.journal.flush()
            return IntegrityError(f"{item.rel}: {reason}; run the upload again")

        results = await asyncio.gather(*(send(i) for i in missing), return_exceptions=True)
        self.journal.flush()
        errors = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(e, IntegrityError) for e in errors):
            raise await abandon("file shrank while it was being uploaded")
        if errors:
            raise errors[0]
        st = item.path.stat()
        if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
            raise await abandon("file changed while it was being uploaded")
        async with self.requests:
            return await hc.finalize(job, path, d)

    # -- insert stage ---------------------------------------------------------------

    async def table_columns(self, schema: str, table: str) -> list[str] | None:
        """Column names of a table (one /schema GET per run), for GenericUploader's ``defaults``."""
        async with self._columns_lock:
            if self._columns is None:
                self._columns = {}
                try:
                    doc = await self.erm.get_schema()
                    for sname, s in (doc.get("schemas") or {}).items():
                        for tname, t in (s.get("tables") or {}).items():
                            self._columns[f"{sname}:{tname}"] = [c["name"] for c in t.get("column_definitions", [])]
                except Exception as exc:  # noqa: BLE001 — without the model, absent columns are simply NULL
                    log.warning("could not read the catalog model (%s); inserting without defaults", exc)
        return self._columns.get(f"{schema}:{table}")

    async def insert_rows(self, rows: list[tuple[Prepared, dict[str, Any], str]]) -> None:
        """Insert rows per (table, column set) in batches; find rows the server skipped."""
        groups: dict[tuple[str, str, frozenset[str]], list[tuple[Prepared, dict[str, Any], str]]] = defaultdict(list)
        for entry in rows:
            p, row, _ = entry
            groups[(p.item.schema, p.item.table, frozenset(row))].append(entry)
        tasks = []
        for (schema, table, cols), members in groups.items():
            for k in range(0, len(members), self.opt.insert_batch):
                tasks.append(self._insert_batch(schema, table, cols, members[k:k + self.opt.insert_batch]))
        await asyncio.gather(*tasks)

    async def _insert_batch(self, schema: str, table: str, cols: frozenset[str],
                            members: list[tuple[Prepared, dict[str, Any], str]]) -> None:
        all_cols = await self.table_columns(schema, table)
        defaults = sorted(c for c in (all_cols or []) if c not in cols and c not in _SYSTEM)
        nondefaults = ["RID"] if "RID" in cols else []
        try:
            async with self.requests:
                inserted = await self.erm.insert(schema, table, [r for _, r, _ in members], defaults=defaults,
                                                 nondefaults=nondefaults, onconflict_skip=True,
                                                 batch_size=len(members))
        except ServerError as exc:
            if len(members) == 1 or (exc.status is not None and exc.status in (401, 403)):
                for p, _, _ in members:
                    self.fail(p.item, exc, p.digests)
                return
            half = len(members) // 2  # atomic batch: split to isolate the bad row(s)
            await self._insert_batch(schema, table, cols, members[:half])
            await self._insert_batch(schema, table, cols, members[half:])
            return
        except Exception as exc:  # noqa: BLE001
            for p, _, _ in members:
                self.fail(p.item, exc, p.digests)
            return
        by_url = {r.get("URL"): r for r in inserted}
        missing = [(p, row, a) for p, row, a in members if row.get("URL") not in by_url]
        if missing:  # skipped on conflict: already there (a retried POST) or another key collided
            try:
                found = await self._lookup(schema, table, "URL", [row["URL"] for _, row, _ in missing])
            except Exception as exc:  # noqa: BLE001
                for p, _, _ in missing:
                    self.fail(p.item, exc, p.digests)
                missing = []
                found = []
            by_url.update({r.get("URL"): r for r in found})
        for p, row, action in members:
            got = by_url.get(row.get("URL"))
            if got is not None:
                self.succeed(p, got, action)
            elif p.item.rel not in self.report.files:
                self.fail(p.item, f"row not inserted: it collides with an existing row of {schema}:{table} on a "
                                  f"key (RID {row.get('RID')!r}?)", p.digests)
        self.sink.advance("insert", files=len(members))

    # -- table files ----------------------------------------------------------------

    def table_ledger(self) -> RidLedger:
        """The RID ledger of table-file rows, next to the journal (opened on first use)."""
        if self._ledger is None:
            self._ledger = RidLedger(ledger_path(self.root, self.dest, self.opt.journal_dir, under_upload_root=False),
                                     self.dest.key())
        return self._ledger

    async def upload_table_file(self, p: Prepared) -> None:
        """POST a table file's rows; safe to repeat (leased RIDs, ``onconflict=skip``; see engine.tables)."""
        item = p.item
        dec = p.decision
        if dec is not None and dec.action == "table-done":
            self.report.files[item.rel] = FileResult(**self.where(item), state=UploadState.success,
                                                     status="Already inserted (journal)", table=item.table_key,
                                                     length=item.size, action="present")
            self.report.counts(item.table_key).present += 1
            return
        ext = item.file_name.rsplit(".", 1)[-1].lower()
        ctype = {"csv": "text/csv", "json": "application/json"}.get(ext)
        if ctype is None:
            self.fail(item, f"unsupported table file type {ext!r} (use .csv or .json)")
            return
        try:
            raw = p.data if p.data is not None else item.path.read_bytes()
            parsed = parse_table_file(item.rel, raw, ext)
            if "RID" in parsed.columns:  # the file brings its own RIDs
                body, n_rows = raw, len(parsed.rows)
            else:
                ledger = self.table_ledger()
                rids = [ledger.get(item.table_key, r) for r in parsed.rows]
                need = [k for k, rid in enumerate(rids) if rid is None]
                if need:
                    async with self.requests:
                        fresh = await self.erm.lease_rids(len(need))
                    for k, rid in zip(need, fresh):
                        rids[k] = rid
                    ledger.put_many(item.table_key, [(parsed.rows[k], rids[k]) for k in need])  # before the POST
                body, n_rows = body_with_rids(parsed, [str(r) for r in rids], ext), len(parsed.rows)
            defaults = ",".join(sorted(c for c in item.default_columns if c != "RID"))
            query = f"?defaults={defaults}&nondefaults=RID&onconflict=skip" if defaults else \
                "?nondefaults=RID&onconflict=skip"
            path = f"{self.erm.prefix}/entity/{table_ref(item.schema, item.table)}{query}"
            async with self.requests:
                resp = await self.tr.request("POST", path, content=body,
                                             headers={"Content-Type": ctype, "Accept": "application/json"},
                                             idempotent=True, expect=(200, 201))
            try:
                n = len(resp.json())
            except ValueError:
                n = 0
        except Exception as exc:  # noqa: BLE001
            self.fail(item, exc, p.digests)
            return
        finally:
            self._release(p)
        self.report.files[item.rel] = FileResult(**self.where(item), state=UploadState.success,
                                                 status=f"Inserted {n} row(s)", table=item.table_key,
                                                 md5=p.digests.md5 if p.digests else None, length=item.size,
                                                 action="table")
        counts = self.report.counts(item.table_key)
        counts.inserted += n
        counts.present += n_rows - n
        counts.bytes += item.size
        self.journal.update(item.rel, item.size, item.mtime_ns, state="done",
                            **({"md5": p.digests.md5, "sha256": p.digests.sha256} if p.digests else {}))
        self.sink.advance("upload", files=1, nbytes=item.size, path=item.rel)


# Values repeated on every row (client ids) are shared, like the column names.
_SHARED_VALUE_COLUMNS = frozenset({"RCB", "RMB"})
_COLUMN_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}


class Row(Mapping[str, Any]):
    """A catalog row stored compactly: one shared column-name tuple per table, a value tuple.

    A 100,000-file report keeps every row (the seed returns them); as plain dicts they
    cost ~2x the memory. Behaves like a read-only dict (``row["RID"]``, ``dict(row)``).
    """

    __slots__ = ("_cols", "_vals")

    def __init__(self, cols: tuple[str, ...], vals: tuple[Any, ...]) -> None:
        self._cols = cols
        self._vals = vals

    def __getitem__(self, key: str) -> Any:
        try:
            return self._vals[self._cols.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)

    def __repr__(self) -> str:
        return repr(dict(self))


def _compact_row(row: Mapping[str, Any], d: Digests) -> Row:
    """The row with shared column names and shared repeated values (see :class:`Row`)."""
    cols = tuple(row)
    cols = _COLUMN_TUPLES.setdefault(cols, tuple(sys.intern(c) for c in cols))
    vals: list[Any] = []
    rct = row.get("RCT")
    for k, v in row.items():
        if isinstance(v, str):
            if k == "MD5" and v == d.md5:
                v = d.md5
            elif k in _SHARED_VALUE_COLUMNS:
                v = sys.intern(v)
            elif k == "RMT" and v == rct:
                v = rct  # inserted rows: modification time == creation time
        vals.append(v)
    return Row(cols, tuple(vals))


def _read_and_digest(path: Path) -> tuple[bytes, Digests]:
    """Read a small file again at PUT time and re-hash it (it may have changed since hashing)."""
    with open(path, "rb") as f:
        data = f.read()
    return data, digest_bytes(data)


def _windows(source: Iterator[Item | Unmatched], size: int, report: UploadReport,
             tables: list[Item], sink: EventSink) -> Iterator[list[Item]]:
    """Asset items in windows; the first ones are small so transfers start at once, then they grow."""
    window: list[Item] = []
    target = min(size, limits.FIRST_WINDOW_FILES)
    for x in source:
        if isinstance(x, Unmatched):
            report.unmatched.append((x.rel, x.reason))
            continue
        sink.add_total("upload", 1, x.size)
        sink.add_total("hash", 1, x.size)
        sink.advance("scan", files=1, nbytes=x.size)
        if x.kind == "table":
            tables.append(x)
            continue
        window.append(x)
        if len(window) >= target:
            yield window
            window = []
            target = min(size, target * 2)
    if window:
        yield window


def _source(root: Path, spec: Mapping[str, Any], options: UploadOptions,
            items: Iterable[Item] | None) -> Iterator[Item | Unmatched]:
    if items is None:
        return iter_scan(root, spec, options.shard)
    return (i for i in items if in_shard(i.rel, options.shard))


def _policy(options: UploadOptions) -> RetryPolicy:
    return RetryPolicy.from_seed(options.max_retries, options.retry_delay)


def _transports(dest: Destination, options: UploadOptions) -> tuple[Transport, FastTransport]:
    """An httpx transport for ERMrest (few, larger requests) and a lean one for Hatrac objects.

    Object PUTs are the per-file hot path: httpx spends ~1.5 ms of client CPU on each,
    the lean HTTP/1.1 client a fraction of that (see ``engine/http1.py``).
    """
    policy = _policy(options)
    erm = Transport(dest, policy, max_connections=min(options.workers, limits.POOL_CONNECTIONS),
                    timeout=options.timeout)
    objects = FastTransport(dest, policy, max_connections=options.workers, timeout=options.timeout)
    return erm, objects


# -- public entry points -------------------------------------------------------------------


async def upload_tree(root: Path | str, spec: Mapping[str, Any], dest: Destination,
                      options: UploadOptions | None = None, *, items: Iterable[Item] | None = None,
                      on_event: EventCallback | None = None, transport: Transport | None = None) -> UploadReport:
    """Upload every file under ``root`` that the spec places (or the given ``items``).

    Never raises for a single file's failure: see ``report.failed``. Raises
    ``ConfigError`` for a bad root/spec and ``AuthError``/``ServerError`` only when
    nothing can be done at all (e.g. the catalog refuses every request).
    """
    options = options or UploadOptions()
    if options.dry_run:
        raise ConfigError("dry_run: call plan_upload() instead of upload_tree()")
    root = Path(root)
    if items is None and not root.is_dir():
        raise ConfigError(f"upload directory {root} does not exist or is not a directory")
    if items is None:
        SpecMatcher(spec)  # validate the spec before anything else happens
    t_start = time.perf_counter()
    report = UploadReport()
    sink = EventSink(on_event)
    sink.set_total("scan", 0)
    journal = (Journal.for_upload(root, dest.key(), spec, options.journal_dir)
               if options.use_journal else Journal.memory())
    report.warnings.extend(journal.warnings)
    own_transport = transport is None
    transports: list[Any] = [transport] if transport is not None else list(_transports(dest, options))
    run = _Run(root, spec, dest, options, transports[:1], journal, sink, report, object_transports=transports[-1:])
    tables: list[Item] = []
    queue: asyncio.Queue[Window | None] = asyncio.Queue(maxsize=1)
    src = _windows(_source(root, spec, options, items), options.window_files, report, tables, sink)
    loop = asyncio.get_running_loop()

    def next_window() -> list[Item] | None:
        return next(src, None)

    async def producer() -> None:
        try:
            while True:
                t0 = time.perf_counter()
                batch = await loop.run_in_executor(None, next_window)
                run.phase_time["scan"] += time.perf_counter() - t0
                if batch is None:
                    break
                prepared = await run.hash_window(batch)
                await run.lookup_window(prepared)
                await queue.put(Window(prepared))
        finally:
            await queue.put(None)

    async def consumer() -> None:
        # window k's rows are inserted while window k+1's objects are sent (one insert in flight)
        inserting: asyncio.Task[None] | None = None
        try:
            while True:
                w = await queue.get()
                if w is None:
                    break
                rows = await run.send_window(w)
                if inserting is not None:
                    await inserting
                inserting = asyncio.create_task(run.insert_window(rows))
            if inserting is not None:
                await inserting
                inserting = None
        finally:
            if inserting is not None and not inserting.done():
                inserting.cancel()

    try:
        if own_transport:
            for t in transports:
                await t.__aenter__()
        prod = asyncio.create_task(producer())
        try:
            await consumer()
        finally:
            if not prod.done():
                prod.cancel()
            try:
                await prod
            except asyncio.CancelledError:
                pass
        sink.finish("scan")
        if tables:
            prepared = await run.hash_window(tables)
            for p in prepared:
                p.decision = decide(p.item, p.digests, p.entry, None)
                await run.upload_table_file(p)
        sink.finish("upload")
        sink.finish("insert")
    finally:
        journal.close()
        if run._ledger is not None:
            run._ledger.close()
        run.pool.shutdown(wait=False)
        if own_transport:
            for t in transports:
                await t.aclose()
    report.warnings.extend(w for w in journal.warnings if w not in report.warnings)
    st = report.stats
    st.requests = sum(t.stats.requests for t in transports)
    st.retries = sum(t.stats.retries for t in transports)
    st.bytes_sent = sum(t.stats.bytes_sent for t in transports)
    st.elapsed = time.perf_counter() - t_start
    st.phases = dict(run.phase_time)
    for r in report.files.values():
        if r.state == UploadState.success and r.action in ("uploaded", "resumed") and r.table:
            report.counts(r.table).bytes += r.length or 0
    sink.message("done", report.summary())
    return report


def run_upload(root: Path | str, spec: Mapping[str, Any], dest: Destination, options: UploadOptions | None = None,
               *, items: Iterable[Item] | None = None, on_event: EventCallback | None = None) -> UploadReport:
    """Synchronous :func:`upload_tree` (runs its own event loop)."""
    return asyncio.run(upload_tree(root, spec, dest, options, items=items, on_event=on_event))


async def _plan(root: Path, spec: Mapping[str, Any], dest: Destination, options: UploadOptions,
                items: Iterable[Item] | None, on_event: EventCallback | None) -> Plan:
    plan = Plan()
    report = UploadReport()
    sink = EventSink(on_event)
    journal = Journal.memory()  # the dry run writes nothing, not even the journal
    opts = options.with_(dry_run=True)
    async with Transport(dest, _policy(opts), max_connections=opts.workers, timeout=opts.timeout) as tr:
        run = _Run(root, spec, dest, opts, [tr], journal, sink, report)
        tables: list[Item] = []
        try:
            for batch in _windows(_source(root, spec, opts, items), opts.window_files, report, tables, sink):
                prepared = await run.hash_window(batch)
                await run.lookup_window(prepared)
                for p in prepared:
                    run._release(p)
                    assert p.decision is not None
                    plan.add(p.item, p.decision, p.digests)
            for p in await run.hash_window(tables):
                run._release(p)
                plan.add(p.item, Decision("table"), p.digests)
        finally:
            run.pool.shutdown(wait=False)
    plan.unmatched = list(report.unmatched)
    plan.errors = {rel: r.error or r.status for rel, r in report.files.items() if r.state == UploadState.failed}
    return plan


def plan_upload(root: Path | str, spec: Mapping[str, Any], dest: Destination, options: UploadOptions | None = None,
                *, items: Iterable[Item] | None = None, on_event: EventCallback | None = None) -> Plan:
    """Dry run: what maps where, what the catalog already has (by checksum), what would be sent.

    Reads files and queries the catalog; writes nothing (no objects, rows or journal).
    """
    root = Path(root)
    if items is None and not root.is_dir():
        raise ConfigError(f"upload directory {root} does not exist or is not a directory")
    return asyncio.run(_plan(root, spec, dest, options or UploadOptions(), items, on_event))


@dataclass
class JournalStatus:
    """What the journal of (root, destination, spec) remembers."""

    path: str | None
    exists: bool
    counts: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "exists": self.exists, "counts": dict(self.counts), "files": list(self.files)}


def status(root: Path | str, dest: Destination, spec: Mapping[str, Any], *,
           journal_dir: Path | None = None) -> JournalStatus:
    """Per-file state recorded by earlier runs (read from the journal; nothing is sent)."""
    from deriva_upload.engine.journal import journal_path

    path = journal_path(Path(root), dest.key(), spec, journal_dir)
    if not path.exists():
        return JournalStatus(str(path), False)
    j = Journal(path, dest.key())
    try:
        entries = j.all()
    finally:
        j.close()
    out = JournalStatus(str(path), True)
    for e in entries:
        out.counts[e.state] = out.counts.get(e.state, 0) + 1
        out.files.append({"path": e.rel, "state": e.state, "size": e.size, "md5": e.md5, "url": e.url,
                          "rid": e.rid, "chunks_sent": len(e.chunks), "job": e.job_url, "error": e.error})
    return out


async def _verify(root: Path, spec: Mapping[str, Any], dest: Destination, options: UploadOptions,
                  items: Iterable[Item] | None) -> VerifyReport:
    out = VerifyReport()
    report = UploadReport()
    sink = EventSink(None)
    opts = options.with_(dry_run=True)
    async with Transport(dest, _policy(opts), max_connections=opts.workers, timeout=opts.timeout) as tr:
        run = _Run(root, spec, dest, opts, [tr], Journal.memory(), sink, report)
        tables: list[Item] = []
        try:
            for batch in _windows(_source(root, spec, opts, items), opts.window_files, report, tables, sink):
                prepared = await run.hash_window(batch)
                await run.lookup_window(prepared)

                async def check(p: Prepared) -> None:
                    run._release(p)
                    assert p.decision is not None and p.digests is not None
                    if p.decision.action != "present" or p.decision.row is None:
                        out.problems[p.item.rel] = p.decision.reason or "no row in the catalog"
                        return
                    url = str(p.decision.row.get("URL") or "")
                    if not url.startswith("/hatrac/"):
                        out.problems[p.item.rel] = f"row {p.decision.row.get('RID')} has no Hatrac URL ({url!r})"
                        return
                    async with run.requests:
                        info = await run.hatrac.head(url)
                    if info is None:
                        out.problems[p.item.rel] = f"object {url} is missing"
                    elif not info.matches(p.digests):
                        out.problems[p.item.rel] = (f"object {url} digests differ from the local file "
                                                    f"(server md5={info.md5_b64}, sha256={info.sha256_b64})")
                    elif info.length is not None and info.length != p.item.size:
                        out.problems[p.item.rel] = f"object {url} has {info.length} bytes, local file {p.item.size}"
                    elif str(p.decision.row.get("MD5")) != p.digests.md5:
                        out.problems[p.item.rel] = "row MD5 differs from the local file"
                    else:
                        out.ok.append(p.item.rel)

                await asyncio.gather(*(check(p) for p in prepared))
        finally:
            run.pool.shutdown(wait=False)
    for rel, r in report.files.items():
        if r.state == UploadState.failed:
            out.problems.setdefault(rel, r.error or r.status)
    out.unmatched = list(report.unmatched)
    out.skipped = [t.rel for t in tables]
    return out


def verify(root: Path | str, spec: Mapping[str, Any], dest: Destination, options: UploadOptions | None = None,
           *, items: Iterable[Item] | None = None) -> VerifyReport:
    """For every file: its row exists and the object's server-side MD5/SHA-256 equal the local file's.

    Table files cannot be checked row by row and are listed in ``skipped``.
    """
    return asyncio.run(_verify(Path(root), spec, dest, options or UploadOptions(), items))


__all__ = ["upload_tree", "run_upload", "plan_upload", "status", "verify", "JournalStatus", "ByteBudget",
           "file_stream"]
