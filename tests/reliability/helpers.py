"""What the reliability tests ask the catalog afterwards, and how they start an upload.

Server-side facts are read over the public HTTP interface (rows, object digests,
versions) or from the embedded catalog's request log (JSON lines: ``t``, ``method``,
``path``, ``status``, ``req_bytes``, ``resp_bytes``), never from the uploader's own
report, so a test cannot pass by trusting the code under test.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from deriva_upload.engine.destination import Destination
from tests.support.trees import LocalFile

SCHEMA = "demo-schema"
TABLE = "Image"
# File names that trip up naive uploaders (URL syntax, encodings, hidden files, length).
AWKWARD_NAMES = {
    "spaces": "scan 01 final.png",
    "unicode": "Zellkern_\u00fc\u00df_\u7d30\u80de_\U0001f52c.tif",
    "hash": "a#b.png",
    "percent": "100%_done%20.png",
    "semicolon": "obj;upload.png",
    "question": "why?.png",
    "leading-dot": ".hidden.png",
    "colon": "t:12:00.png",
    "very-long": ("L" * 240) + ".png",
    "no-extension": "README",
    "multi-ext": "model.tar.gz",
}
# Rows per page when reading a whole table (ERMrest pages with @sort(RID)@after()).
PAGE = 5000


@dataclass(frozen=True)
class LogLine:
    t: float
    method: str
    path: str
    status: int
    req_bytes: int
    resp_bytes: int


def read_request_log(path: Path) -> list[LogLine]:
    """Every complete line of the catalog's JSON-lines request log."""
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        out.append(LogLine(d["t"], d["method"], d["path"], int(d["status"]), int(d.get("req_bytes", 0)),
                           int(d.get("resp_bytes", 0))))
    return out


def count_log(lines: Iterable[LogLine], method: str | None = None, path: str | None = None,
              status: int | None = None) -> int:
    return sum(1 for ln in lines
               if (method is None or ln.method == method) and (path is None or re.search(path, ln.path))
               and (status is None or ln.status == status))


def destination(hostname: str, catalog_id: str) -> Destination:
    return Destination("http", hostname, str(catalog_id))


class CatalogView:
    """Read-only view of one catalog over HTTP (direct to the server, not via a proxy)."""

    def __init__(self, base_url: str, catalog_id: str) -> None:
        self.base_url = base_url
        self.catalog_id = str(catalog_id)
        self.client = httpx.Client(base_url=base_url, timeout=60.0, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> CatalogView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self, schema: str = SCHEMA, table: str = TABLE) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = ""
        while True:
            url = (f"/ermrest/catalog/{self.catalog_id}/entity/{quote(schema, safe='')}:{quote(table, safe='')}"
                   f"@sort(RID){after}?limit={PAGE}")
            r = self.client.get(url, headers={"Accept": "application/json"})
            r.raise_for_status()
            page = r.json()
            out.extend(page)
            if len(page) < PAGE:
                return out
            after = f"@after({quote(str(page[-1]['RID']), safe='')})"

    def head(self, url: str) -> httpx.Response:
        return self.client.head(url, headers={"Accept-Encoding": "identity"})

    def versions(self, url: str) -> list[str]:
        """Versions of the object named by ``url`` (version suffix ignored)."""
        name = url.split(":", 1)[0]
        r = self.client.get(f"{name};versions", headers={"Accept": "application/json"})
        r.raise_for_status()
        return list(r.json())

    def get_bytes(self, url: str) -> bytes:
        r = self.client.get(url)
        r.raise_for_status()
        return r.content


def b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


@dataclass
class Check:
    """Server-side facts about an upload of ``files``."""

    rows: int
    files: int
    missing: list[str]
    duplicates: int
    digest_mismatches: list[str]
    extra_versions: int

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "files": self.files, "missing": len(self.missing), "duplicates": self.duplicates,
                "digest_mismatches": len(self.digest_mismatches), "extra_versions": self.extra_versions}


def check_catalog(view: CatalogView, files: Sequence[LocalFile], *, check_objects: bool = True,
                  check_versions: bool = False, schema: str = SCHEMA, table: str = TABLE) -> Check:
    """Rows per file (exactly one expected), and every object's server digests vs the local file."""
    rows = view.rows(schema, table)
    by_key = Counter((r["MD5"], r["Filename"]) for r in rows)
    row_of = {(r["MD5"], r["Filename"]): r for r in rows}
    missing = [str(f.path) for f in files if by_key[(f.md5, f.path.name)] == 0]
    duplicates = sum(n - 1 for n in by_key.values() if n > 1)
    mismatches: list[str] = []
    extra_versions = 0
    for f in files:
        row = row_of.get((f.md5, f.path.name))
        if row is None:
            continue
        if row["Length"] != f.size:
            mismatches.append(f"{f.path.name}: row Length {row['Length']} != {f.size}")
        if check_objects:
            h = view.head(row["URL"])
            if h.status_code != 200:
                mismatches.append(f"{f.path.name}: HEAD {row['URL']} -> {h.status_code}")
            elif (h.headers.get("Content-MD5") != b64(f.md5) or h.headers.get("Content-SHA256") != b64(f.sha256)
                  or int(h.headers.get("Content-Length", -1)) != f.size):
                mismatches.append(f"{f.path.name}: server digests differ from the local file")
        if check_versions:
            extra_versions += len(view.versions(row["URL"])) - 1
    return Check(len(rows), len(files), missing, duplicates, mismatches, extra_versions)


def model_and_spec(hostname: str, catalog_id: str, chunk_size: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The catalog's ``DerivaModel`` (fetched with deriva-py) and the upload spec built from it."""
    from deriva.core import ErmrestCatalog

    from deriva_upload.model import DerivaModel
    from deriva_upload.spec import bulk_upload_configuration

    model = DerivaModel.from_catalog(ErmrestCatalog("http", hostname, str(catalog_id)))
    return model, bulk_upload_configuration(model, chunk_size=chunk_size)


def open_job_count(cat: Any) -> int:
    """Upload jobs open in the embedded catalog's Hatrac store (server-side fact)."""
    from deriva_upload.catalog.hatrac_store import open_jobs

    return open_jobs(Path(cat.data_dir) / "hatrac")
