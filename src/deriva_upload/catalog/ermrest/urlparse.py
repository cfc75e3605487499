"""Pure parser for the subset of the ERMrest URL grammar the embedded catalog serves.

Input is the RAW (still percent-encoded) request path, because ``: = & ; , @ ( ) !``
are syntax and percent-escapes protect literal values (protocol §1.6, §3.5).  We split
on syntax characters first and only then decode each literal.  Nothing here touches the
model or a database: names are resolved later by the SQL translation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from .errors import BadRequest, Conflict, NotFound

# ---------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class ColumnRef:
    """A column named by 1 (column), 2 (alias/table, column) or 3 (schema, table, column) parts."""

    parts: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.parts[-1]


@dataclass(frozen=True)
class Pred:
    """``col OP value``; ``values`` has one item unless ``quant`` is ``any``/``all``; None for ``null``."""

    col: ColumnRef
    op: str  # "=", "null", "lt", "leq", "gt", "geq", "regexp", "ciregexp", "ts"
    values: tuple[str, ...] = ()
    quant: str | None = None  # None, "any", "all"


@dataclass(frozen=True)
class Not:
    expr: "Expr"


@dataclass(frozen=True)
class And:
    items: tuple["Expr", ...]


@dataclass(frozen=True)
class Or:
    items: tuple["Expr", ...]


Expr = Pred | Not | And | Or


@dataclass(frozen=True)
class TableRef:
    table: str
    schema: str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class Projection:
    """``[alias:=]col``, ``[alias:=]fn(col)``, ``[alias:=]fn(*)`` or ``*`` (col None, fn None)."""

    col: ColumnRef | None
    alias: str | None = None
    func: str | None = None
    star: bool = False


@dataclass(frozen=True)
class SortKey:
    name: str
    desc: bool = False


@dataclass
class DataRequest:
    """A parsed ``/entity|attribute|attributegroup|aggregate/...`` path."""

    api: str
    table: TableRef
    filters: list[Expr] = field(default_factory=list)
    group_keys: list[Projection] = field(default_factory=list)
    projection: list[Projection] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    after: list[str | None] | None = None
    before: list[str | None] | None = None


@dataclass(frozen=True)
class CatalogRoute:
    """``/ermrest/catalog[/N[@snap]][/rest]``: ``rest`` stays raw for the API-specific parser."""

    catalog_id: str | None
    snapshot: str | None
    rest: str | None  # raw text after "/catalog/N/" ("" when the URL ends with "/"), None if absent


DATA_APIS = ("entity", "attribute", "attributegroup", "aggregate")
AGG_FUNCS = frozenset({"min", "max", "avg", "sum", "cnt", "cnt_d", "array", "array_d"})
BINARY_OPS = frozenset({"lt", "leq", "gt", "geq", "regexp", "ciregexp", "ts"})
# ERMrest identifiers are bounded (PostgreSQL limits names to 63 bytes); we allow more but
# refuse absurdly long names early so they never reach SQL.
MAX_NAME_LENGTH = 255

# ---------------------------------------------------------------------------
# top-level routing


_CATALOG_RE = re.compile(r"^/ermrest/catalog(?:/(?P<id>[^/@]*)(?:@(?P<snap>[^/]*))?(?P<rest>/.*)?)?/?$")


def parse_catalog_route(raw_path: str) -> CatalogRoute:
    """Split ``/ermrest/catalog/N@snap/rest`` into its parts (raw, undecoded rest)."""
    m = _CATALOG_RE.match(raw_path)
    if not m:
        raise NotFound("Resource not found.", f"{raw_path}")
    cid = m.group("id")
    rest = m.group("rest")
    if cid is not None:
        cid = unquote(cid)
        if cid == "":
            cid = None
    if rest is not None:
        rest = rest[1:]
    elif raw_path.endswith("/") and cid is not None:
        rest = ""
    return CatalogRoute(cid, unquote(m.group("snap")) if m.group("snap") else None, rest)


def decode_segments(raw: str) -> list[str]:
    """Split a raw model path on ``/`` and percent-decode each part."""
    return [decode_literal(p) for p in raw.split("/")]


def decode_literal(raw: str) -> str:
    """Percent-decode one literal; malformed UTF-8 is a client error."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as e:
        raise BadRequest("Request malformed.", f"Invalid percent-encoding in {raw!r}.") from e


def split_names(raw: str, sep: str = ",") -> list[str]:
    """Split a raw comma list of names (model key/fkey paths) and decode each."""
    return [check_name(decode_literal(p)) for p in raw.split(sep)]


def check_name(name: str) -> str:
    """Refuse names that can never be valid (empty, too long, NUL)."""
    if not name or len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise BadRequest("Request malformed.", f"Invalid name {name[:40]!r}.")
    return name


# ---------------------------------------------------------------------------
# tokenizer

_TOKEN_RE = re.compile(r"::[A-Za-z_]+::|:=|[/:=&;,@()!$*]|[^/:=&;,@()!$*]+")
_SYNTAX = frozenset("/:=&;,@()!$*")


@dataclass(frozen=True)
class Tok:
    kind: str  # "lit" or the syntax text itself ("/", ":=", "::null::", ...)
    text: str  # decoded text for literals


def tokenize(raw: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    for m in _TOKEN_RE.finditer(raw):
        if m.start() != pos:  # pragma: no cover - the regex covers every character
            raise BadRequest("Request malformed.", f"Cannot tokenize {raw!r}.")
        pos = m.end()
        t = m.group(0)
        if t.startswith("::") and len(t) > 2:
            toks.append(Tok(t.lower(), t))
        elif t in _SYNTAX or t == ":=":
            toks.append(Tok(t, t))
        else:
            toks.append(Tok("lit", decode_literal(t)))
    return toks


class _Stream:
    def __init__(self, toks: list[Tok], context: str) -> None:
        self.toks = toks
        self.i = 0
        self.context = context

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def kind(self, k: int = 0) -> str | None:
        t = self.peek(k)
        return t.kind if t else None

    def next(self) -> Tok:
        t = self.peek()
        if t is None:
            self.fail("unexpected end")
        self.i += 1
        return t  # type: ignore[return-value]

    def expect(self, kind: str) -> Tok:
        t = self.peek()
        if t is None or t.kind != kind:
            self.fail(f"expected {kind!r}")
        self.i += 1
        return t  # type: ignore[return-value]

    def at_end(self) -> bool:
        return self.i >= len(self.toks)

    def fail(self, what: str) -> None:
        near = "".join(t.text for t in self.toks[self.i : self.i + 4])
        raise BadRequest("Request malformed.", f"Invalid {self.context}: {what} near {near!r}.")


def _split_top(toks: list[Tok], kind: str) -> list[list[Tok]]:
    """Split tokens on ``kind`` outside parentheses."""
    parts: list[list[Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "(":
            depth += 1
        elif t.kind == ")":
            depth -= 1
        if t.kind == kind and depth == 0:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


# ---------------------------------------------------------------------------
# data paths


def parse_data_request(api: str, raw: str) -> DataRequest:
    """Parse the raw text after ``/entity/`` (or attribute/...) into a DataRequest."""
    if api not in DATA_APIS:
        raise NotFound("Resource not found.", f"Unknown API {api!r}.")
    toks = tokenize(raw)
    # modifiers start at the first top-level "@"
    depth = 0
    cut = len(toks)
    for i, t in enumerate(toks):
        if t.kind == "(":
            depth += 1
        elif t.kind == ")":
            depth -= 1
        elif t.kind == "@" and depth == 0:
            cut = i
            break
    path_toks, mod_toks = toks[:cut], toks[cut:]
    segments = _split_top(path_toks, "/")
    if not segments or not segments[0]:
        raise BadRequest("Request malformed.", "Data path must start with a table name.")
    table = _parse_table(segments[0])
    req = DataRequest(api=api, table=table)
    body = segments[1:]
    if api in ("attribute", "attributegroup", "aggregate"):
        if not body or not body[-1]:
            raise BadRequest("Request malformed.", f"The {api} API requires a projection.")
        proj = body[-1]
        body = body[:-1]
        if api == "attributegroup":
            groups = _split_top(proj, ";")
            if len(groups) > 2:
                raise BadRequest("Request malformed.", "Attributegroup takes keys;projection.")
            req.group_keys = _parse_projection_list(groups[0], allow_agg=False)
            req.projection = _parse_projection_list(groups[1], allow_agg=True) if len(groups) == 2 else []
        else:
            req.projection = _parse_projection_list(proj, allow_agg=(api == "aggregate"))
            if api == "aggregate" and any(p.func is None and not p.star for p in req.projection):
                raise BadRequest("Request malformed.", "Aggregate projections need an aggregate function.")
    for seg in body:
        if not seg:
            raise BadRequest("Request malformed.", "Empty path segment.")
        if seg[0].kind == "$":
            # context reset: only the (single) table's own alias is meaningful here
            if len(seg) != 2 or seg[1].kind != "lit" or seg[1].text not in (table.alias, table.table):
                raise Conflict("Request conflicts with state of server.", "Unknown context alias in path.")
            continue
        if _looks_like_link(seg):
            raise Conflict(
                "Request conflicts with state of server.",
                "Joins (links) are not supported by the embedded catalog.",
            )
        req.filters.append(parse_filter(seg))
    _parse_modifiers(mod_toks, req)
    return req


def _looks_like_link(seg: list[Tok]) -> bool:
    kinds = [t.kind for t in seg]
    if all(k in ("lit", ":", ":=") for k in kinds) and "=" not in kinds:
        return True  # "T", "S:T", "A:=S:T"
    if kinds and kinds[0] == "lit" and seg[0].text in ("left", "right", "full") and len(kinds) > 1 and kinds[1] == "(":
        return True
    text = "".join(t.text if t.kind != "lit" else "x" for t in seg)
    return ")=(" in text


def _parse_table(seg: list[Tok]) -> TableRef:
    s = _Stream(seg, "table reference")
    alias = None
    if s.kind(1) == ":=":
        alias = check_name(s.expect("lit").text)
        s.next()
    first = check_name(s.expect("lit").text)
    if s.kind() == ":":
        s.next()
        second = check_name(s.expect("lit").text)
        ref = TableRef(table=second, schema=first, alias=alias)
    else:
        ref = TableRef(table=first, schema=None, alias=alias)
    if not s.at_end():
        s.fail("trailing text after table name")
    return ref


def parse_filter(seg: list[Tok]) -> Expr:
    s = _Stream(seg, "filter")
    e = _parse_or(s)
    if not s.at_end():
        s.fail("unexpected token")
    return e


def _parse_or(s: _Stream) -> Expr:
    items = [_parse_and(s)]
    while s.kind() == ";":
        s.next()
        items.append(_parse_and(s))
    return items[0] if len(items) == 1 else Or(tuple(items))


def _parse_and(s: _Stream) -> Expr:
    items = [_parse_unary(s)]
    while s.kind() == "&":
        s.next()
        items.append(_parse_unary(s))
    return items[0] if len(items) == 1 else And(tuple(items))


def _parse_unary(s: _Stream) -> Expr:
    k = s.kind()
    if k == "!":
        s.next()
        return Not(_parse_unary(s))
    if k == "(":
        s.next()
        e = _parse_or(s)
        s.expect(")")
        return e
    return _parse_pred(s)


def _parse_colref(s: _Stream) -> ColumnRef:
    parts = [check_name(s.expect("lit").text)]
    while s.kind() == ":" and s.kind(1) == "lit" and len(parts) < 3:
        s.next()
        parts.append(check_name(s.next().text))
    return ColumnRef(tuple(parts))


def _parse_pred(s: _Stream) -> Pred:
    if s.kind() == "*":  # "*::ts::words" searches every text column
        s.next()
        col = ColumnRef(("*",))
    else:
        col = _parse_colref(s)
    k = s.kind()
    if k == "::null::":
        s.next()
        return Pred(col, "null")
    if k == "=":
        op = "="
    elif k and k.startswith("::") and k[2:-2] in BINARY_OPS:
        op = k[2:-2]
    else:
        s.fail("expected a filter operator")
    s.next()
    # quantified value list
    if s.kind() == "lit" and s.peek().text in ("any", "all") and s.kind(1) == "(":  # type: ignore[union-attr]
        quant = s.next().text
        s.next()
        values = [_parse_value(s)]
        while s.kind() == ",":
            s.next()
            values.append(_parse_value(s))
        s.expect(")")
        return Pred(col, op, tuple(values), quant)
    return Pred(col, op, (_parse_value(s),))


def _parse_value(s: _Stream) -> str:
    """A literal; an absent literal (``col=`` then ``&``/end) is the empty string."""
    if s.kind() == "lit":
        return s.next().text
    return ""


def _parse_projection_list(toks: list[Tok], allow_agg: bool) -> list[Projection]:
    out = []
    for item in _split_top(toks, ","):
        if not item:
            raise BadRequest("Request malformed.", "Empty projection item.")
        out.append(_parse_projection(item, allow_agg))
    return out


def _parse_projection(item: list[Tok], allow_agg: bool) -> Projection:
    s = _Stream(item, "projection")
    alias = None
    if s.kind(1) == ":=":
        alias = check_name(s.expect("lit").text)
        s.next()
    if s.kind() == "*":
        s.next()
        if not s.at_end():
            s.fail("trailing text")
        return Projection(None, alias=alias, star=True)
    if s.kind() == "lit" and s.kind(1) == "(":
        func = s.next().text
        if not allow_agg or func not in AGG_FUNCS:
            raise BadRequest("Request malformed.", f"Unsupported aggregate function {func!r}.")
        s.next()
        if s.kind() == "*":
            s.next()
            col = None
        else:
            col = _parse_colref(s)
        s.expect(")")
        if not s.at_end():
            s.fail("trailing text")
        if col is None and func not in ("cnt", "array"):
            raise BadRequest("Request malformed.", f"Aggregate {func}(*) is not supported.")
        return Projection(col, alias=alias, func=func, star=col is None)
    col = _parse_colref(s)
    if not s.at_end():
        s.fail("trailing text")
    return Projection(col, alias=alias)


def _parse_modifiers(toks: list[Tok], req: DataRequest) -> None:
    s = _Stream(toks, "path modifier")
    while not s.at_end():
        s.expect("@")
        name = s.expect("lit").text
        s.expect("(")
        if name == "sort":
            if req.sort:
                s.fail("duplicate @sort")
            keys = []
            while True:
                kname = check_name(s.expect("lit").text)
                desc = False
                if s.kind() in ("::desc::", "::asc::"):
                    desc = s.next().kind == "::desc::"
                keys.append(SortKey(kname, desc))
                if s.kind() == ",":
                    s.next()
                    continue
                break
            s.expect(")")
            req.sort = keys
        elif name in ("after", "before"):
            vals: list[str | None] = []
            while True:
                if s.kind() == "::null::":
                    s.next()
                    vals.append(None)
                else:
                    vals.append(_parse_value(s))
                if s.kind() == ",":
                    s.next()
                    continue
                break
            s.expect(")")
            setattr(req, name, vals)
        else:
            raise BadRequest("Request malformed.", f"Unknown path modifier @{name}.")
    if (req.after is not None or req.before is not None) and not req.sort:
        raise BadRequest("Request malformed.", "@after/@before require @sort.")
    for page in (req.after, req.before):
        if page is not None and len(page) != len(req.sort):
            raise BadRequest("Request malformed.", "@after/@before need one value per sort key.")
