"""Find an execution's staged asset files, in either layout, with their metadata and types.

* regex layout: ``asset/<schema>/<Table>/<meta_1>/.../<meta_n>/[<RID>/]<file>``;
* manifest-first layout: ``assets/<Table>/<file>`` plus ``asset-manifest.json`` holding
  each file's metadata, types and RID (read directly: no symlink staging tree).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deriva.core.ermrest_model import Table

from deriva_upload.engine.items import Item
from deriva_upload.errors import DerivaUploadError
from deriva_upload.execution.layout import MANIFEST_NAME, RID_RE, rel
from deriva_upload.execution.plan import AssetTypes, ExecutionPlan, StagedAsset
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.schema import find_table, tkey
from deriva_upload.execution.validate import check_metadata
from deriva_upload.layout import NULL_SENTINEL
from deriva_upload.model import DerivaModel, asset_metadata_columns, is_asset_table


def scan_regex_assets(model: DerivaModel, plan: ExecutionPlan, prefix: Path, jsonl_types: AssetTypes) -> None:
    """Assets under ``asset/``: table and metadata from the directory names."""
    base = plan.root / "asset"
    if not base.is_dir():
        return
    for path in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
        prel = rel(path, prefix)
        parts = path.relative_to(base).parts
        if any(part.startswith(".") for part in parts):
            plan.unmatched.append(Problem(prel, None, "hidden file; not uploaded"))
            continue
        if len(parts) < 3:
            plan.unmatched.append(Problem(prel, None, "not under asset/<schema>/<Table>/"))
            continue
        schema, tname = parts[0], parts[1]
        table = find_table(model, schema, tname)
        if table is None or not is_asset_table(table):
            plan.problems.append(Problem(prel, None, f"{schema}:{tname} is not an asset table of the catalog"))
            continue
        columns = asset_metadata_columns(table)
        segs = list(parts[2:-1])
        rid = None
        if len(segs) == len(columns) + 1:
            rid = segs.pop()
            if not RID_RE.match(rid):
                plan.problems.append(Problem(prel, None, f"RID directory {rid!r} is not a valid RID"))
                continue
        elif len(segs) != len(columns):
            plan.unmatched.append(Problem(
                prel, None, f"expected {len(columns)} metadata director{'y' if len(columns) == 1 else 'ies'} "
                            f"({', '.join(columns) or 'none'}) [+ RID] before the file, found {len(segs)}"))
            continue
        if not path.exists():
            plan.problems.append(Problem(prel, None, "file is a broken symbolic link"))
            continue
        metadata = {c: (None if v == NULL_SENTINEL else v) for c, v in zip(columns, segs)}
        item = Item.for_file(path, plan.root, schema, tname, metadata=metadata, rid=rid,
                             execution_rid=plan.exec_rid)
        types = tuple(jsonl_types.get((schema, tname), {}).get(path.name, ()))
        check_metadata(table, metadata, prel, plan.problems)
        plan.assets.append(StagedAsset(item, table, types, rel(path, plan.root)))


def scan_manifest_assets(model: DerivaModel, plan: ExecutionPlan, prefix: Path, jsonl_types: AssetTypes) -> None:
    """Assets listed in ``asset-manifest.json`` (files under ``assets/``); unlisted files are reported."""
    mpath = plan.root / MANIFEST_NAME
    flat = plan.root / "assets"
    declared: set[Path] = set()
    if mpath.is_file():
        mrel = rel(mpath, prefix)
        try:
            doc = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            plan.problems.append(Problem(mrel, None, f"cannot read the manifest: {e}"))
            return
        entries = doc.get("assets", {}) if isinstance(doc, dict) else None
        if not isinstance(entries, dict):
            plan.problems.append(Problem(mrel, None, 'expected {"assets": {"<Table>/<file>": {...}}}'))
            return
        for key, entry in entries.items():
            asset = _manifest_asset(model, plan, prefix, jsonl_types, f"{mrel} [{key}]", key, entry, declared)
            if asset is not None:
                plan.assets.append(asset)
    if flat.is_dir():
        for path in sorted(p for p in flat.rglob("*") if p.is_file()):
            if path not in declared and not path.name.startswith("."):
                plan.unmatched.append(Problem(rel(path, prefix), None,
                                              f"not listed in {MANIFEST_NAME}; not uploaded"))


def _manifest_table(model: DerivaModel, schema: str | None, tname: str) -> Table | None:
    """The table a manifest entry names: in its schema if given, else by name anywhere."""
    table = find_table(model, schema, tname) if schema else None
    if table is None:
        try:
            table = model.name_to_table(tname)
        except DerivaUploadError:
            table = None
    return table


def _manifest_asset(model: DerivaModel, plan: ExecutionPlan, prefix: Path, jsonl_types: AssetTypes,
                    where: str, key: str, entry: Any, declared: set[Path]) -> StagedAsset | None:
    """One manifest entry checked into a staged asset (None, with problems, when it is bad)."""
    if not isinstance(entry, dict) or "/" not in key:
        plan.problems.append(Problem(where, None, "entry must be keyed '<Table>/<file>' and be an object"))
        return None
    tname, fname = key.split("/", 1)
    tname = entry.get("asset_table") or tname
    schema = entry.get("schema")
    table = _manifest_table(model, schema, tname)
    if table is None or not is_asset_table(table):
        plan.problems.append(Problem(where, None, f"{schema or '?'}:{tname} is not an asset table of the catalog"))
        return None
    path = plan.root / "assets" / tname / fname
    declared.add(path)
    if not path.is_file():
        plan.problems.append(Problem(where, None, f"staged file {rel(path, prefix)} is missing"))
        return None
    metadata = dict(entry.get("metadata") or {})
    metadata = {k: (None if v is None or v == NULL_SENTINEL else str(v)) for k, v in metadata.items()}
    known = set(asset_metadata_columns(table)) | {"Description"}
    for k in list(metadata):
        if k not in known:
            plan.problems.append(Problem(where, None, f"{tkey(table)} has no metadata column {k!r}"))
    check_metadata(table, {k: v for k, v in metadata.items() if k != "Description" and k in known},
                   where, plan.problems)
    if entry.get("description") is not None and metadata.get("Description") is None:
        metadata["Description"] = str(entry["description"])
    for c in asset_metadata_columns(table):
        metadata.setdefault(c, None)
    rid = entry.get("rid")
    if rid is not None and not RID_RE.match(str(rid)):
        plan.problems.append(Problem(where, None, f"rid {rid!r} is not a valid RID"))
        return None
    types = entry.get("asset_types")
    if types is None:
        types = jsonl_types.get((table.schema.name, table.name), {}).get(fname, ())
    elif isinstance(types, str):
        types = [types]
    item = Item.for_file(path, plan.root, table.schema.name, table.name, metadata=metadata,
                         rid=str(rid) if rid else None, execution_rid=plan.exec_rid)
    return StagedAsset(item, table, tuple(types), key)
