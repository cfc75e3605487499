"""Where an execution's rows go: look-ups in the catalog model (links, features, keys).

Pure functions of the deriva-py model; no catalog access.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deriva.core.ermrest_model import Table

from deriva_upload.model import DerivaModel, is_asset_table

#: Role of every asset an execution produced (``Asset_Role`` vocabulary).
OUTPUT_ROLE = "Output"
SYSTEM_COLUMNS = ("RID", "RCT", "RMT", "RCB", "RMB")


def tkey(table: Table) -> str:
    """``schema:table``: how tables are named in reports and plans."""
    return f"{table.schema.name}:{table.name}"


def fk_pairs(table: Table) -> list[tuple[str, Table, str]]:
    """Single-column foreign keys of ``table``: (column, referenced table, referenced column)."""
    out = []
    for fk in table.foreign_keys:
        cols = list(fk.foreign_key_columns)
        refs = list(fk.referenced_columns)
        if len(cols) == 1 and len(refs) == 1:
            out.append((cols[0].name, fk.pk_table, refs[0].name))
    return out


def is_vocabulary(table: Table) -> bool:
    names = {c.name.upper() for c in table.column_definitions}
    return {"NAME", "ID", "URI"} <= names


def all_tables(model: DerivaModel) -> Iterable[Table]:
    for schema in model.model.schemas.values():
        yield from schema.tables.values()


def find_table(model: DerivaModel, schema: str, name: str) -> Table | None:
    s = model.model.schemas.get(schema)
    if s is not None and name in s.tables:
        return s.tables[name]
    return None


@dataclass(frozen=True)
class LinkTable:
    """An association from an asset table to another table (types, executions)."""

    table: Table
    asset_col: str
    other_col: str
    role_col: str | None = None  # <Asset>_Execution: the Asset_Role column


def find_link(model: DerivaModel, asset: Table, other_name: str) -> LinkTable | None:
    """``<Asset>_<Other>``: a table with FKs to ``asset`` and to a table named ``other_name``."""
    candidates: list[LinkTable] = []
    for t in all_tables(model):
        pairs = fk_pairs(t)
        a = [c for c, ref, _ in pairs if ref is asset or tkey(ref) == tkey(asset)]
        o = [c for c, ref, _ in pairs if ref.name == other_name and ref.schema.name == model.ml_schema]
        if not o:
            o = [c for c, ref, _ in pairs if ref.name == other_name]
        if len(a) == 1 and len(o) == 1 and a[0] != o[0]:
            role = [c for c, ref, _ in pairs if ref.name == "Asset_Role"]
            candidates.append(LinkTable(t, a[0], o[0], role[0] if role else None))
    if not candidates:
        return None
    preferred = [c for c in candidates if c.table.name == f"{asset.name}_{other_name}"]
    return (preferred or candidates)[0]


@dataclass(frozen=True)
class FeatureTable:
    """A feature association ``Execution_<Target>_<Feature>`` and its column roles."""

    table: Table
    target_col: str
    execution_col: str
    feature_name_col: str
    asset_cols: Mapping[str, Table]  # column -> asset table
    term_cols: Mapping[str, tuple[Table, str]]  # column -> (vocabulary, referenced column)
    target_table: Table | None = None

    @property
    def path_cols(self) -> dict[str, Table]:
        """Columns whose values may be local asset paths to replace by RIDs.

        deriva-ml's asset columns, plus the target column when the target itself is an
        asset table (a feature on images this execution produces names them by path).
        """
        cols = dict(self.asset_cols)
        if self.target_table is not None and is_asset_table(self.target_table):
            cols[self.target_col] = self.target_table
        return cols


def feature_table(model: DerivaModel, schema: str, target: str, feature: str) -> FeatureTable | None:
    """The feature table of ``<Target>/<Feature>`` (in ``schema``, else anywhere) and its columns' roles."""
    name = f"Execution_{target}_{feature}"
    table = find_table(model, schema, name)
    if table is None:
        table = next((t for t in all_tables(model) if t.name == name), None)
    if table is None:
        return None
    pairs = fk_pairs(table)
    target_col, target_table = next(((c, ref) for c, ref, _ in pairs if ref.name == target), (target, None))
    exec_col = next((c for c, ref, _ in pairs if ref.name == "Execution"), "Execution")
    fname_col = next((c for c, ref, _ in pairs if ref.name == "Feature_Name"), "Feature_Name")
    assets: dict[str, Table] = {}
    terms: dict[str, tuple[Table, str]] = {}
    for col, ref, ref_col in pairs:
        if col in (target_col, exec_col, fname_col) or col in ("RCB", "RMB"):
            continue
        if is_asset_table(ref):
            assets[col] = ref
        elif is_vocabulary(ref):
            terms[col] = (ref, ref_col)
    return FeatureTable(table, target_col, exec_col, fname_col, assets, terms, target_table)


def natural_key(table: Table, rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...] | None:
    """A non-RID key of ``table`` that every row fills (makes onconflict=skip idempotent)."""
    for key in table.keys:
        cols = tuple(c.name for c in key.unique_columns)
        if cols == ("RID",):
            continue
        if all(all(r.get(c) is not None for c in cols) for r in rows):
            return cols
    return None
