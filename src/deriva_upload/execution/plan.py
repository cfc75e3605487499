"""What a scan found under one execution: plain values, ready to check and write."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deriva.core.ermrest_model import Table

from deriva_upload.engine.items import Item
from deriva_upload.execution.problems import Problem
from deriva_upload.execution.schema import LinkTable

AssetTypes = dict[tuple[str, str], dict[str, list[str]]]
"""{(schema, asset table): {file name: [types]}} from ``asset-type/*.jsonl``."""


@dataclass
class StagedAsset:
    """One asset file to upload and what to link it to."""

    item: Item
    table: Table
    types: tuple[str, ...] = ()
    origin: str = ""  # where it was declared (manifest key or relative path)


@dataclass
class RowSource:
    """One row to insert, with where it came from (for reports and the RID ledger)."""

    file: str
    line: int | None
    values: dict[str, Any]
    # asset column -> staged asset key (``StagedAsset.item.rel``) to resolve to a RID
    asset_refs: dict[str, str] = field(default_factory=dict)


@dataclass
class RowGroup:
    """Rows for one table."""

    table: Table
    rows: list[RowSource] = field(default_factory=list)


@dataclass
class ExecutionPlan:
    """Everything found under one execution, checked, ready to write."""

    exec_rid: str
    root: Path
    assets: list[StagedAsset] = field(default_factory=list)
    features: list[RowGroup] = field(default_factory=list)
    tables: list[RowGroup] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unmatched: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # (schema, vocabulary table, column) -> {term: [(file, line, context)]}
    terms: dict[tuple[str, str, str], dict[str, list[tuple[str, int | None, str]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    # asset table key -> (its <Asset>_Asset_Type link, its <Asset>_Execution link)
    links: dict[str, tuple[LinkTable | None, LinkTable | None]] = field(default_factory=dict)
    # asset table key -> {RID: [(file, line)]}: asset columns that already hold RIDs
    asset_rids: dict[str, dict[str, list[tuple[str, int | None]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
