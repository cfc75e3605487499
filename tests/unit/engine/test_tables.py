"""Table files: parsing and the RID column that makes a repeated POST harmless."""

from __future__ import annotations

import csv
import io
import json

import pytest

from deriva_upload.engine.tables import body_with_rids, parse_table_file
from deriva_upload.errors import ConfigError


def test_csv_rows_keep_order_lines_and_nulls() -> None:
    t = parse_table_file("t.csv", b'Name,Note\nalice,\n"bob, jr","multi\nline"\n', "csv")
    assert t.columns == ("Name", "Note")
    assert [(r.line, dict(r.values)) for r in t.rows] == [
        (2, {"Name": "alice", "Note": None}), (4, {"Name": "bob, jr", "Note": "multi\nline"})]
    assert all(r.file == "t.csv" for r in t.rows)


def test_csv_body_gets_a_leading_rid_column_and_round_trips() -> None:
    t = parse_table_file("t.csv", b"Name,Note\nalice,\nbob,x\n", "csv")
    body = body_with_rids(t, ["1-A", "1-B"], "csv").decode()
    assert list(csv.reader(io.StringIO(body))) == [["RID", "Name", "Note"], ["1-A", "alice", ""], ["1-B", "bob", "x"]]


def test_json_rows_and_body() -> None:
    t = parse_table_file("t.json", b'[{"Name": "a"}, {"Name": "b", "Extra": 1}]', "json")
    assert t.columns == ("Name", "Extra")
    assert json.loads(body_with_rids(t, ["2", "4"], "json")) == [
        {"RID": "2", "Name": "a"}, {"RID": "4", "Name": "b", "Extra": 1}]


@pytest.mark.parametrize("raw, ext, says", [
    (b"", "csv", "t.x: empty CSV file"),
    (b"A,B\n1\n", "csv", "t.x:2: 1 field(s) where the header has 2"),
    (b"{\"A\": 1}", "json", "must hold a list of objects"),
    (b"[1,", "json", "t.x:1: invalid JSON"),
    (b"\xff\xfe", "csv", "not UTF-8"),
])
def test_bad_table_files_name_the_file_and_line(raw: bytes, ext: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_table_file("t.x", raw, ext)
