"""Table files -> row groups, referenced tables first.

``table/<schema>/<T>/<T>.{csv,json}`` under the execution, and at the seed's
``deriva-ml/table/...`` (quirk 4).
"""

from __future__ import annotations

from pathlib import Path

from deriva_upload.execution.layout import TABLE_EXTENSIONS, rel
from deriva_upload.execution.plan import ExecutionPlan, RowGroup, RowSource
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.records import read_records
from deriva_upload.execution.schema import SYSTEM_COLUMNS, find_table, fk_pairs, tkey
from deriva_upload.model import DerivaModel


def scan_tables(model: DerivaModel, plan: ExecutionPlan, prefix: Path) -> None:
    """Set ``plan.tables`` to the staged table rows, in foreign-key order."""
    bases = [plan.root / "table", prefix / "deriva-ml" / "table"]
    for base in bases:
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            prel = rel(path, prefix)
            parts = path.relative_to(base).parts
            if len(parts) != 3 or path.suffix not in TABLE_EXTENSIONS or path.stem != parts[1]:
                plan.unmatched.append(Problem(prel, None, "expected table/<schema>/<T>/<T>.csv or .json"))
                continue
            schema, tname = parts[0], parts[1]
            table = find_table(model, schema, tname)
            if table is None:
                plan.problems.append(Problem(prel, None, f"no table {schema}:{tname} in the catalog"))
                continue
            columns = {c.name for c in table.column_definitions}
            group = RowGroup(table)
            for line, rec in read_records(path, prel, plan.problems):
                unknown = sorted(k for k in rec if k not in columns)
                if unknown:
                    plan.problems.append(Problem(prel, line, f"{tkey(table)} has no column(s) {unknown}"))
                    continue
                values = {k: v for k, v in rec.items() if v is not None and (k == "RID" or k not in SYSTEM_COLUMNS)}
                group.rows.append(RowSource(prel, line, values))
            plan.tables.append(group)
    plan.tables = fk_order(plan.tables)


def fk_order(groups: list[RowGroup]) -> list[RowGroup]:
    """Tables referenced by other staged tables first (stable otherwise)."""
    keys = {tkey(g.table): g for g in groups}
    done: list[RowGroup] = []
    seen: set[str] = set()

    def visit(key: str, stack: set[str]) -> None:
        if key in seen or key in stack:
            return
        stack.add(key)
        for _, ref, _ in fk_pairs(keys[key].table):
            rk = tkey(ref)
            if rk in keys and rk != key:
                visit(rk, stack)
        seen.add(key)
        done.append(keys[key])

    for g in groups:
        visit(tkey(g.table), set())
    # the same table staged in both places keeps both groups
    extra = [g for g in groups if all(g is not d for d in done)]
    return done + extra
