"""The catalog writes of an execution, in dependency order.

Asset files and rows (the engine pipeline), then ``<Asset>_Asset_Type`` and
``<Asset>_Execution`` rows, then feature rows with local paths replaced by asset RIDs.
A row that depends on an asset whose upload failed is not written; it is reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from deriva.core.ermrest_model import Table

from deriva_upload.engine.destination import Destination
from deriva_upload.engine.transport import Transport
from deriva_upload.execution.plan import ExecutionPlan, RowSource
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.report import ExecutionReport, add_counts
from deriva_upload.execution.schema import OUTPUT_ROLE, tkey
from deriva_upload.execution.write import Writer
from deriva_upload.model import DerivaModel

NO_RESULT = "the engine reported no result"


async def upload_assets(plan: ExecutionPlan, model: DerivaModel, dest: Destination, options: Any,
                        on_event: Callable[[Any], None] | None, report: ExecutionReport,
                        transport: Transport) -> tuple[dict[str, str], dict[str, str]]:
    """Run the engine pipeline on the staged asset items; {rel: RID} and {rel: error}."""
    from deriva_upload.engine import pipeline
    from deriva_upload.spec import bulk_upload_configuration

    if not plan.assets:
        return {}, {}
    spec = bulk_upload_configuration(model, chunk_size=options.chunk_size)
    items = [a.item for a in plan.assets]
    result = await pipeline.upload_tree(plan.root, spec, dest, options, items=items, on_event=on_event,
                                        transport=transport)
    by_path = {os.path.abspath(a.item.path): a for a in plan.assets}
    uploaded: dict[str, str] = {}
    failed: dict[str, str] = {}
    for path, fr in result.files.items():
        a = by_path.get(os.path.abspath(path)) or by_path.get(os.path.abspath(plan.root / path))
        if a is None:
            continue
        if fr.rid and not fr.error and getattr(fr.state, "name", str(fr.state)) == "success":
            uploaded[a.item.rel] = fr.rid
            report.assets[a.item.rel] = fr.rid
        else:
            failed[a.item.rel] = fr.error or fr.status or "failed"
            report.failures.append(Problem(a.origin, None, f"asset upload failed: {failed[a.item.rel]}"))
    for table_key, counts in result.tables.items():
        add_counts(report.tally(table_key), counts)
    for a in plan.assets:
        if a.item.rel not in uploaded and a.item.rel not in failed:
            failed[a.item.rel] = NO_RESULT
            report.failures.append(Problem(a.origin, None, f"asset upload failed: {NO_RESULT}"))
    report.warnings.extend(result.warnings)
    return uploaded, failed


async def link_assets(writer: Writer, plan: ExecutionPlan, uploaded: Mapping[str, str]) -> None:
    """``<Asset>_Asset_Type`` then ``<Asset>_Execution`` rows for every uploaded asset."""
    types_rows: dict[str, tuple[Table, list[RowSource]]] = {}
    exec_rows: dict[str, tuple[Table, list[RowSource]]] = {}
    for a in plan.assets:
        rid = uploaded.get(a.item.rel)
        if rid is None:
            continue
        types_link, link = plan.links[tkey(a.table)]  # both checked by scan_execution
        if a.types and types_link is not None:
            bucket = types_rows.setdefault(tkey(types_link.table), (types_link.table, []))[1]
            for t in dict.fromkeys(a.types):
                bucket.append(RowSource(a.origin, None, {types_link.asset_col: rid, types_link.other_col: t}))
        if link is None:
            continue
        values = {link.asset_col: rid, link.other_col: plan.exec_rid}
        if link.role_col:
            values[link.role_col] = OUTPUT_ROLE
        exec_rows.setdefault(tkey(link.table), (link.table, []))[1].append(RowSource(a.origin, None, values))
    for table, rows in [*types_rows.values(), *exec_rows.values()]:
        await writer.insert(table, rows)


async def write_features(writer: Writer, plan: ExecutionPlan, uploaded: Mapping[str, str],
                         failed_assets: Mapping[str, str]) -> None:
    """Feature rows with asset paths replaced by RIDs; rows naming a failed asset are reported."""
    for group in plan.features:
        ready: list[RowSource] = []
        tally = writer.report.tally(tkey(group.table))
        for row in group.rows:
            values = dict(row.values)
            missing = []
            for col, ref in row.asset_refs.items():
                rid = uploaded.get(ref)
                if rid is None:
                    missing.append(f"column {col!r}: asset {ref} was not uploaded ({failed_assets.get(ref, 'failed')})")
                else:
                    values[col] = rid
            if missing:
                tally.failed += 1
                writer.report.failures.append(Problem(row.file, row.line, "; ".join(missing) + "; row not inserted"))
                continue
            ready.append(RowSource(row.file, row.line, values))
        await writer.insert(group.table, ready)


async def write_tables(writer: Writer, plan: ExecutionPlan) -> None:
    """Table rows, referenced tables first (the scan ordered them)."""
    for group in plan.tables:
        await writer.insert(group.table, group.rows)
