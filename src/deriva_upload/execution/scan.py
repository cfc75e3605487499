"""Read one staged execution into an :class:`ExecutionPlan` (local checks only; no catalog access)."""

from __future__ import annotations

from pathlib import Path

from deriva_upload.errors import ConfigError
from deriva_upload.execution.layout import IGNORED_DIRS, LAYOUT_ENTRIES, execution_root, rel
from deriva_upload.execution.plan import ExecutionPlan
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.records import read_asset_types
from deriva_upload.execution.scan_assets import scan_manifest_assets, scan_regex_assets
from deriva_upload.execution.scan_features import scan_features
from deriva_upload.execution.scan_tables import scan_tables
from deriva_upload.execution.schema import find_link, tkey
from deriva_upload.model import DerivaModel


def scan_execution(model: DerivaModel, prefix: Path | str, exec_rid: str) -> ExecutionPlan:
    """Read one staged execution into a plan (local checks only; no catalog access)."""
    prefix = Path(prefix)
    root = execution_root(prefix, exec_rid)
    if not root.is_dir():
        raise ConfigError(f"no staged execution {exec_rid!r} under {prefix / 'deriva-ml' / 'execution'}")
    plan = ExecutionPlan(exec_rid, root)
    jsonl_types = read_asset_types(root, prefix, plan.problems)
    scan_regex_assets(model, plan, prefix, jsonl_types)
    scan_manifest_assets(model, plan, prefix, jsonl_types)
    for entry in sorted(root.iterdir()):
        if entry.name not in LAYOUT_ENTRIES and entry.name not in IGNORED_DIRS and not entry.name.startswith("."):
            plan.unmatched.append(Problem(rel(entry, prefix), None, "not part of the execution layout"))
    _link_assets_and_types(model, plan)
    scan_features(model, plan, prefix)
    scan_tables(model, plan, prefix)
    return plan


def _link_assets_and_types(model: DerivaModel, plan: ExecutionPlan) -> None:
    """Note each asset's type terms and find its asset-type and execution associations."""
    for a in plan.assets:
        for t in a.types:
            plan.terms[(model.ml_schema, "Asset_Type", "Name")][t].append((a.origin, None, "asset type"))
        key = tkey(a.table)
        if key not in plan.links:
            plan.links[key] = (find_link(model, a.table, "Asset_Type"), find_link(model, a.table, "Execution"))
        types_link, exec_link = plan.links[key]
        if exec_link is None:
            plan.problems.append(Problem(a.origin, None, f"no {a.table.name}_Execution association in the "
                                                         "catalog to link the asset to its execution"))
        if a.types and types_link is None:
            plan.problems.append(Problem(a.origin, None, f"no {a.table.name}_Asset_Type association in the "
                                                         "catalog to record the asset types"))
