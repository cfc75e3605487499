"""Idempotent row inserts: a rerun never duplicates a row, and every failed row is reported.

Rows that carry RIDs are sent only if absent; rows with a natural key go with
``onconflict=skip``; other rows get a leased RID recorded in the ledger before the insert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from deriva.core.ermrest_model import Table

from deriva_upload.engine.ermrest import ErmrestClient
from deriva_upload.errors import AuthError, DerivaUploadError, ServerError, TransientError
from deriva_upload.engine.ledger import RidLedger
from deriva_upload.execution.plan import RowSource
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.report import ExecutionReport, TableTally
from deriva_upload.execution.schema import natural_key, tkey
from deriva_upload.model import DerivaModel

# Line numbers quoted in one failure message (the count says how many there were).
MAX_LINES_LISTED = 20


class Writer:
    """Inserts row groups idempotently and keeps the report's tallies."""

    def __init__(self, client: ErmrestClient, model: DerivaModel, report: ExecutionReport,
                 ledger_factory: Callable[[], RidLedger], batch_size: int) -> None:
        self.client = client
        self.model = model
        self.report = report
        self._ledger_factory = ledger_factory
        self._ledger: RidLedger | None = None
        self.batch_size = batch_size

    @property
    def ledger(self) -> RidLedger:
        if self._ledger is None:
            self._ledger = self._ledger_factory()
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()

    def _table(self, schema: str, name: str) -> Table:
        return self.model.model.schemas[schema].tables[name]

    async def insert(self, table: Table, rows: Sequence[RowSource]) -> None:
        """Insert ``rows`` into ``table`` so that a rerun cannot duplicate them."""
        table_key = tkey(table)
        tally = self.report.tally(table_key)
        if not rows:
            return
        stats = self.client.transport.stats
        sent_before = stats.bytes_sent
        try:
            values = [r.values for r in rows]
            if all(v.get("RID") for v in values):
                await self._insert_with_rids(table.schema.name, table.name, rows, tally)
            elif (key := natural_key(table, values)) is not None:
                await self._send(table, self._first_per_key(table_key, key, rows, tally), (), tally)
            else:
                await self._insert_with_ledger(table, rows, tally)
        except DerivaUploadError as e:  # the RID look-up or lease failed: nothing of this group was sent
            self._fail(table_key, rows, e, tally)
        finally:
            tally.bytes += stats.bytes_sent - sent_before

    def _first_per_key(self, table_key: str, key: Sequence[str], rows: Sequence[RowSource],
                       tally: TableTally) -> list[RowSource]:
        """The first row of each key value; later ones are warned about and counted present.

        ERMrest refuses a batch with two rows on one key (deriva-ml's era A skipped the
        second value the same way).
        """
        unique: dict[tuple, RowSource] = {}
        for r in rows:
            k = tuple(str(r.values.get(c)) for c in key)
            if k in unique:
                self.report.warnings.append(
                    f"{r.file}:{r.line}: same {'/'.join(key)} as {unique[k].file}:{unique[k].line} "
                    f"in {table_key}; only the first is kept")
                tally.present += 1
                continue
            unique[k] = r
        return list(unique.values())

    async def _send(self, table: Table, rows: Sequence[RowSource], nondefaults: Sequence[str],
                    tally: TableTally) -> None:
        """POST in batches; a batch the server refuses is split to pin down the bad row(s)."""
        for start in range(0, len(rows), self.batch_size):
            await self._send_batch(table, list(rows[start:start + self.batch_size]), nondefaults, tally)

    async def _send_batch(self, table: Table, rows: list[RowSource], nondefaults: Sequence[str],
                          tally: TableTally) -> None:
        if not rows:
            return
        try:
            inserted = await self.client.insert(table.schema.name, table.name, [r.values for r in rows],
                                                nondefaults=nondefaults, onconflict_skip=True,
                                                batch_size=len(rows))
        except ServerError as e:
            if len(rows) == 1 or isinstance(e, (AuthError, TransientError)):
                self._fail(tkey(table), rows, e, tally)
                return
            half = len(rows) // 2  # ERMrest batches are all-or-nothing
            await self._send_batch(table, rows[:half], nondefaults, tally)
            await self._send_batch(table, rows[half:], nondefaults, tally)
            return
        tally.inserted += len(inserted)
        tally.present += len(rows) - len(inserted)

    def _fail(self, table_key: str, rows: Sequence[RowSource], error: BaseException, tally: TableTally) -> None:
        """Report rows not inserted, one problem per source file (lines listed)."""
        tally.failed += len(rows)
        by_file: dict[str, list[int | None]] = defaultdict(list)
        for r in rows:
            by_file[r.file].append(r.line)
        for file, lines in by_file.items():
            numbered = [n for n in lines if n is not None]
            first = numbered[0] if len(numbered) == 1 else None
            more = ", ..." if len(numbered) > MAX_LINES_LISTED else ""
            where = f" (lines {', '.join(map(str, numbered[:MAX_LINES_LISTED]))}{more})" if len(numbered) > 1 else ""
            self.report.failures.append(Problem(file, first, f"{len(lines)} row(s){where} not inserted into "
                                                             f"{table_key}: {error}"))

    async def _insert_with_rids(self, schema: str, name: str, rows: Sequence[RowSource], tally: TableTally) -> None:
        # Only send RIDs that are not there yet: a claimed lease may be gone (non-owners),
        # and the lease check could refuse a RID whose row already exists.
        rids = [str(r.values["RID"]) for r in rows]
        existing = {x["RID"] for x in await self.client.lookup(schema, name, "RID", rids, columns=["RID"])}
        todo = [r for r in rows if str(r.values["RID"]) not in existing]
        tally.present += len(rows) - len(todo)
        await self._send(self._table(schema, name), todo, ("RID",), tally)

    async def _insert_with_ledger(self, table: Table, rows: Sequence[RowSource], tally: TableTally) -> None:
        table_key = tkey(table)
        assigned: list[tuple[RowSource, str]] = []
        fresh: list[RowSource] = []
        for r in rows:
            rid = self.ledger.get(table_key, r)
            if rid is None:
                fresh.append(r)
            else:
                assigned.append((r, rid))
        if fresh:
            leased = await self.client.lease_rids(len(fresh))
            pairs = list(zip(fresh, leased))
            self.ledger.put_many(table_key, pairs)  # remembered before the insert: a crash cannot duplicate
            assigned.extend(pairs)
        with_rids = [RowSource(r.file, r.line, {**r.values, "RID": rid}) for r, rid in assigned]
        await self._insert_with_rids(table.schema.name, table.name, with_rids, tally)
