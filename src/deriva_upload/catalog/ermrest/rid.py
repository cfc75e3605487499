"""RID and snaptime codec: ERMrest's URL-friendly Crockford base32 (protocol §3.11).

A RID is ``crockford_base32(n << 1)`` of a 64-bit sequence value padded to 65 bits
(13 symbols), grouped in fours from the right with ``-`` and stripped of leading
``0``/``-``.  Snaptimes use the same encoding of epoch microseconds.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# 65 bits / 5 bits per symbol: the widest value ERMrest ever emits.
MAX_SYMBOLS = 13
MAX_VALUE = (1 << 64) - 1
_DECODE = {c: i for i, c in enumerate(ALPHABET)}
_DECODE.update({"O": 0, "I": 1, "L": 1})


def rid_encode(n: int) -> str:
    """Encode a non-negative 64-bit integer as an ERMrest RID string.

    Equivalent to padding to 13 symbols, grouping by 4 from the right and stripping
    leading ``0``/``-``, but only the significant symbols are produced (this runs once
    per inserted row).
    """
    if not isinstance(n, int) or n < 0 or n > MAX_VALUE:
        raise ValueError(f"RID value out of range: {n!r}")
    v = n << 1
    if v == 0:
        return "0"
    symbols = []
    while v:
        symbols.append(ALPHABET[v & 31])
        v >>= 5
    text = "".join(reversed(symbols))
    head = len(text) % 4
    groups = [text[:head]] if head else []
    groups.extend(text[i : i + 4] for i in range(head, len(text), 4))
    return "-".join(groups)


def rid_decode(rid: str) -> int:
    """Decode a RID (case-insensitive, ``-`` ignored, O->0, I/L->1); ValueError when invalid."""
    if not isinstance(rid, str):
        raise ValueError(f"invalid RID {rid!r}")
    text = rid.replace("-", "").upper()
    if not text or len(text) > MAX_SYMBOLS:
        raise ValueError(f"invalid RID {rid!r}")
    v = 0
    for c in text:
        d = _DECODE.get(c)
        if d is None:
            raise ValueError(f"invalid RID {rid!r}")
        v = (v << 5) | d
    if v >> 65:
        raise ValueError(f"invalid RID {rid!r}")
    return v >> 1


def snaptime_encode(epoch_microseconds: int) -> str:
    """Snaptimes share the RID encoding, applied to microseconds since the epoch."""
    return rid_encode(epoch_microseconds)
