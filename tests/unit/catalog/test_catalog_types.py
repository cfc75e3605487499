"""Type coercion from JSON/CSV input to SQLite storage and back (protocol §3.7, §3.10)."""

from __future__ import annotations

import json

import pytest

from deriva_upload.catalog.ermrest.errors import BadRequest
from deriva_upload.catalog.ermrest.types import (
    coerce,
    column_type,
    csv_text,
    output_converter,
    parse_pg_array,
)

TEXT = column_type({"typename": "text"})
INT8 = column_type({"typename": "int8"})
INT2 = column_type({"typename": "int2"})
FLOAT = column_type({"typename": "float8"})
BOOL = column_type({"typename": "boolean"})
DATE = column_type({"typename": "date"})
TSTZ = column_type({"typename": "timestamptz"})
JSONB = column_type({"typename": "jsonb"})
TEXT_ARRAY = column_type({"typename": "text[]", "is_array": True, "base_type": {"typename": "text"}})
INT_ARRAY = column_type({"typename": "int4[]", "is_array": True, "base_type": {"typename": "int4"}})


def test_domains_unwrap_to_their_base() -> None:
    rid = column_type({"typename": "ermrest_rid", "is_domain": True, "base_type": {"typename": "text"}})
    assert (rid.kind, rid.affinity) == ("text", "TEXT")
    rct = column_type({"typename": "ermrest_rct", "is_domain": True, "base_type": {"typename": "timestamptz"}})
    assert rct.kind == "timestamp"
    assert column_type({"typename": "markdown"}).kind == "text"
    assert INT8.affinity == "INTEGER" and FLOAT.affinity == "REAL" and BOOL.affinity == "INTEGER"


@pytest.mark.parametrize(
    "ctype, value, stored",
    [
        (TEXT, "x", "x"),
        (TEXT, 12, "12"),
        (TEXT, True, "true"),
        (TEXT, 1.5, "1.5"),
        (INT8, "12", 12),
        (INT8, 12, 12),
        (INT8, " -3 ", -3),
        (INT8, 7.0, 7),
        (FLOAT, "2.5", 2.5),
        (FLOAT, 3, 3.0),
        (BOOL, True, 1),
        (BOOL, "false", 0),
        (BOOL, "t", 1),
        (BOOL, "F", 0),
        (DATE, "2024-02-29", "2024-02-29"),
        (TSTZ, "2024-01-02T03:04:05.123456+00:00", "2024-01-02T03:04:05.123456+00:00"),
        (TSTZ, "2024-01-02 03:04:05-07", "2024-01-02 03:04:05-07"),
        (TSTZ, "2024-01-02", "2024-01-02"),
        (JSONB, {"a": [1, 2]}, '{"a":[1,2]}'),
        (TEXT_ARRAY, ["a", None, "b c"], '["a",null,"b c"]'),
        (TEXT_ARRAY, '{a,NULL,"b c"}', '["a",null,"b c"]'),
        (INT_ARRAY, "[1, 2]", "[1,2]"),
        (INT8, None, None),
    ],
)
def test_coerce(ctype, value, stored) -> None:  # type: ignore[no-untyped-def]
    assert coerce(ctype, value) == stored


@pytest.mark.parametrize(
    "ctype, value",
    [
        (INT8, "abc"),
        (INT8, "1.5"),
        (INT8, 1.5),
        (INT8, True),
        (INT2, 40000),
        (INT8, 2**63),
        (FLOAT, "x"),
        (BOOL, "maybe"),
        (DATE, "2023-02-29"),
        (DATE, "2024-13-01"),
        (DATE, "01/02/2024"),
        (TSTZ, "yesterday"),
        (TSTZ, "2024-01-02T25"),
        (INT_ARRAY, "{1,x}"),
        (TEXT_ARRAY, "not an array"),
    ],
)
def test_bad_values_are_400(ctype, value) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest):
        coerce(ctype, value)


def test_output_conversion() -> None:
    assert output_converter(TEXT) is None and output_converter(INT8) is None
    assert output_converter(BOOL)(1) is True and output_converter(BOOL)(0) is False
    assert output_converter(JSONB)('{"a":1}') == {"a": 1}
    assert output_converter(TEXT_ARRAY)('["x"]') == ["x"]


def test_csv_text() -> None:
    assert csv_text(BOOL, 1) == "t" and csv_text(BOOL, 0) == "f"
    assert csv_text(TEXT_ARRAY, json.dumps(["a", "b c", None])) == '{a,"b c",NULL}'
    assert csv_text(TEXT_ARRAY, json.dumps(["a"]), arrays_json=True) == '["a"]'
    assert csv_text(TEXT, None) is None


def test_pg_array_quoting_roundtrip() -> None:
    assert parse_pg_array('{"a,b","c\\"d",e}') == ["a,b", 'c"d', "e"]
    assert parse_pg_array("{}") == []
