"""Feature value files -> rows of ``Execution_<Target>_<Feature>``, local asset paths resolved.

``feature/<schema>/<Target>/<Feature>/<Feature>.{csv,json,jsonl}``; asset columns hold
local file paths of staged assets (replaced by their RIDs once uploaded) or RIDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deriva_upload.execution.asset_index import AssetIndex
from deriva_upload.execution.layout import FEATURE_EXTENSIONS, RID_RE, rel
from deriva_upload.execution.plan import ExecutionPlan, RowGroup, RowSource
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.records import read_records
from deriva_upload.execution.schema import SYSTEM_COLUMNS, FeatureTable, feature_table, tkey
from deriva_upload.model import DerivaModel


def scan_features(model: DerivaModel, plan: ExecutionPlan, prefix: Path) -> None:
    """Add one row group per feature directory to ``plan.features`` (after the assets are scanned)."""
    base = plan.root / "feature"
    if not base.is_dir():
        return
    index = AssetIndex(plan.assets, prefix, plan.root)
    for fdir in sorted(p for p in base.glob("*/*/*") if p.is_dir()):
        schema, target, fname = fdir.relative_to(base).parts
        files = [fdir / f"{fname}{ext}" for ext in FEATURE_EXTENSIONS if (fdir / f"{fname}{ext}").is_file()]
        for other in sorted(fdir.iterdir()):
            if other.is_file() and other not in files:
                plan.unmatched.append(Problem(rel(other, prefix), None,
                                              f"not a feature value file ({fname}.csv/.json/.jsonl)"))
        if not files:
            continue
        ft = feature_table(model, schema, target, fname)
        if ft is None:
            for f in files:
                plan.problems.append(Problem(rel(f, prefix), None,
                                             f"no feature table Execution_{target}_{fname} in the catalog"))
            continue
        group = RowGroup(ft.table)
        columns = {c.name for c in ft.table.column_definitions}
        for f in files:
            frel = rel(f, prefix)
            for line, rec in read_records(f, frel, plan.problems):
                row = feature_row(ft, fname, rec, frel, line, columns, index, plan)
                if row is not None:
                    group.rows.append(row)
        plan.features.append(group)


def feature_row(ft: FeatureTable, fname: str, rec: Mapping[str, Any], rel: str, line: int,
                columns: set[str], index: AssetIndex, plan: ExecutionPlan) -> RowSource | None:
    """One feature record checked into a row (None, with problems on ``plan``, when it is bad).

    Terms and RIDs it names are noted on ``plan`` for the catalog check.
    """
    values: dict[str, Any] = {}
    ok = True
    for k, v in rec.items():
        if k in SYSTEM_COLUMNS:
            continue  # FeatureRecord carries RCT/RID=None; the server assigns them
        if k not in columns:
            plan.problems.append(Problem(rel, line, f"{tkey(ft.table)} has no column {k!r}"))
            ok = False
            continue
        if v is not None:
            values[k] = v
    given = values.get(ft.execution_col)
    if given is not None and str(given) != plan.exec_rid:
        plan.problems.append(Problem(rel, line, f"row belongs to execution {given!r}, not {plan.exec_rid}"))
        ok = False
    values[ft.execution_col] = plan.exec_rid
    given_name = values.get(ft.feature_name_col)
    if given_name is not None and str(given_name) != fname:
        plan.problems.append(Problem(rel, line, f"Feature_Name {given_name!r} differs from the directory {fname!r}"))
        ok = False
    values[ft.feature_name_col] = fname
    if values.get(ft.target_col) is None:
        plan.problems.append(Problem(rel, line, f"missing the target column {ft.target_col!r}"))
        ok = False
    refs: dict[str, str] = {}
    for col, asset_table in ft.path_cols.items():
        v = values.get(col)
        if v is None:
            continue
        text = str(v)
        if RID_RE.match(text) and "/" not in text and "." not in text:
            plan.asset_rids[tkey(asset_table)][text].append((rel, line))
            continue
        hit, why = index.find(text)
        if hit is None:
            plan.problems.append(Problem(rel, line, f"column {col!r}: {why}; row not inserted"))
            ok = False
            continue
        if tkey(hit.table) != tkey(asset_table):
            plan.problems.append(Problem(rel, line, f"column {col!r}: {text!r} is a {tkey(hit.table)} asset, "
                                                    f"not {tkey(asset_table)}"))
            ok = False
            continue
        refs[col] = hit.item.rel
    for col, (vocab, ref_col) in ft.term_cols.items():
        v = values.get(col)
        if v is not None:
            plan.terms[(vocab.schema.name, vocab.name, ref_col)][str(v)].append((rel, line, f"column {col!r}"))
    return RowSource(rel, line, values, refs) if ok else None
