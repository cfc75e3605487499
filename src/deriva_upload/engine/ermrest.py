"""Batched ERMrest operations over a :class:`Transport`.

URL building is pure (module-level functions, unit-tested without a server); the
``ErmrestClient`` methods add the I/O. Every name and literal in a URL is
percent-encoded with *no* safe characters (deriva-py's ``urlquote``), because ERMrest
uses ``: = & ; , @ ( ) !`` as syntax.

Idempotency of inserts (why a retried POST cannot duplicate rows):
``POST /entity/S:T?onconflict=skip`` drops input rows that collide with an existing row
on *any* key. So a retried insert is harmless exactly when each row fills a key that
identifies it: a natural key (asset tables: ``URL``; associations such as
``<T>_Execution``/``<T>_Asset_Type``: the composite association key; feature tables:
``(Execution, <Target>, Feature_Name)``; vocabularies: ``Name``) or a pre-allocated
``RID`` sent with ``nondefaults=RID`` (leased with :meth:`ErmrestClient.lease_rids`).
``insert`` therefore treats a POST as idempotent only with ``onconflict_skip=True``;
callers inserting into a table whose only key is a server-assigned RID must pass
``idempotent=False`` (then a lost response raises ``TransientError`` instead of risking
a duplicate) or supply RIDs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from deriva_upload.engine.transport import Transport
from deriva_upload.errors import ServerError

# Longest request URL we build. Apache's default LimitRequestLine is 8190 bytes; 6 KB
# leaves room for the scheme/host, headers folded by proxies, and the catalog prefix.
MAX_URL_CHARS = 6000
# Rows per insert POST: ERMrest handles ~1000-row JSON bodies well within its 63 s budget,
# and one bad row fails the whole batch, so larger batches cost more on error.
DEFAULT_INSERT_BATCH = 1000
# Rows per attributegroup PUT (same reasoning as inserts).
DEFAULT_UPDATE_BATCH = 1000
# Rows per page when reading a whole table with @sort(RID)@after(..).
DEFAULT_PAGE_SIZE = 5000
# deriva-ml leases RIDs in chunks of 500 (PENDING_ROWS_LEASE_CHUNK).
LEASE_CHUNK = 500
LEASE_TABLE = ("public", "ERMrest_RID_Lease")
#: System columns ERMrest always defaults unless listed in ``nondefaults``.
SYSTEM_COLUMNS = ("RID", "RCT", "RMT", "RCB", "RMB")


# -- pure URL building -------------------------------------------------------------------

def q(value: Any) -> str:
    """Percent-encode a name or literal with no safe characters."""
    return quote(str(value), safe="")


def table_ref(schema: str, table: str) -> str:
    """``S:T`` with both parts encoded."""
    return f"{q(schema)}:{q(table)}"


def any_filter(column: str, values: Sequence[Any]) -> str:
    """``col=any(v1,v2,...)`` (``col=v`` for one value)."""
    if len(values) == 1:
        return f"{q(column)}={q(values[0])}"
    return f"{q(column)}=any({','.join(q(v) for v in values)})"


def split_any_batches(column: str, values: Iterable[Any], budget: int) -> list[list[Any]]:
    """Split ``values`` so each ``any_filter(column, batch)`` is at most ``budget`` chars.

    Order is kept and duplicates (and ``None``, which ``any`` cannot express) dropped.
    A single value longer than the budget still gets its own batch (the server decides).
    """
    seen: set[str] = set()
    batches: list[list[Any]] = []
    current: list[Any] = []
    head = len(q(column)) + len("=any()")
    size = head
    for value in values:
        if value is None:
            continue
        key = str(value)
        if key in seen:
            continue
        seen.add(key)
        cost = len(q(value)) + (1 if current else 0)
        if current and size + cost > budget:
            batches.append(current)
            current, size = [], head
            cost = len(q(value))
        current.append(value)
        size += cost
    if current:
        batches.append(current)
    return batches


def insert_query(defaults: Iterable[str] | None, nondefaults: Iterable[str], onconflict_skip: bool) -> str:
    """``?defaults=..&nondefaults=..&onconflict=skip`` (empty string when nothing applies)."""
    params: list[str] = []
    defaults = sorted(set(defaults or ()))
    if defaults:
        params.append("defaults=" + ",".join(q(c) for c in defaults))
    nondefaults = sorted(set(nondefaults))
    if nondefaults:
        params.append("nondefaults=" + ",".join(q(c) for c in nondefaults))
    if onconflict_skip:
        params.append("onconflict=skip")
    return ("?" + "&".join(params)) if params else ""


def attributegroup_update_path(schema: str, table: str, key_cols: Sequence[str], target_cols: Sequence[str]) -> str:
    """``/attributegroup/S:T/k1,k2;t1,t2`` (input rows name columns directly)."""
    if not key_cols or not target_cols:
        raise ValueError("update needs at least one key column and one target column")
    overlap = set(key_cols) & set(target_cols)
    if overlap:
        raise ValueError(f"columns {sorted(overlap)} cannot be both key and target")
    keys = ",".join(q(c) for c in key_cols)
    targets = ",".join(q(c) for c in target_cols)
    return f"/attributegroup/{table_ref(schema, table)}/{keys};{targets}"


def paged_path(path: str, after: str | None, limit: int) -> str:
    """Add ``@sort(RID)[@after(rid)]?limit=N`` to an entity/attribute path (no query allowed)."""
    if "?" in path or "@sort(" in path:
        raise ValueError(f"query path must not carry its own query or sort: {path}")
    out = f"{path}@sort(RID)"
    if after is not None:
        out += f"@after({q(after)})"
    return f"{out}?limit={int(limit)}"


# -- client ------------------------------------------------------------------------------

class ErmrestClient:
    """ERMrest data operations for one catalog over a shared transport."""

    def __init__(self, transport: Transport, catalog_id: str | None = None) -> None:
        self.transport = transport
        self.catalog_id = str(catalog_id) if catalog_id is not None else transport.destination.catalog_id
        self.prefix = f"/ermrest/catalog/{q(self.catalog_id)}"

    def _url_budget(self, fixed: str) -> int:
        """Characters left for a filter in a URL whose other parts total ``fixed``."""
        used = len(self.transport.destination.base_url) + len(self.prefix) + len(fixed)
        return max(200, MAX_URL_CHARS - used)

    # -- model -------------------------------------------------------------------

    async def get_schema(self) -> dict[str, Any]:
        """The whole model document (``GET /schema``)."""
        return await self.transport.get_json(f"{self.prefix}/schema")

    # -- reads -------------------------------------------------------------------

    async def get(self, path: str) -> list[dict[str, Any]]:
        """One GET of a data path relative to the catalog (e.g. ``/entity/S:T/RID=1``)."""
        return await self.transport.get_json(f"{self.prefix}{path}")

    async def lookup(
        self,
        schema: str,
        table: str,
        column: str,
        values: Iterable[Any],
        *,
        extra_filter: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows whose ``column`` is one of ``values``, in as few GETs as the URL limit allows.

        ``extra_filter`` is an already-encoded ERMrest filter ANDed to each query (e.g.
        ``Execution=1-ABC``); ``columns`` projects (attribute API) instead of whole rows.
        """
        values = list(values)
        if not values:
            return []
        base = f"/{'attribute' if columns else 'entity'}/{table_ref(schema, table)}"
        tail = f"/{extra_filter}" if extra_filter else ""
        proj = ("/" + ",".join(q(c) for c in columns)) if columns else ""
        budget = self._url_budget(base + "/" + tail + proj)
        rows: list[dict[str, Any]] = []
        for batch in split_any_batches(column, values, budget):
            rows.extend(await self.get(f"{base}/{any_filter(column, batch)}{tail}{proj}"))
        return rows

    async def query(self, path: str, *, page_size: int = DEFAULT_PAGE_SIZE) -> list[dict[str, Any]]:
        """All rows of a data path, read in RID-ordered pages (rows must carry ``RID``)."""
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = await self.get(paged_path(path, after, page_size))
            rows.extend(page)
            if len(page) < page_size:
                return rows
            after = page[-1]["RID"]

    # -- writes ------------------------------------------------------------------

    async def insert(
        self,
        schema: str,
        table: str,
        rows: Sequence[dict[str, Any]],
        *,
        defaults: Iterable[str] | None = None,
        nondefaults: Iterable[str] = (),
        onconflict_skip: bool = True,
        batch_size: int = DEFAULT_INSERT_BATCH,
        idempotent: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Insert ``rows`` in JSON batches; returns the rows the server inserted.

        With ``onconflict_skip`` rows colliding with existing ones on any key are left
        out of the result (they were already there). ``idempotent`` defaults to
        ``onconflict_skip`` (see the module docstring for which keys make that true).
        """
        rows = list(rows)
        if not rows:
            return []
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        safe = onconflict_skip if idempotent is None else idempotent
        path = f"{self.prefix}/entity/{table_ref(schema, table)}{insert_query(defaults, nondefaults, onconflict_skip)}"
        inserted: list[dict[str, Any]] = []
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            response = await self.transport.request(
                "POST", path, json=batch, headers={"Accept": "application/json"},
                idempotent=safe, expect=(200, 201),
            )
            inserted.extend(_dedupe_keys(response.json()))
        return inserted

    async def update(
        self,
        schema: str,
        table: str,
        rows: Sequence[dict[str, Any]],
        key_cols: Sequence[str],
        target_cols: Sequence[str],
        *,
        batch_size: int = DEFAULT_UPDATE_BATCH,
    ) -> int:
        """Set ``target_cols`` of the rows matching ``key_cols``; returns how many matched.

        Real ERMrest answers ``200 []`` when nothing matches (protocol §10) while the
        documented behaviour is 409; both count as zero matched rows here.
        """
        rows = list(rows)
        if not rows:
            return 0
        path = self.prefix + attributegroup_update_path(schema, table, key_cols, target_cols)
        wanted = list(key_cols) + list(target_cols)
        matched = 0
        for start in range(0, len(rows), batch_size):
            batch = [{c: r.get(c) for c in wanted} for r in rows[start:start + batch_size]]
            try:
                response = await self.transport.request(
                    "PUT", path, json=batch, headers={"Accept": "application/json"}, expect=(200,)
                )
            except ServerError as exc:
                if exc.status == 409 and "does not match existing" in str(exc):
                    continue
                raise
            body = response.json() if response.content.strip() else []
            matched += len(body)
        return matched

    async def delete(self, path: str) -> bool:
        """``DELETE /entity<path>``-style request relative to the catalog; False if nothing matched."""
        response = await self.transport.request("DELETE", f"{self.prefix}{path}", expect=(200, 204, 404))
        return response.status_code != 404

    async def lease_rids(self, n: int) -> list[str]:
        """Lease ``n`` fresh RIDs (``public:ERMrest_RID_Lease``), in chunks of 500.

        Each lease row carries a random token in ``ID``; the POST uses onconflict=skip and
        any token missing from the answer (a retried POST whose first answer was lost) is
        read back by ID, so retries neither fail nor lose leases.
        """
        rids: list[str] = []
        schema, table = LEASE_TABLE
        while len(rids) < n:
            count = min(LEASE_CHUNK, n - len(rids))
            tokens = [uuid.uuid4().hex for _ in range(count)]
            got = await self.insert(schema, table, [{"ID": t} for t in tokens], onconflict_skip=True)
            wanted = set(tokens)
            by_token = {r["ID"]: r["RID"] for r in got if r.get("ID") in wanted}
            missing = [t for t in tokens if t not in by_token]
            if missing:
                for r in await self.lookup(schema, table, "ID", missing):
                    by_token[r["ID"]] = r["RID"]
            if len(by_token) != count:
                raise ServerError(f"RID lease returned {len(by_token)} of {count} leases")
            rids.extend(by_token[t] for t in tokens)
        return rids


def _dedupe_keys(rows: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts (real ERMrest repeats system columns; json keeps the last)."""
    if not isinstance(rows, list):
        raise ServerError(f"expected a JSON list from ERMrest, got {type(rows).__name__}")
    return [dict(r) for r in rows]
