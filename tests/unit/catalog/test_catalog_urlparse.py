"""The pure ERMrest URL grammar parser (protocol §3.5)."""

from __future__ import annotations

import pytest

from deriva_upload.catalog.ermrest.errors import BadRequest, Conflict, NotFound
from deriva_upload.catalog.ermrest.urlparse import (
    And,
    ColumnRef,
    Not,
    Or,
    Pred,
    Projection,
    SortKey,
    TableRef,
    parse_catalog_route,
    parse_data_request,
    split_names,
)


def col(*parts: str) -> ColumnRef:
    return ColumnRef(tuple(parts))


def test_catalog_routes() -> None:
    assert parse_catalog_route("/ermrest/catalog").catalog_id is None
    r = parse_catalog_route("/ermrest/catalog/1")
    assert (r.catalog_id, r.rest) == ("1", None)
    r = parse_catalog_route("/ermrest/catalog/1/")
    assert (r.catalog_id, r.rest) == ("1", "")
    r = parse_catalog_route("/ermrest/catalog/12@2PX-WS30-E58W/entity/a:b")
    assert (r.catalog_id, r.snapshot, r.rest) == ("12", "2PX-WS30-E58W", "entity/a:b")
    with pytest.raises(NotFound):
        parse_catalog_route("/ermrest/other")


def test_table_and_alias() -> None:
    assert parse_data_request("entity", "isa:file").table == TableRef("file", "isa")
    assert parse_data_request("entity", "file").table == TableRef("file", None)
    assert parse_data_request("entity", "M:=deriva-ml:Execution").table == TableRef("Execution", "deriva-ml", "M")


def test_conjunction_and_percent_decoding_after_split() -> None:
    req = parse_data_request("entity", "isa:file/MD5=6f59&Filename=a%26b%3D%3Bc.txt")
    assert req.filters == [And((Pred(col("MD5"), "=", ("6f59",)), Pred(col("Filename"), "=", ("a&b=;c.txt",))))]


def test_names_are_decoded() -> None:
    req = parse_data_request("entity", "my%20schema:my%3Atable/col%2Fx=1")
    assert req.table == TableRef("my:table", "my schema")
    assert req.filters[0] == Pred(col("col/x"), "=", ("1",))


def test_operators_null_and_empty_value() -> None:
    req = parse_data_request("entity", "s:t/a::null::/b::lt::5/c::geq::x/d=/e::regexp::%5Ea.%2A")
    assert req.filters == [
        Pred(col("a"), "null"),
        Pred(col("b"), "lt", ("5",)),
        Pred(col("c"), "geq", ("x",)),
        Pred(col("d"), "=", ("",)),
        Pred(col("e"), "regexp", ("^a.*",)),
    ]


def test_disjunction_negation_grouping_precedence() -> None:
    req = parse_data_request("entity", "s:t/a=1;b=2&c=3/!(d=4;e::null::)")
    assert req.filters[0] == Or((Pred(col("a"), "=", ("1",)), And((Pred(col("b"), "=", ("2",)), Pred(col("c"), "=", ("3",))))))
    assert req.filters[1] == Not(Or((Pred(col("d"), "=", ("4",)), Pred(col("e"), "null"))))


def test_quantified_lists() -> None:
    req = parse_data_request("entity", "s:t/MD5=any(a,b,c)&n::gt::all(1,2)")
    assert req.filters == [And((Pred(col("MD5"), "=", ("a", "b", "c"), "any"), Pred(col("n"), "gt", ("1", "2"), "all")))]


def test_a_value_named_any_is_just_a_value() -> None:
    assert parse_data_request("entity", "s:t/x=any").filters == [Pred(col("x"), "=", ("any",))]


def test_qualified_columns() -> None:
    req = parse_data_request("entity", "A:=s:t/A:x=1")
    assert req.filters == [Pred(col("A", "x"), "=", ("1",))]


def test_sort_and_paging() -> None:
    req = parse_data_request("entity", "s:t@sort(RID,Name::desc::)@after(1-ABC,::null::)")
    assert req.sort == [SortKey("RID"), SortKey("Name", True)]
    assert req.after == ["1-ABC", None]
    req = parse_data_request("entity", "s:t/x=1@sort(RID)@before(2)")
    assert req.before == ["2"] and req.filters


def test_paging_errors() -> None:
    with pytest.raises(BadRequest):
        parse_data_request("entity", "s:t@after(1)")
    with pytest.raises(BadRequest):
        parse_data_request("entity", "s:t@sort(a,b)@after(1)")
    with pytest.raises(BadRequest):
        parse_data_request("entity", "s:t@frobnicate(a)")


def test_projections() -> None:
    req = parse_data_request("attribute", "s:t/x=1/RID,n:=Name,A:col")
    assert req.projection == [Projection(col("RID")), Projection(col("Name"), "n"), Projection(col("A", "col"))]
    req = parse_data_request("attributegroup", "isa:file/o0:=Filename,o1:=Length;n0:=Filename,c:=cnt(*)")
    assert req.group_keys == [Projection(col("Filename"), "o0"), Projection(col("Length"), "o1")]
    assert req.projection == [Projection(col("Filename"), "n0"), Projection(None, "c", "cnt", True)]
    req = parse_data_request("aggregate", "s:t/n:=cnt(*),m:=max(Length),d:=cnt_d(MD5)")
    assert [p.func for p in req.projection] == ["cnt", "max", "cnt_d"]


@pytest.mark.parametrize(
    "api, raw",
    [
        ("aggregate", "s:t/Length"),  # aggregate without a function
        ("attribute", "s:t"),  # no projection
        ("attribute", "s:t/n:=bogus(x)"),
        ("entity", "s:t/a=1)"),
        ("entity", "s:t/(a=1"),
        ("entity", "s:t/a::bogus::1"),
        ("entity", "s:t/=1"),
        ("entity", "s:t//a=1"),
        ("entity", "s:t/%ff=1"),
    ],
)
def test_malformed_paths_are_400(api: str, raw: str) -> None:
    with pytest.raises(BadRequest):
        parse_data_request(api, raw)


@pytest.mark.parametrize("raw", ["s:t/s:t2", "s:t/t2", "s:t/B:=s:t2", "s:t/(a)=(s:t2:b)", "s:t/left(a)=(s:t2:b)"])
def test_links_are_refused_with_409(raw: str) -> None:
    with pytest.raises(Conflict):
        parse_data_request("entity", raw)


def test_context_reset_to_own_alias_is_accepted() -> None:
    req = parse_data_request("entity", "M:=s:t/x=1/$M")
    assert req.filters == [Pred(col("x"), "=", ("1",))]
    with pytest.raises(Conflict):
        parse_data_request("entity", "M:=s:t/$N")


def test_split_names() -> None:
    assert split_names("a,b%2Cc,d%20e") == ["a", "b,c", "d e"]
    with pytest.raises(BadRequest):
        split_names("a,,b")
    with pytest.raises(BadRequest):
        split_names("x" * 300)
