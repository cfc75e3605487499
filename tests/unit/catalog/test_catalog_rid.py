"""RID / snaptime codec (protocol §3.11)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deriva_upload.catalog.ermrest.rid import MAX_VALUE, rid_decode, rid_encode, snaptime_encode


@pytest.mark.parametrize(
    "n, rid",
    [(1, "2"), (1000, "1YG"), (524288, "1-0000"), (1048575, "1-ZZZY"), (2**31, "400-0000"), (0, "0")],
)
def test_known_values(n: int, rid: str) -> None:
    assert rid_encode(n) == rid
    assert rid_decode(rid) == n


def test_snaptime_matches_ermrest_example() -> None:
    # 2018-06-18T23:43:47.096206Z from the protocol reference
    assert snaptime_encode(1529365427096206) == "2PX-WS30-E58W"


def test_decode_is_lenient_like_crockford() -> None:
    assert rid_decode("1yg") == 1000
    assert rid_decode("1-zzzy") == rid_decode("1ZZZY") == 1048575
    assert rid_decode("O2") == rid_decode("02") == 1
    assert rid_decode("I0") == rid_decode("L0") == rid_decode("10")


@pytest.mark.parametrize("bad", ["", "U", "1-2-3-4-5-6-7-8-9-A-B-C-D-E", "ab$c", "ZZZZZZZZZZZZZZ"])
def test_decode_rejects_invalid(bad: str) -> None:
    with pytest.raises(ValueError):
        rid_decode(bad)


@pytest.mark.parametrize("bad", [-1, MAX_VALUE + 1])
def test_encode_rejects_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError):
        rid_encode(bad)


@given(st.integers(min_value=0, max_value=MAX_VALUE))
def test_roundtrip_and_shape(n: int) -> None:
    rid = rid_encode(n)
    assert rid_decode(rid) == n
    assert rid_decode(rid.lower()) == n
    # last symbol is always even (the padding bit) and groups of 4 from the right
    assert rid == "0" or "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(rid[-1]) % 2 == 0
    groups = rid.split("-")
    assert all(len(g) == 4 for g in groups[1:])
    assert 1 <= len(groups[0]) <= 4
    assert not rid.startswith("0") or rid == "0"


@given(st.integers(min_value=0, max_value=MAX_VALUE - 1))
def test_order_preserved_for_same_length(n: int) -> None:
    a, b = rid_encode(n), rid_encode(n + 1)
    if len(a) == len(b):
        assert a < b
