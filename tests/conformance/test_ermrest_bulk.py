"""Bulk shapes the upload engine relies on: 1,000-row inserts and a few hundred MD5s in one any().

Throughput is measured by bench/catalog_bench.py, not asserted here (a shared CI machine
makes timed tests flaky); this test pins the behaviour at that size.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx

BATCH = 1000
RUNS = 3


def _rows(k: int) -> list[dict]:
    return [
        {"URL": f"/hatrac/File/{k}-{i}", "Filename": f"f{k}-{i}.txt", "Length": str(i), "MD5": f"{k:08x}{i:024x}",
         "Description": None}
        for i in range(BATCH)
    ]


def test_bulk_insert_skip_and_md5_lookup(fresh_catalog) -> None:  # type: ignore[no-untyped-def]
    base = f"{fresh_catalog.catalog_url}/entity/deriva-ml:File?defaults=RID,RCT,RMT,RCB,RMB"
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=60) as c:
        for k in range(RUNS):
            r = c.post(base, content=json.dumps(_rows(k)).encode(), headers=headers)
            assert r.status_code == 200 and len(r.json()) == BATCH
            assert [row["Filename"] for row in r.json()] == [f"f{k}-{i}.txt" for i in range(BATCH)]
        # the same batch again with onconflict=skip: nothing inserted, nothing duplicated
        r = c.post(base + "&onconflict=skip", content=json.dumps(_rows(0)).encode(), headers=headers)
        assert r.status_code == 200 and r.json() == []
        # without skip, the duplicate batch is refused whole
        assert c.post(base, content=json.dumps(_rows(1)).encode(), headers=headers).status_code == 409

        md5s = [f"{k:08x}{i:024x}" for k in range(RUNS) for i in range(0, BATCH, 7)]
        path = f"{fresh_catalog.catalog_url}/entity/deriva-ml:File/MD5=any({','.join(quote(m, safe='') for m in md5s)})"
        r = c.get(path)
        assert r.status_code == 200 and sorted(row["MD5"] for row in r.json()) == sorted(md5s)
        count = c.get(f"{fresh_catalog.catalog_url}/aggregate/deriva-ml:File/n:=cnt(*)").json()
        assert count == [{"n": RUNS * BATCH}]
