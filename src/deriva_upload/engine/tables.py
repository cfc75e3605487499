"""Table files (CSV/JSON rows for one table) made safe to send twice.

A table file's rows often have no natural key (only the server-assigned RID), so a POST
whose answer was lost cannot be repeated without duplicating them. Each row therefore
gets a leased RID that the ledger remembers before the first POST; the file is sent with
``nondefaults=RID&onconflict=skip`` and a repeat is a no-op. Pure parsing lives here;
the pipeline does the leasing and sending.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deriva_upload.errors import ConfigError


@dataclass(frozen=True)
class TableRow:
    """One row of a table file, with where it came from (the RID ledger's key)."""

    file: str
    line: int
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableFile:
    """A parsed table file: the column order as written, and its rows."""

    columns: tuple[str, ...]
    rows: tuple[TableRow, ...]


def parse_table_file(rel: str, raw: bytes, ext: str) -> TableFile:
    """Rows of a ``.csv`` (header row required) or ``.json`` (a list of objects) file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if ext == "json":
        try:
            doc = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{rel}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise ConfigError(f"{rel}: a JSON table file must hold a list of objects")
        columns: list[str] = []
        for r in doc:
            columns.extend(c for c in r if c not in columns)
        return TableFile(tuple(columns), tuple(TableRow(rel, i + 1, r) for i, r in enumerate(doc)))
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise ConfigError(f"{rel}: empty CSV file; the first line must name the columns")
    rows = []
    for values in reader:
        if not values:
            continue
        if len(values) != len(header):
            raise ConfigError(f"{rel}:{reader.line_num}: {len(values)} field(s) where the header has {len(header)}")
        # ERMrest reads an empty unquoted CSV field as NULL
        rows.append(TableRow(rel, reader.line_num, {c: (v if v != "" else None) for c, v in zip(header, values)}))
    return TableFile(tuple(header), tuple(rows))


def body_with_rids(table: TableFile, rids: Sequence[str], ext: str) -> bytes:
    """The file's rows with a leading ``RID`` column, in the file's own format."""
    if ext == "json":
        return json.dumps([{"RID": rid, **row.values} for row, rid in zip(table.rows, rids)],
                          separators=(",", ":"), default=str).encode("utf-8")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["RID", *table.columns])
    for row, rid in zip(table.rows, rids):
        w.writerow([rid, *("" if row.values.get(c) is None else row.values[c] for c in table.columns)])
    return out.getvalue().encode("utf-8")
