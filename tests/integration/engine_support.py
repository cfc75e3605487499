"""Helpers shared by the engine and api integration tests (a catalog per test, tree builders)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from deriva_upload.engine.destination import Destination
from deriva_upload.model import DerivaModel
from deriva_upload.spec import bulk_upload_configuration

EXEC = "1-EXE"
DOMAIN = "demo-schema"
ML = "deriva-ml"


@dataclass
class Target:
    """One fresh catalog of the embedded server, with its model and spec."""

    server: Any
    catalog_id: str
    dest: Destination
    model: DerivaModel

    def spec(self, chunk_size: int | None = None) -> dict:
        return bulk_upload_configuration(self.model, chunk_size=chunk_size)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, timeout=30)

    def rows(self, schema: str, table: str) -> list[dict]:
        with self.client() as c:
            r = c.get(f"/ermrest/catalog/{self.catalog_id}/entity/{quote(schema, safe='')}:{quote(table, safe='')}")
            r.raise_for_status()
            return r.json()

    def insert(self, schema: str, table: str, rows: list[dict]) -> list[dict]:
        with self.client() as c:
            r = c.post(f"/ermrest/catalog/{self.catalog_id}/entity/{quote(schema, safe='')}:{quote(table, safe='')}",
                       json=rows)
            r.raise_for_status()
            return r.json()

    def head(self, url: str) -> httpx.Response:
        with self.client() as c:
            return c.head(url, headers={"Accept-Encoding": "identity"})

    def versions(self, url: str) -> list[str]:
        with self.client() as c:
            r = c.get(url.split(":", 1)[0] + ";versions", headers={"Accept": "application/json"})
            r.raise_for_status()
            return r.json()


def make_target(server: Any) -> Target:
    from deriva.core import ErmrestCatalog

    cid = server.create_catalog()
    catalog = ErmrestCatalog(server.scheme, server.hostname, cid)
    model = DerivaModel.from_catalog(catalog)
    dest = Destination(server.scheme, server.hostname, cid)
    return Target(server, cid, dest, model)


def write(root: Path, rel: str, data: bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def asset_rel(table: str, *segments: str, schema: str = DOMAIN, exec_rid: str = EXEC) -> str:
    return "/".join(["deriva-ml", "execution", exec_rid, "asset", schema, table, *segments])


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()

