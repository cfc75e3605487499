"""ErmrestClient against the embedded catalog (real HTTP, fresh catalog per test)."""

from __future__ import annotations

import asyncio

import pytest

from deriva_upload.engine.destination import Destination
from deriva_upload.engine.ermrest import ErmrestClient
from deriva_upload.engine.retry import RetryPolicy
from deriva_upload.engine.transport import Transport
from deriva_upload.errors import ServerError

DOM, ML = "demo-schema", "deriva-ml"


def dest_of(handle) -> Destination:
    return Destination(handle.scheme, handle.hostname, handle.catalog_id, cookie=handle.credentials["cookie"])


def run_client(handle, fn):
    async def go():
        async with Transport(dest_of(handle), RetryPolicy(max_retries=1, backoff_initial=0.01)) as t:
            return await fn(ErmrestClient(t)), t.stats

    return asyncio.run(go())


def test_get_schema(fresh_catalog) -> None:
    doc, _ = run_client(fresh_catalog, lambda c: c.get_schema())
    assert {ML, DOM} <= set(doc["schemas"])
    assert "Execution_Image_Quality" in doc["schemas"][DOM]["tables"]


def test_insert_lookup_query_batches(fresh_catalog) -> None:
    names = [f"subject-{i:04d}-with-a-rather-long-name, (x)/y:z" for i in range(300)]

    async def go(c: ErmrestClient):
        inserted = await c.insert(DOM, "Subject", [{"Name": n} for n in names], batch_size=128)
        before = c.transport.stats.requests
        found = await c.lookup(DOM, "Subject", "Name", names + [None, names[0]])
        lookups = c.transport.stats.requests - before
        projected = await c.lookup(DOM, "Subject", "Name", names[:3], columns=["RID", "Name"])
        paged = await c.query(f"/entity/{DOM}:Subject", page_size=70)
        return inserted, found, lookups, projected, paged

    (inserted, found, lookups, projected, paged), stats = run_client(fresh_catalog, go)
    assert [r["Name"] for r in inserted] == names  # input order, full rows
    assert all(r["RID"] for r in inserted)
    assert sorted(r["Name"] for r in found) == sorted(names)
    # 300 long values cannot fit one 6 KB URL: several GETs, each under the limit
    assert 2 <= lookups <= 6
    assert sorted(projected, key=lambda r: r["Name"]) == sorted(
        ({"RID": r["RID"], "Name": r["Name"]} for r in inserted[:3]), key=lambda r: r["Name"])
    assert [r["RID"] for r in paged] == sorted(r["RID"] for r in inserted)
    assert stats.retries == 0


def test_onconflict_skip_reports_only_new_rows(fresh_catalog) -> None:
    async def go(c: ErmrestClient):
        again = await c.insert(DOM, "ImageQuality", [{"Name": "Good", "Description": "dup"},
                                                     {"Name": "Meh", "Description": "new"}], defaults=["ID", "URI"])
        return again, await c.lookup(DOM, "ImageQuality", "Name", ["Good", "Meh"])

    (again, rows), _ = run_client(fresh_catalog, go)
    assert [r["Name"] for r in again] == ["Meh"]
    assert sorted(r["Name"] for r in rows) == ["Good", "Meh"]
    assert {r["Name"]: r["Description"] for r in rows}["Good"] != "dup"


def test_insert_conflict_without_skip_is_server_error(fresh_catalog) -> None:
    async def go(c: ErmrestClient):
        with pytest.raises(ServerError) as info:
            await c.insert(DOM, "ImageQuality", [{"Name": "Good", "Description": "x"}], defaults=["ID", "URI"],
                           onconflict_skip=False)
        return info.value

    err, stats = run_client(fresh_catalog, go)
    assert err.status == 409 and stats.requests == 1


def test_update_counts_matches(fresh_catalog) -> None:
    async def go(c: ErmrestClient):
        rows = await c.insert(DOM, "Subject", [{"Name": "a"}, {"Name": "b"}])
        n = await c.update(DOM, "Subject", [{"RID": rows[0]["RID"], "Name": "A"},
                                            {"RID": rows[1]["RID"], "Name": "B"}], ["RID"], ["Name"])
        none = await c.update(DOM, "Subject", [{"RID": "1-ZZZZ", "Name": "nobody"}], ["RID"], ["Name"])
        after = await c.lookup(DOM, "Subject", "RID", [r["RID"] for r in rows])
        return n, none, after

    (n, none, after), _ = run_client(fresh_catalog, go)
    assert n == 2 and none == 0
    assert sorted(r["Name"] for r in after) == ["A", "B"]


def test_delete(fresh_catalog) -> None:
    async def go(c: ErmrestClient):
        rows = await c.insert(DOM, "Subject", [{"Name": "gone"}])
        first = await c.delete(f"/entity/{DOM}:Subject/RID={rows[0]['RID']}")
        second = await c.delete(f"/entity/{DOM}:Subject/RID={rows[0]['RID']}")
        return first, second, await c.lookup(DOM, "Subject", "Name", ["gone"])

    (first, second, left), _ = run_client(fresh_catalog, go)
    assert (first, second, left) == (True, False, [])


def test_lease_rids_and_insert_with_them(fresh_catalog) -> None:
    async def go(c: ErmrestClient):
        rids = await c.lease_rids(3)
        rows = await c.insert(DOM, "Subject", [{"RID": rids[0], "Name": "leased"}], nondefaults=["RID"])
        again = await c.insert(DOM, "Subject", [{"RID": rids[0], "Name": "leased"}], nondefaults=["RID"])
        return rids, rows, again

    (rids, rows, again), _ = run_client(fresh_catalog, go)
    assert len(set(rids)) == 3
    assert rows[0]["RID"] == rids[0] and rows[0]["Name"] == "leased"
    assert again == []  # the RID key makes the retried insert a no-op


def test_unknown_table_is_server_error(fresh_catalog) -> None:
    async def go(c: ErmrestClient):
        with pytest.raises(ServerError) as info:
            await c.lookup(DOM, "Nope", "Name", ["x"])
        return info.value

    err, _ = run_client(fresh_catalog, go)
    assert err.status in (404, 409) and "Nope" in str(err)
