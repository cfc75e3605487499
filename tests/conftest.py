"""Shared fixtures: the embedded catalog server and a fresh catalog per test.

``embedded_catalog`` (session): one server in a background thread over a temporary data
directory.  ``fresh_catalog`` (function): a new catalog id bootstrapped with the DerivaML
ML schema and the demo domain schema, plus a deriva-py credential file for its host so
``GenericUploader`` (which insists on credentials and an /authn session) works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from deriva_upload.catalog import EmbeddedCatalog

# Cookie value deriva-py clients present; any value works when the server has no token.
TEST_COOKIE_VALUE = "test-session"


@dataclass
class CatalogHandle:
    """One catalog on the shared embedded server, with what deriva-py needs to reach it."""

    server: EmbeddedCatalog
    catalog_id: str
    credential_file: Path

    @property
    def hostname(self) -> str:
        return self.server.hostname

    @property
    def scheme(self) -> str:
        return self.server.scheme

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def credentials(self) -> dict:
        value = self.server.token or TEST_COOKIE_VALUE
        return {"cookie": f"webauthn={value}"}

    @property
    def catalog_url(self) -> str:
        return f"{self.base_url}/ermrest/catalog/{self.catalog_id}"

    def ermrest_catalog(self):  # -> deriva.core.ErmrestCatalog
        from deriva.core import ErmrestCatalog

        return ErmrestCatalog(self.scheme, self.hostname, self.catalog_id, credentials=self.credentials)

    def hatrac_store(self):  # -> deriva.core.HatracStore
        from deriva.core import HatracStore

        return HatracStore(self.scheme, self.hostname, credentials=self.credentials)


def write_credential_file(path: Path, hostname: str, cookie_value: str) -> Path:
    """A deriva-py credential file (JSON keyed by host[:port], protocol §1.3)."""
    path.write_text(json.dumps({hostname: {"cookie": f"webauthn={cookie_value}"}}))
    return path


@pytest.fixture(scope="session")
def embedded_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCatalog]:
    data_dir = tmp_path_factory.mktemp("embedded-catalog")
    with EmbeddedCatalog(data_dir=data_dir, mode="thread") as cat:
        yield cat


@pytest.fixture
def fresh_catalog(embedded_catalog: EmbeddedCatalog, tmp_path: Path) -> Iterator[CatalogHandle]:
    cid = embedded_catalog.create_catalog()
    cred = write_credential_file(tmp_path / "credential.json", embedded_catalog.hostname, embedded_catalog.token or TEST_COOKIE_VALUE)
    yield CatalogHandle(embedded_catalog, cid, cred)
    try:
        embedded_catalog.delete_catalog(cid)
    except Exception:  # noqa: BLE001 - a test may have deleted it already
        pass
