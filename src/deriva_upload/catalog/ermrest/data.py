"""Entity writes and reads against one catalog store (the ERMrest data API semantics).

Every write runs in one SQLite transaction (``CatalogStore.transaction``): a bad row,
a key collision or a foreign-key violation rejects the whole request and nothing is kept.
Inserts are column-major with ``executemany`` so 1,000-row batches cost little Python time.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from typing import Any, Iterable

from .errors import BadRequest, Conflict, Forbidden, NotFound
from .model import SYSTEM_COLUMNS, ColumnInfo, TableInfo, qi
from .rid import rid_decode, rid_encode
from .sql import build_select, resolve_table, where_clause
from .store import CatalogStore, now_timestamp
from .types import coerce
from .urlparse import DataRequest

NEVER_WRITABLE = frozenset({"RMT", "RMB"})
_PHYS_RE = re.compile(r't_([0-9A-Z-]+)')


def integrity_conflict(store: CatalogStore, e: sqlite3.Error) -> Conflict:
    """409 naming ERMrest tables rather than our physical SQLite names."""
    msg = str(e)

    def repl(m: re.Match) -> str:
        info = store.model.by_rid.get(m.group(1))
        return info.qname if info else m.group(0)

    return Conflict(f"Input data violates model. {_PHYS_RE.sub(repl, msg)}")


# ---------------------------------------------------------------------------
# input parsing


def parse_json_rows(body: bytes, stream: bool) -> list[dict]:
    try:
        if stream:
            rows = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        else:
            rows = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise BadRequest(f"Bad JSON input: {str(e)[:200]}") from None
    if isinstance(rows, dict) and not stream:
        rows = [rows]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest("JSON input must be an array of objects.")
    return rows


_CSV_FIELD = re.compile(r'"((?:[^"]|"")*)"|([^,\r\n"]*)')


def parse_csv(body: bytes) -> tuple[list[str], list[list[str | None]]]:
    """Parse CSV with ERMrest NULL rules: unquoted empty = NULL, ``""`` = empty string."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("CSV input must be UTF-8.") from None
    if '"' not in text:
        rows = [[None if f == "" else f for f in r] for r in csv.reader(io.StringIO(text))]
    else:
        rows = _parse_csv_exact(text)
    rows = [r for r in rows if r and r != [None]]
    if not rows:
        raise BadRequest("CSV input requires a header row.")
    header = [h if h is not None else "" for h in rows[0]]
    if len(set(header)) != len(header):
        raise BadRequest("Duplicate CSV column names in header.")
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise BadRequest(f"CSV row {i} has {len(r)} fields, header has {len(header)}.")
    return header, rows[1:]


def _parse_csv_exact(text: str) -> list[list[str | None]]:
    rows: list[list[str | None]] = []
    pos, n = 0, len(text)
    row: list[str | None] = []
    while pos < n or row:
        m = _CSV_FIELD.match(text, pos)
        if m is None:  # pragma: no cover - the pattern always matches (possibly empty)
            raise BadRequest("Malformed CSV input.")
        if m.group(1) is not None:
            row.append(m.group(1).replace('""', '"'))
        else:
            row.append(m.group(2) or None)
        pos = m.end()
        if pos >= n:
            rows.append(row)
            break
        c = text[pos]
        if c == ",":
            pos += 1
            continue
        if c in "\r\n":
            pos += 2 if text.startswith("\r\n", pos) else 1
            rows.append(row)
            row = []
            continue
        raise BadRequest(f"Malformed CSV input near offset {pos}.")
    return rows


# ---------------------------------------------------------------------------
# output


def output_rows(columns: list[tuple[str, Any]], tuples: Iterable[tuple]) -> list[dict]:
    """Turn stored tuples into JSON-ready dicts; ``columns`` is [(name, converter|None)]."""
    names = [c[0] for c in columns]
    convs = [(i, c[1]) for i, c in enumerate(columns) if c[1] is not None]
    if not convs:
        return [dict(zip(names, t)) for t in tuples]
    out = []
    for t in tuples:
        t = list(t)
        for i, f in convs:
            v = t[i]
            if v is not None:
                t[i] = f(v)
        out.append(dict(zip(names, t)))
    return out


def table_columns_out(table: TableInfo) -> list[tuple[str, Any]]:
    return [(c.name, c.out) for c in table.columns]


# ---------------------------------------------------------------------------
# reads


def select(store: CatalogStore, req: DataRequest, limit: int | None) -> tuple[list[tuple[str, Any]], list[tuple], list]:
    """Run a GET; returns (output column descriptors, raw tuples, OutColumn list)."""
    q = build_select(store.model, req, limit)
    with store.reader() as conn:
        try:
            tuples = conn.execute(q.sql, q.params).fetchall()
        except sqlite3.OperationalError as e:
            raise BadRequest(f"Query failed: {e}") from None
    return [(c.name, c.out) for c in q.columns], tuples, q.columns


def resolve_rid(store: CatalogStore, rid: str) -> dict:
    try:
        rid_decode(rid)
    except ValueError:
        raise NotFound(f"RID {rid} not found.") from None
    model = store.model
    lease = None
    with store.reader() as conn:
        for t in model.tables.values():
            if conn.execute(f'SELECT 1 FROM {qi(t.phys)} WHERE "RID" = ?', (rid,)).fetchone():
                hit = {"schema_name": t.schema, "table_name": t.name, "RID": rid}
                if (t.schema, t.name) == ("public", "ERMrest_RID_Lease"):
                    lease = hit
                    continue
                return hit
    if lease:
        return lease
    raise NotFound(f"RID {rid} not found.")


# ---------------------------------------------------------------------------
# writes


def _check_names(table: TableInfo, names: Iterable[str], what: str) -> None:
    for n in names:
        if n not in table.colmap:
            raise Conflict(f"Requested {what} column {n} does not exist in table {table.name}.")


def insert(
    store: CatalogStore,
    req: DataRequest,
    rows: list[dict],
    defaults: set[str],
    nondefaults: set[str],
    on_conflict_skip: bool,
    client: dict,
    csv_header: list[str] | None = None,
) -> tuple[TableInfo, list[dict]]:
    """``POST /entity/S:T``: insert rows atomically; returns the complete inserted rows in input order."""
    if req.filters:
        raise BadRequest("Entity insertion does not accept filters in the path.")
    if req.sort or req.after is not None or req.before is not None:
        raise BadRequest("Entity insertion does not accept path modifiers.")
    table = resolve_table(store.model, req)
    _check_names(table, defaults, "default")
    _check_names(table, nondefaults, "nondefault")
    if nondefaults & NEVER_WRITABLE:
        raise Forbidden("Columns RMT and RMB are always set by the server.")
    if (table.schema, table.name) == ("public", "ERMrest_Client"):
        raise Forbidden("The ERMrest_Client table is maintained by the server.")
    defaulted = (set(SYSTEM_COLUMNS) | defaults) - nondefaults
    defaulted |= NEVER_WRITABLE
    input_cols = [c for c in table.columns if c.name not in defaulted]
    if not input_cols:
        raise Conflict("Entity insertion requires at least one non-defaulting column.")
    if csv_header is not None:
        known = set(table.colmap)
        for h in csv_header:
            if h not in known:
                raise Conflict(f"CSV column {h} not recognized.")
        missing = [c.name for c in input_cols if c.name not in csv_header]
        if missing:
            raise BadRequest(f"Missing expected CSV column(s): {', '.join(missing)}.")
    n = len(rows)
    if n == 0:
        return table, []
    with store.transaction() as conn:
        store.register_client(conn, client)
        now = now_timestamp()
        cid = client["id"]
        values: list[list[Any]] = []
        rid_values: list[str] | None = None
        if "RID" in defaulted:
            rng = store.allocate(n)
            rid_values = [rid_encode(i) for i in rng]
        for c in table.columns:
            name = c.name
            if name in defaulted:
                if name == "RID":
                    col = rid_values
                elif name in ("RCT", "RMT"):
                    col = [now] * n
                elif name in ("RCB", "RMB"):
                    col = [cid] * n
                elif c.default_template is not None:
                    col = [c.default_template.replace("{RID}", r or "") for r in (rid_values or [r.get("RID") for r in rows])]
                else:
                    col = [c.default] * n
            else:
                col = _coerce_column(c, [r.get(name) for r in rows])
                if name == "RID":
                    rid_values = col
                    _bump_for_rids(store, col)
            values.append(col)  # type: ignore[arg-type]
        tuples = list(zip(*values))
        if n > 1:
            _check_input_keys(table, values)
        sql = f"INSERT INTO {qi(table.phys)} ({', '.join(qi(c.name) for c in table.columns)}) VALUES ({', '.join('?' for _ in table.columns)})"
        try:
            if on_conflict_skip:
                tuples = _insert_skipping_conflicts(conn, table, sql + " ON CONFLICT DO NOTHING", tuples)
            else:
                conn.executemany(sql, tuples)
        except sqlite3.IntegrityError as e:
            detail = _fkey_violation_detail(conn, store, table, tuples) if "FOREIGN KEY" in str(e) else None
            raise (Conflict(f"Input data violates model. {detail}") if detail else integrity_conflict(store, e)) from None
    return table, output_rows(table_columns_out(table), tuples)


def _fkey_violation_detail(conn: sqlite3.Connection, store: CatalogStore, table: TableInfo, tuples: list[tuple]) -> str | None:
    """Name the foreign key and value an insert broke (SQLite only says "FOREIGN KEY constraint failed")."""
    idx = {c.name: i for i, c in enumerate(table.columns)}
    for fk in table.fkeys:
        target = store.model.tables.get((fk.ref_schema, fk.ref_table))
        if target is None:
            continue
        where = " AND ".join(f"{qi(rc)} IS ?" for rc in fk.ref_columns)
        probe = f"SELECT 1 FROM {qi(target.phys)} WHERE {where} LIMIT 1"
        seen: set = set()
        for t in tuples:
            key = tuple(t[idx[c]] for c in fk.columns)
            if None in key or key in seen:
                continue
            seen.add(key)
            if conn.execute(probe, key).fetchone() is None:
                cols = ", ".join(fk.columns)
                vals = ", ".join(str(v) for v in key)
                return (
                    f'insert or update on table "{table.name}" violates foreign key constraint on ({cols}). '
                    f'Key ({cols})=({vals}) is not present in table "{fk.ref_table}".'
                )
    return None


def _insert_skipping_conflicts(conn: sqlite3.Connection, table: TableInfo, sql: str, tuples: list[tuple]) -> list[tuple]:
    """``onconflict=skip`` in one executemany; returns the rows actually inserted, in order.

    Input RIDs are unique (checked before), so a row was inserted exactly when its RID
    exists afterwards and did not exist before.
    """
    rid_index = next(i for i, c in enumerate(table.columns) if c.name == "RID")
    rids = [t[rid_index] for t in tuples]
    probe = f'SELECT "RID" FROM {qi(table.phys)} WHERE "RID" IN (SELECT value FROM json_each(?))'
    batch = json.dumps(rids)
    before = {r[0] for r in conn.execute(probe, (batch,))}
    conn.executemany(sql, tuples)
    after = {r[0] for r in conn.execute(probe, (batch,))}
    return [t for t, rid in zip(tuples, rids) if rid in after and rid not in before]


def _coerce_column(c: ColumnInfo, vals: list[Any]) -> list[Any]:
    ctype = c.ctype
    try:
        if ctype.kind == "text" and not ctype.is_array:
            return [v if (v is None or type(v) is str) else coerce(ctype, v) for v in vals]
        if ctype.kind == "int" and not ctype.is_array and ctype.typename not in ("int2", "serial2"):
            return [v if (v is None or (type(v) is int and -(2**31) <= v < 2**31)) else coerce(ctype, v) for v in vals]
        return [coerce(ctype, v) for v in vals]
    except BadRequest as e:
        raise BadRequest(f"Bad input for column {c.name}. {e.detail}") from None


def _bump_for_rids(store: CatalogStore, rids: list[Any]) -> None:
    top = -1
    for r in rids:
        if r is None:
            continue
        try:
            v = rid_decode(r)
        except ValueError:
            raise BadRequest(f"Invalid RID value {r!r}.") from None
        if v > top:
            top = v
    if top >= 0:
        store.bump_seq(top)


def _check_input_keys(table: TableInfo, values: list[list[Any]]) -> None:
    idx = {c.name: i for i, c in enumerate(table.columns)}
    for key in table.keys:
        cols = [values[idx[k]] for k in key]
        seen: set = set()
        if len(cols) == 1:
            for v in cols[0]:
                if v is None:
                    continue
                if v in seen:
                    raise BadRequest("Multiple input rows share the same unique key information.")
                seen.add(v)
        else:
            for t in zip(*cols):
                if None in t:
                    continue
                if t in seen:
                    raise BadRequest("Multiple input rows share the same unique key information.")
                seen.add(t)


def upsert(store: CatalogStore, req: DataRequest, rows: list[dict], client: dict) -> tuple[TableInfo, list[dict]]:
    """``PUT /entity/S:T``: update rows matching on a key, insert the others."""
    if req.filters:
        raise BadRequest("Entity update does not accept filters in the path.")
    table = resolve_table(store.model, req)
    if not rows:
        return table, []
    present = set().union(*(r.keys() for r in rows)) & set(table.colmap)
    if present & NEVER_WRITABLE:
        raise Forbidden("Columns RMT and RMB are always set by the server.")
    key = next((k for k in table.keys if set(k) <= present and k == ("RID",)), None)
    if key is None:
        key = next((k for k in table.keys if set(k) <= present), None)
    if key is None:
        raise Conflict("Entity update input must include the columns of a key.")
    setcols = [c for c in table.columns if c.name in present and c.name not in key and c.name not in SYSTEM_COLUMNS]
    out_tuples = []
    with store.transaction() as conn:
        store.register_client(conn, client)
        now, cid = now_timestamp(), client["id"]
        keycols = [table.colmap[k] for k in key]
        coerced_keys = list(zip(*[_coerce_column(c, [r.get(c.name) for r in rows]) for c in keycols]))
        coerced_set = [_coerce_column(c, [r.get(c.name) for r in rows]) for c in setcols]
        if len(set(coerced_keys)) != len(coerced_keys):
            raise BadRequest("Multiple input rows share the same unique key information.")
        where = " AND ".join(f"{qi(k)} IS ?" for k in key)
        assigns = [f"{qi(c.name)} = ?" for c in setcols] + ['"RMT" = ?', '"RMB" = ?']
        upd = f"UPDATE {qi(table.phys)} SET {', '.join(assigns)} WHERE {where}"
        sel = f"SELECT {', '.join(qi(c.name) for c in table.columns)} FROM {qi(table.phys)} WHERE {where}"
        try:
            for i, r in enumerate(rows):
                kv = list(coerced_keys[i])
                sv = [col[i] for col in coerced_set]
                if conn.execute(upd, sv + [now, cid] + kv).rowcount == 0:
                    _t, inserted = _insert_one(store, conn, table, r, now, cid)
                    out_tuples.append(inserted)
                else:
                    out_tuples.extend(conn.execute(sel, kv).fetchall())
        except sqlite3.IntegrityError as e:
            raise integrity_conflict(store, e) from None
    return table, output_rows(table_columns_out(table), out_tuples)


def _insert_one(store: CatalogStore, conn: sqlite3.Connection, table: TableInfo, row: dict, now: str, cid: str) -> tuple[TableInfo, tuple]:
    vals = []
    rid = row.get("RID")
    if rid is None:
        rid = store.next_rid()
    else:
        _bump_for_rids(store, [rid])
    for c in table.columns:
        if c.name == "RID":
            vals.append(rid)
        elif c.name in ("RCT", "RMT"):
            vals.append(now)
        elif c.name in ("RCB", "RMB"):
            vals.append(cid)
        else:
            vals.append(_coerce_column(c, [row.get(c.name)])[0])
    conn.execute(
        f"INSERT INTO {qi(table.phys)} ({', '.join(qi(c.name) for c in table.columns)}) VALUES ({', '.join('?' for _ in table.columns)})",
        vals,
    )
    return table, tuple(vals)


def update_attributegroup(store: CatalogStore, req: DataRequest, rows: list[dict], client: dict) -> list[dict]:
    """``PUT /attributegroup/S:T/keys;targets``: correlated update; returns only matched rows."""
    if req.filters:
        raise BadRequest("Attributegroup update does not accept filters in the path.")
    table = resolve_table(store.model, req)
    if not req.projection:
        raise BadRequest("Attributegroup update requires target columns after ';'.")
    from .sql import resolve_column

    keys = []
    for p in req.group_keys:
        if p.func or p.star:
            raise BadRequest("Attributegroup update keys must be plain columns.")
        keys.append((p.alias or p.col.name, resolve_column(table, req, p.col)))  # type: ignore[union-attr]
    targets = []
    for p in req.projection:
        if p.func or p.star:
            raise BadRequest("Attributegroup update targets must be plain columns.")
        c = resolve_column(table, req, p.col)  # type: ignore[arg-type]
        if c.name in NEVER_WRITABLE:
            raise Forbidden("Columns RMT and RMB are always set by the server.")
        targets.append((p.alias or c.name, c))
    for r in rows:
        for alias, _c in keys:
            if alias not in r:
                raise BadRequest(f"Input row is missing key column {alias}.")
    kvals = list(zip(*[_coerce_column(c, [r.get(a) for r in rows]) for a, c in keys])) if rows else []
    tvals = list(zip(*[_coerce_column(c, [r.get(a) for r in rows]) for a, c in targets])) if rows else []
    if len(set(kvals)) != len(kvals):
        raise BadRequest("Multiple input rows share the same key information.")
    where = " AND ".join(f"{qi(c.name)} IS ?" for _a, c in keys)
    assigns = [f"{qi(c.name)} = ?" for _a, c in targets] + ['"RMT" = ?', '"RMB" = ?']
    sql = f"UPDATE {qi(table.phys)} SET {', '.join(assigns)} WHERE {where} RETURNING {', '.join(qi(c.name) for _a, c in targets)}"
    # keys echo the input (matched) values; targets show the new stored values
    out_cols = [(a, c.out) for a, c in keys + targets]
    results = []
    with store.transaction() as conn:
        store.register_client(conn, client)
        now, cid = now_timestamp(), client["id"]
        try:
            for kv, tv in zip(kvals, tvals):
                for new in conn.execute(sql, list(tv) + [now, cid] + list(kv)).fetchall():
                    results.append(tuple(kv) + tuple(new))
        except sqlite3.IntegrityError as e:
            raise integrity_conflict(store, e) from None
    return output_rows(out_cols, results)


def delete_entities(store: CatalogStore, req: DataRequest) -> int:
    """``DELETE /entity/PATH``: 404 when nothing matches (protocol §3.9)."""
    table = resolve_table(store.model, req)
    where, params = where_clause(table, req)
    sql = f"DELETE FROM {qi(table.phys)}" + (f" WHERE {where}" if where else "")
    with store.transaction() as conn:
        try:
            n = conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as e:
            raise integrity_conflict(store, e) from None
        if n == 0:
            raise NotFound("entities matching request path")
    return n


def clear_attributes(store: CatalogStore, req: DataRequest, client: dict) -> int:
    """``DELETE /attribute/PATH/c1,c2``: set those columns to NULL on matching rows."""
    table = resolve_table(store.model, req)
    from .sql import resolve_column

    cols = []
    for p in req.projection:
        if p.func or p.star:
            raise BadRequest("Attribute delete takes plain columns.")
        c = resolve_column(table, req, p.col)  # type: ignore[arg-type]
        if c.name in SYSTEM_COLUMNS:
            raise Conflict(f"System column {c.name} cannot be cleared.")
        cols.append(c)
    where, params = where_clause(table, req)
    assigns = [f"{qi(c.name)} = NULL" for c in cols] + ['"RMT" = ?', '"RMB" = ?']
    sql = f"UPDATE {qi(table.phys)} SET {', '.join(assigns)}" + (f" WHERE {where}" if where else "")
    with store.transaction() as conn:
        store.register_client(conn, client)
        try:
            return conn.execute(sql, [now_timestamp(), client["id"]] + params).rowcount
        except sqlite3.IntegrityError as e:
            raise integrity_conflict(store, e) from None
