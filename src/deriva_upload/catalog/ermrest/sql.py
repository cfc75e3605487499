"""Translate parsed ERMrest data requests into SQLite SELECT statements.

Pure: takes the model digest and a :class:`DataRequest`, returns SQL text, parameters and
a description of the output columns.  Unknown names in data paths are 409 (protocol §3.6).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from .errors import BadRequest, Conflict
from .model import ColumnInfo, ModelState, TableInfo, qi
from .types import ColumnType, filter_literal
from .urlparse import And, ColumnRef, DataRequest, Expr, Not, Or, Pred, Projection

_CMP = {"=": "=", "lt": "<", "leq": "<=", "gt": ">", "geq": ">="}


@dataclass
class OutColumn:
    name: str
    expr: str
    ctype: ColumnType | None  # None: value is already JSON-ready
    out: Callable[[Any], Any] | None
    is_agg: bool = False


@dataclass
class Query:
    sql: str
    params: list[Any]
    columns: list[OutColumn]


def resolve_table(model: ModelState, req: DataRequest) -> TableInfo:
    return model.table(req.table.schema, req.table.table, for_data=True)


def resolve_column(table: TableInfo, req: DataRequest, ref: ColumnRef) -> ColumnInfo:
    parts = ref.parts
    if len(parts) == 2:
        if parts[0] not in (req.table.alias, table.name):
            raise Conflict(f"Unknown table alias or name {parts[0]} in column reference.")
    elif len(parts) == 3:
        if (parts[0], parts[1]) != (table.schema, table.name):
            raise Conflict(f"Column reference {':'.join(parts)} does not name the table in this path.")
    return table.column(parts[-1], for_data=True)


def where_clause(table: TableInfo, req: DataRequest) -> tuple[str, list[Any]]:
    """SQL for the conjunction of every filter segment (empty string when none)."""
    params: list[Any] = []
    parts = [_expr(table, req, f, params) for f in req.filters]
    return (" AND ".join(f"({p})" for p in parts), params)


def _expr(table: TableInfo, req: DataRequest, e: Expr, params: list[Any]) -> str:
    if isinstance(e, Pred):
        return _pred(table, req, e, params)
    if isinstance(e, Not):
        return f"NOT ({_expr(table, req, e.expr, params)})"
    if isinstance(e, And):
        return " AND ".join(f"({_expr(table, req, x, params)})" for x in e.items)
    if isinstance(e, Or):
        return " OR ".join(f"({_expr(table, req, x, params)})" for x in e.items)
    raise BadRequest("Unsupported filter.")  # pragma: no cover


def _pred(table: TableInfo, req: DataRequest, p: Pred, params: list[Any]) -> str:
    if p.col.parts == ("*",):
        if p.op != "ts":
            raise BadRequest("Only ::ts:: may search every column (*).")
        cols = [c for c in table.columns if c.ctype.kind == "text"]
        if not cols:
            return "0"
        out = []
        for c in cols:
            params.append(p.values[0])
            out.append(f"textsearch(?, {qi(c.name)})")
        return " OR ".join(out)
    col = resolve_column(table, req, p.col)
    ref = qi(col.name)
    if p.op == "null":
        return f"{ref} IS NULL"
    if col.ctype.is_array:
        ref = "value"
    if p.op in ("regexp", "ciregexp", "ts"):
        fn = {"regexp": "regexp", "ciregexp": "ciregexp", "ts": "textsearch"}[p.op]
        values = list(p.values)
        terms = []
        for v in values:
            params.append(v)
            terms.append(f"{fn}(?, {ref})")
    else:
        values = [_literal(col, v) for v in p.values]
        op = _CMP[p.op]
        if p.quant == "any" and op == "=":
            params.append(json.dumps(values))
            terms = [f"{ref} IN (SELECT value FROM json_each(?))"]
        else:
            terms = []
            for v in values:
                params.append(v)
                terms.append(f"{ref} {op} ?")
    joiner = " AND " if p.quant == "all" else " OR "
    sql = joiner.join(terms) if len(terms) > 1 else terms[0]
    if col.ctype.is_array:
        return f"EXISTS (SELECT 1 FROM json_each({qi(col.name)}) WHERE {sql})"
    return sql


def _literal(col: ColumnInfo, text: str) -> Any:
    try:
        return filter_literal(col.ctype, text)
    except BadRequest:
        raise BadRequest(f'Invalid {col.ctype.typename}: "{text[:80]}"') from None


def _projection_columns(table: TableInfo, req: DataRequest, items: list[Projection], allow_agg: bool) -> list[OutColumn]:
    out: list[OutColumn] = []
    for p in items:
        if p.star and p.func is None:
            for c in table.columns:
                out.append(OutColumn(c.name, qi(c.name), c.ctype, c.out))
            continue
        if p.func is None:
            c = resolve_column(table, req, p.col)  # type: ignore[arg-type]
            out.append(OutColumn(p.alias or c.name, qi(c.name), c.ctype, c.out))
            continue
        if not allow_agg:
            raise BadRequest("Aggregate functions are not allowed here.")
        name = p.alias
        if p.col is None:  # cnt(*) / array(*)
            if not name:
                raise BadRequest("Aggregate projections need an alias (name:=fn(...)).")
            if p.func == "cnt":
                out.append(OutColumn(name, "count(*)", None, None, True))
            else:
                obj = ", ".join(f"{_sqlstr(c.name)}, {_json_value(c)}" for c in table.columns)
                out.append(OutColumn(name, f"json_group_array(json_object({obj}))", None, json.loads, True))
            continue
        c = resolve_column(table, req, p.col)
        name = name or c.name
        ref = qi(c.name)
        f = p.func
        if f == "cnt":
            out.append(OutColumn(name, f"count({ref})", None, None, True))
        elif f == "cnt_d":
            out.append(OutColumn(name, f"count(DISTINCT {ref})", None, None, True))
        elif f in ("min", "max"):
            out.append(OutColumn(name, f"{f}({ref})", c.ctype, c.out, True))
        elif f == "sum":
            out.append(OutColumn(name, f"sum({ref})", None, None, True))
        elif f == "avg":
            out.append(OutColumn(name, f"avg({ref})", None, None, True))
        elif f in ("array", "array_d"):
            distinct = "DISTINCT " if f == "array_d" else ""
            out.append(OutColumn(name, f"json_group_array({distinct}{_json_value(c)})", None, json.loads, True))
        else:  # pragma: no cover - the parser restricts names
            raise BadRequest(f"Unsupported aggregate {f}.")
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise BadRequest("Output column names must be unique; use name:=col aliases.")
    return out


def _sqlstr(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _json_value(c: ColumnInfo) -> str:
    """SQL expression giving the column's JSON output value (for json_group_array)."""
    ref = qi(c.name)
    if c.ctype.is_array or c.ctype.kind == "json":
        return f"json({ref})"
    if c.ctype.kind == "bool":
        return f"CASE WHEN {ref} IS NULL THEN NULL WHEN {ref} THEN json('true') ELSE json('false') END"
    return ref


def build_select(model: ModelState, req: DataRequest, limit: int | None) -> Query:
    table = resolve_table(model, req)
    where, params = where_clause(table, req)
    group_by = ""
    if req.api == "entity":
        cols = [OutColumn(c.name, qi(c.name), c.ctype, c.out) for c in table.columns]
    elif req.api == "attribute":
        cols = _projection_columns(table, req, req.projection, allow_agg=False)
    elif req.api == "aggregate":
        cols = _projection_columns(table, req, req.projection, allow_agg=True)
    else:  # attributegroup
        keys = _projection_columns(table, req, req.group_keys, allow_agg=False)
        cols = keys + _projection_columns(table, req, req.projection, allow_agg=True)
        names = [o.name for o in cols]
        if len(set(names)) != len(names):
            raise BadRequest("Output column names must be unique; use name:=col aliases.")
        group_by = " GROUP BY " + ", ".join(k.expr for k in keys)
    by_name = {o.name: o for o in cols}
    having_parts: list[str] = []
    having_params: list[Any] = []
    order = ""
    if req.sort:
        terms = []
        for k in req.sort:
            o = by_name.get(k.name)
            if o is None:
                raise Conflict(f"Sort key {k.name} is not an output column.")
            terms.append(f"{o.expr} {'DESC NULLS FIRST' if k.desc else 'ASC NULLS LAST'}")
        order = " ORDER BY " + ", ".join(terms)
        for page, after in ((req.after, True), (req.before, False)):
            if page is None:
                continue
            sql, pp = _paging(req, by_name, page, after)
            if any(by_name[k.name].is_agg for k in req.sort):
                having_parts.append(sql)
                having_params.extend(pp)
            else:
                where = f"{where} AND ({sql})" if where else f"({sql})"
                params.extend(pp)
    if req.api == "aggregate":
        if req.sort:
            order = ""
        limit = None
    sql = f"SELECT {', '.join(o.expr for o in cols)} FROM {qi(table.phys)}"
    if where:
        sql += f" WHERE {where}"
    sql += group_by
    if having_parts:
        if not group_by:
            raise BadRequest("Paging on aggregates requires the attributegroup API.")
        sql += " HAVING " + " AND ".join(f"({h})" for h in having_parts)
        params.extend(having_params)
    sql += order
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return Query(sql, params, cols)


def _paging(req: DataRequest, by_name: dict[str, OutColumn], values: list[str | None], after: bool) -> tuple[str, list[Any]]:
    """Rows strictly after (or before) the given sort-key tuple, with ERMrest NULL ordering."""
    disj: list[str] = []
    params: list[Any] = []
    eq_prefix: list[str] = []
    eq_params: list[Any] = []
    for k, raw in zip(req.sort, values):
        o = by_name[k.name]
        v = None if raw is None else (_literal_for(o, raw))
        # ascending puts NULLs last; descending puts them first
        forward = after != k.desc  # True: "greater" direction in value order
        nulls_last_in_direction = after if not k.desc else not after
        if v is None:
            strict = "0" if nulls_last_in_direction else f"{o.expr} IS NOT NULL"
            sparams: list[Any] = []
        else:
            op = ">" if forward else "<"
            if nulls_last_in_direction:
                strict = f"({o.expr} {op} ? OR {o.expr} IS NULL)"
            else:
                strict = f"{o.expr} {op} ?"
            sparams = [v]
        disj.append(" AND ".join(eq_prefix + [strict]))
        params.extend(eq_params + sparams)
        eq_prefix.append(f"{o.expr} IS ?")
        eq_params.append(v)
    return " OR ".join(f"({d})" for d in disj), params


def _literal_for(o: OutColumn, raw: str) -> Any:
    if o.ctype is None:
        try:
            return int(raw)
        except ValueError:
            try:
                return float(raw)
            except ValueError:
                return raw
    try:
        return filter_literal(o.ctype, raw)
    except BadRequest:
        raise BadRequest(f'Invalid {o.ctype.typename}: "{raw[:80]}"') from None
