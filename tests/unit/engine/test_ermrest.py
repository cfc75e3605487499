"""Pure URL building of the ERMrest client: quoting, batch splitting, query strings."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deriva_upload.engine.ermrest import (
    any_filter,
    attributegroup_update_path,
    insert_query,
    paged_path,
    q,
    split_any_batches,
    table_ref,
)


def test_quote_has_no_safe_characters() -> None:
    assert q("a/b:c=d&e;f,g@h(i)j!k*l+m n%") == "a%2Fb%3Ac%3Dd%26e%3Bf%2Cg%40h%28i%29j%21k%2Al%2Bm%20n%25"
    assert q("deriva-ml") == "deriva-ml"
    assert q("Ünï") == "%C3%9Cn%C3%AF"
    assert q(12) == "12"


def test_table_ref() -> None:
    assert table_ref("deriva-ml", "Execution_Asset") == "deriva-ml:Execution_Asset"
    assert table_ref("my schema", "T:1") == "my%20schema:T%3A1"


def test_any_filter() -> None:
    assert any_filter("MD5", ["a"]) == "MD5=a"
    assert any_filter("Filename", ["x,y.txt", "b(1).png"]) == "Filename=any(x%2Cy.txt,b%281%29.png)"


def test_split_keeps_order_drops_dupes_and_none() -> None:
    assert split_any_batches("c", ["b", "a", "b", None, "c"], 1000) == [["b", "a", "c"]]
    assert split_any_batches("c", [], 100) == []


def test_split_respects_budget() -> None:
    values = [f"value-{i:04d}" for i in range(500)]
    budget = 300
    batches = split_any_batches("Filename", values, budget)
    assert [v for b in batches for v in b] == values
    assert len(batches) > 1
    for b in batches:
        assert len(any_filter("Filename", b)) <= budget or len(b) == 1


def test_split_oversized_single_value_alone() -> None:
    big = "x" * 500
    assert split_any_batches("c", ["a", big, "b"], 100) == [["a"], [big], ["b"]]


@given(st.lists(st.text(min_size=1, max_size=40), max_size=60), st.integers(min_value=30, max_value=400))
def test_split_property(values: list[str], budget: int) -> None:
    batches = split_any_batches("col", values, budget)
    flat = [v for b in batches for v in b]
    assert flat == list(dict.fromkeys(values))  # every distinct value once, in order
    for b in batches:
        assert len(b) == 1 or len(f"col=any({','.join(q(v) for v in b)})") <= budget
        # the filter round-trips: splitting on the syntax commas then decoding gives the values
        inner = any_filter("col", b)
        parts = [inner.split("=", 1)[1]] if len(b) == 1 else inner[len("col=any("):-1].split(",")
        assert [unquote(p) for p in parts] == b


def test_insert_query() -> None:
    assert insert_query(None, (), True) == "?onconflict=skip"
    assert insert_query(["RCT", "RID"], ["RID2"], False) == "?defaults=RCT,RID&nondefaults=RID2"
    assert insert_query(["ID", "URI"], [], True) == "?defaults=ID,URI&onconflict=skip"
    assert insert_query([], [], False) == ""


def test_attributegroup_update_path() -> None:
    p = attributegroup_update_path("s", "T", ["RID"], ["Description", "Length"])
    assert p == "/attributegroup/s:T/RID;Description,Length"
    with pytest.raises(ValueError):
        attributegroup_update_path("s", "T", ["RID"], ["RID"])
    with pytest.raises(ValueError):
        attributegroup_update_path("s", "T", [], ["x"])


def test_paged_path() -> None:
    assert paged_path("/entity/s:T", None, 10) == "/entity/s:T@sort(RID)?limit=10"
    assert paged_path("/entity/s:T/A=1", "1-ABC", 5) == "/entity/s:T/A=1@sort(RID)@after(1-ABC)?limit=5"
    with pytest.raises(ValueError):
        paged_path("/entity/s:T?limit=3", None, 5)
