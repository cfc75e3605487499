"""Up-front checks of a staged execution: asset metadata locally, terms and RIDs in the catalog.

Every problem is collected (not raised) so one validation error can list them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deriva.core.ermrest_model import Table

from deriva_upload.engine.ermrest import ErmrestClient
from deriva_upload.execution.layout import rel
from deriva_upload.execution.plan import ExecutionPlan
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.schema import OUTPUT_ROLE, tkey
from deriva_upload.model import DerivaModel, asset_metadata_columns

# Uses of one unknown term or missing RID quoted as problems (the rest are alike).
MAX_USES_REPORTED = 3


def check_metadata(table: Table, metadata: Mapping[str, Any], where: str, problems: list[Problem]) -> None:
    """Unknown metadata columns, and NOT NULL metadata columns without a value."""
    cols = {c.name: c for c in table.column_definitions}
    for name in metadata:
        if name not in cols:
            problems.append(Problem(where, None, f"{tkey(table)} has no metadata column {name!r}"))
    for name in asset_metadata_columns(table):
        if not cols[name].nullok and metadata.get(name) is None:
            problems.append(Problem(where, None, f"metadata column {name!r} of {tkey(table)} is NOT NULL "
                                                 "but has no value"))


async def check_catalog(client: ErmrestClient, model: DerivaModel, plan: ExecutionPlan) -> None:
    """Read-only checks: the execution exists, every term and referenced RID exists."""
    ml = model.ml_schema
    rows = await client.lookup(ml, "Execution", "RID", [plan.exec_rid], columns=["RID"])
    if not rows:
        plan.problems.append(Problem(rel(plan.root, plan.root.parents[2]), None,
                                     f"execution {plan.exec_rid} does not exist in {ml}:Execution"))
    if plan.assets:
        plan.terms[(ml, "Asset_Role", "Name")][OUTPUT_ROLE].append((plan.exec_rid, None, "asset role"))
    for (schema, vocab, col), wanted in sorted(plan.terms.items()):
        found = await client.lookup(schema, vocab, col, sorted(wanted), columns=[col])
        known = {str(r[col]) for r in found}
        for term, uses in sorted(wanted.items()):
            if term in known:
                continue
            for file, line, context in uses[:MAX_USES_REPORTED]:
                plan.problems.append(Problem(file, line, f"unknown term {term!r} ({context}) in vocabulary "
                                                         f"{schema}:{vocab}; add it to the vocabulary first"))
    for table_key, rids in sorted(plan.asset_rids.items()):
        schema, table = table_key.split(":", 1)
        found = {r["RID"] for r in await client.lookup(schema, table, "RID", sorted(rids), columns=["RID"])}
        for rid, rid_uses in sorted(rids.items()):
            if rid not in found:
                for file, line in rid_uses[:MAX_USES_REPORTED]:
                    plan.problems.append(Problem(file, line, f"asset RID {rid!r} does not exist in {table_key}"))
