"""Parse staged value files (.csv, .json, .jsonl, asset-type .jsonl) into plain records.

Pure: callers read the text; every parse problem is appended to ``problems`` with its
file and line, in line order, and the bad record is skipped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deriva_upload.execution.layout import rel as relpath
from deriva_upload.execution.plan import AssetTypes
from deriva_upload.execution.problems import Problem

Record = tuple[int, dict[str, Any]]
"""(line or record number, record)."""


def iter_jsonl(text: str, rel: str, problems: list[Problem], not_object: str) -> Iterator[Record]:
    """The JSON objects of a .jsonl text; ``not_object`` is the problem for a non-object line."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(rel, lineno, f"not valid JSON ({e.msg})"))
            continue
        if not isinstance(doc, dict):
            problems.append(Problem(rel, lineno, not_object))
            continue
        yield lineno, doc


def parse_records(text: str, suffix: str, rel: str, problems: list[Problem]) -> list[Record]:
    """(line, record) pairs of a .jsonl, .json (array) or .csv (header) text."""
    out: list[Record] = []
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        for row in reader:
            if None in row:
                problems.append(Problem(rel, reader.line_num, "more fields than header columns"))
                continue
            out.append((reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}))
        return out
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(Problem(rel, e.lineno, f"not valid JSON ({e.msg})"))
            return out
        records = doc if isinstance(doc, list) else [doc]
        for i, rec in enumerate(records, 1):
            if not isinstance(rec, dict):
                problems.append(Problem(rel, i, "record must be a JSON object"))
                continue
            out.append((i, rec))
        return out
    return list(iter_jsonl(text, rel, problems, "record must be a JSON object"))


def read_records(path: Path, rel: str, problems: list[Problem]) -> list[Record]:
    """:func:`parse_records` of the file at ``path`` (its suffix picks the format)."""
    return parse_records(path.read_text(encoding="utf-8"), path.suffix, rel, problems)


def parse_asset_types(text: str, rel: str, problems: list[Problem]) -> dict[str, list[str]]:
    """``{"<file>": ["Type", ...]}`` lines -> {file name: types} (later lines win)."""
    types: dict[str, list[str]] = {}
    for lineno, doc in iter_jsonl(text, rel, problems, 'expected {"<file name>": ["Type", ...]}'):
        for name, value in doc.items():
            vals = [value] if isinstance(value, str) else value
            if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
                problems.append(Problem(rel, lineno, f"types of {name!r} must be a list of strings"))
                continue
            types[name] = list(vals)
    return types


def read_asset_types(exec_root: Path, prefix: Path, problems: list[Problem]) -> AssetTypes:
    """``asset-type/<schema>/<Table>.jsonl`` -> {(schema, table): {file name: types}}."""
    out: AssetTypes = {}
    base = exec_root / "asset-type"
    if not base.is_dir():
        return out
    for path in sorted(base.glob("*/*.jsonl")):
        text = path.read_text(encoding="utf-8")
        out[(path.parent.name, path.stem)] = parse_asset_types(text, relpath(path, prefix), problems)
    return out
