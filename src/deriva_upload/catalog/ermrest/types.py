"""ERMrest column types on SQLite: storage class, input coercion and output conversion.

ERMrest casts every input field from its *text* form to the column type (protocol §3.7),
so ``"Length": "12"`` into int8 works and a bad value is a 400.  SQLite is loosely typed,
so we coerce in Python before binding and convert back on output (booleans are stored as
0/1 and shown as true/false; json and arrays are stored as JSON text).  Text-like values
are stored verbatim because clients compare what they sent with what they read back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import BadRequest

# typename -> storage kind
_KIND_BY_TYPENAME: dict[str, str] = {
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "serial2": "int",
    "serial4": "int",
    "serial8": "int",
    "float4": "float",
    "float8": "float",
    "numeric": "float",
    "boolean": "bool",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "ermrest_rct": "timestamp",
    "ermrest_rmt": "timestamp",
    "time": "time",
    "timetz": "time",
    "json": "json",
    "jsonb": "json",
}
# integer ranges, so an out-of-range value is a 400 like in PostgreSQL
_INT_BOUNDS = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
    "serial2": (1, 2**15 - 1),
    "serial4": (1, 2**31 - 1),
    "serial8": (1, 2**63 - 1),
}
SQL_AFFINITY = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}

_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_PART = r"\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
_TZ_PART = r"(?:\s*(?:Z|z|[+-]\d{2}(?::?\d{2})?))?"
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[Tt ]" + _TIME_PART + _TZ_PART + r")?$")
_TIME_RE = re.compile(r"^" + _TIME_PART + _TZ_PART + r"$")
_TRUE = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE = frozenset({"f", "false", "n", "no", "off", "0"})


@dataclass(frozen=True)
class ColumnType:
    """What the catalog needs to know about one column type."""

    typename: str  # the leaf base typename (domains unwrapped), e.g. "text", "int8"
    kind: str  # "text" | "int" | "float" | "bool" | "date" | "timestamp" | "time" | "json"
    is_array: bool = False
    element_typename: str | None = None

    @property
    def affinity(self) -> str:
        if self.is_array:
            return "TEXT"
        return SQL_AFFINITY.get(self.kind, "TEXT")

    @property
    def plain_text(self) -> bool:
        """True when stored values are already their output values (no conversion)."""
        return not self.is_array and self.kind in ("text", "date", "timestamp", "time", "int", "float")


def column_type(type_doc: dict) -> ColumnType:
    """Digest an ERMrest type document (plain, domain or array)."""
    if not isinstance(type_doc, dict) or not isinstance(type_doc.get("typename"), str):
        raise BadRequest(f"Invalid column type {type_doc!r}.")
    if type_doc.get("is_array"):
        base = column_type(type_doc.get("base_type") or {"typename": type_doc["typename"].rstrip("[]")})
        return ColumnType(type_doc["typename"], base.kind, True, base.typename)
    if type_doc.get("is_domain") and isinstance(type_doc.get("base_type"), dict):
        name = type_doc["typename"]
        if name in _KIND_BY_TYPENAME:  # ermrest_rct etc. are domains over timestamptz
            return ColumnType(name, _KIND_BY_TYPENAME[name])
        return column_type(type_doc["base_type"])
    name = type_doc["typename"]
    if name.endswith("[]"):
        base = column_type({"typename": name[:-2]})
        return ColumnType(name, base.kind, True, base.typename)
    return ColumnType(name, _KIND_BY_TYPENAME.get(name, "text"))


def _text_form(v: Any) -> str:
    """The text PostgreSQL would see for a JSON input value (ERMrest casts via text)."""
    if isinstance(v, str):
        return v
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return json.dumps(v, separators=(",", ":"))


def _bad(ctype: ColumnType, v: Any) -> BadRequest:
    return BadRequest(f'Invalid {ctype.typename} input: "{_text_form(v)[:80]}".')


def coerce_scalar(ctype: ColumnType, v: Any, typename: str | None = None) -> Any:
    """Coerce one non-array input value to its stored form; BadRequest when it cannot be cast."""
    if v is None:
        return None
    kind = ctype.kind
    if kind == "text":
        return v if isinstance(v, str) else _text_form(v)
    if kind == "int":
        if isinstance(v, bool):
            raise _bad(ctype, v)
        if isinstance(v, int):
            n = v
        elif isinstance(v, float) and v.is_integer():
            n = int(v)
        elif isinstance(v, str) and _INT_RE.match(v):
            n = int(v)
        else:
            raise _bad(ctype, v)
        lo, hi = _INT_BOUNDS.get(typename or ctype.element_typename or ctype.typename, _INT_BOUNDS["int8"])
        if n < lo or n > hi:
            raise BadRequest(f'Value "{n}" is out of range for type {ctype.typename}.')
        return n
    if kind == "float":
        if isinstance(v, bool):
            raise _bad(ctype, v)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                f = float(v)
            except ValueError:
                raise _bad(ctype, v) from None
            if math.isnan(f) and v.strip().lower() not in ("nan",):
                raise _bad(ctype, v)
            return f
        raise _bad(ctype, v)
    if kind == "bool":
        if isinstance(v, bool):
            return 1 if v else 0
        s = _text_form(v).strip().lower()
        if s in _TRUE:
            return 1
        if s in _FALSE:
            return 0
        raise _bad(ctype, v)
    if kind == "date":
        if isinstance(v, str) and _DATE_RE.match(v) and _valid_date(v):
            return v
        raise _bad(ctype, v)
    if kind == "timestamp":
        if isinstance(v, str) and _TIMESTAMP_RE.match(v.strip()) and _valid_date(v.strip()[:10]):
            return v
        raise _bad(ctype, v)
    if kind == "time":
        if isinstance(v, str) and _TIME_RE.match(v.strip()):
            return v
        raise _bad(ctype, v)
    if kind == "json":
        return json.dumps(v, separators=(",", ":"))
    return _text_form(v)  # pragma: no cover - every kind handled above


def _valid_date(s: str) -> bool:
    try:
        y, m, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
    except ValueError:
        return False
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return False
    mdays = [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return d <= mdays[m - 1]


def parse_pg_array(text: str) -> list[Any]:
    """Parse a PostgreSQL array literal ``{a,"b c",NULL}`` (one dimension) or JSON array text."""
    s = text.strip()
    if s.startswith("["):
        try:
            val = json.loads(s)
        except ValueError:
            raise BadRequest(f'Invalid array input: "{text[:80]}".') from None
        if not isinstance(val, list):
            raise BadRequest(f'Invalid array input: "{text[:80]}".')
        return val
    if not (s.startswith("{") and s.endswith("}")):
        raise BadRequest(f'Invalid array input: "{text[:80]}".')
    body = s[1:-1]
    out: list[Any] = []
    if not body.strip():
        return out
    i, n = 0, len(body)
    while i <= n:
        while i < n and body[i] == " ":
            i += 1
        if i < n and body[i] == '"':
            i += 1
            buf = []
            while i < n and body[i] != '"':
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(body[i])
                i += 1
            if i >= n:
                raise BadRequest(f'Invalid array input: "{text[:80]}".')
            i += 1
            out.append("".join(buf))
            while i < n and body[i] == " ":
                i += 1
        else:
            j = body.find(",", i)
            j = n if j < 0 else j
            item = body[i:j].strip()
            out.append(None if item.upper() == "NULL" else item)
            i = j
        if i < n and body[i] != ",":
            raise BadRequest(f'Invalid array input: "{text[:80]}".')
        i += 1
    return out


def coerce(ctype: ColumnType, v: Any) -> Any:
    """Coerce one input value (from JSON or CSV text) to its stored SQLite value."""
    if v is None:
        return None
    if not ctype.is_array:
        return coerce_scalar(ctype, v)
    items = v if isinstance(v, list) else parse_pg_array(_text_form(v))
    base = ColumnType(ctype.element_typename or "text", ctype.kind)
    stored = [coerce_scalar(base, x, ctype.element_typename) for x in items]
    if ctype.kind == "bool":
        stored = [None if x is None else bool(x) for x in stored]
    elif ctype.kind == "json":
        stored = [None if x is None else json.loads(x) for x in stored]
    return json.dumps(stored, separators=(",", ":"))


def output_converter(ctype: ColumnType) -> Callable[[Any], Any] | None:
    """Function turning a stored value into its JSON output value; None when it is the identity."""
    if ctype.is_array or ctype.kind == "json":
        return _json_out
    if ctype.kind == "bool":
        return _bool_out
    return None


def _json_out(v: Any) -> Any:
    return None if v is None else json.loads(v)


def _bool_out(v: Any) -> Any:
    return None if v is None else bool(v)


def csv_text(ctype: ColumnType, v: Any, arrays_json: bool = False) -> str | None:
    """Text of a stored value in CSV output (None = NULL)."""
    if v is None:
        return None
    if ctype.is_array:
        items = json.loads(v)
        if arrays_json:
            return json.dumps(items, separators=(",", ":"))
        return "{" + ",".join(_pg_array_item(x) for x in items) + "}"
    if ctype.kind == "bool":
        return "t" if v else "f"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _pg_array_item(x: Any) -> str:
    if x is None:
        return "NULL"
    if isinstance(x, bool):
        return "t" if x else "f"
    s = x if isinstance(x, str) else json.dumps(x)
    if s == "" or any(c in s for c in ',{}" \\') or s.upper() == "NULL":
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def filter_literal(ctype: ColumnType, text: str) -> Any:
    """Decode a URL filter literal to the stored representation for comparison."""
    if ctype.is_array:
        # comparisons on arrays compare elements in ERMrest; we compare the element text
        return coerce_scalar(ColumnType(ctype.element_typename or "text", ctype.kind), text)
    if ctype.kind == "json":
        return text
    return coerce_scalar(ctype, text)
