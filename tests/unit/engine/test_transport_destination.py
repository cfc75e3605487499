"""Destination: scheme defaults, credential sources, secrets kept out of reprs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deriva.core import ErmrestCatalog

from deriva_upload.engine.destination import TOKEN_ENV_VAR, Destination, default_scheme
from deriva_upload.errors import ConfigError


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV_VAR, raising=False)


@pytest.mark.parametrize(
    "host,scheme",
    [("localhost", "http"), ("localhost:8080", "http"), ("127.0.0.1:9", "http"), ("[::1]:80", "http"),
     ("example.org", "https"), ("example.org:8443", "https"), ("localhost.example.org", "https")],
)
def test_default_scheme(host: str, scheme: str) -> None:
    assert default_scheme(host) == scheme


def write_creds(tmp_path: Path, doc: dict) -> str:
    path = tmp_path / "credential.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_for_host_reads_bearer_and_cookie(tmp_path: Path) -> None:
    f = write_creds(tmp_path, {"example.org": {"bearer-token": "BT"}, "localhost:8080": {"cookie": "webauthn=CK"}})
    d = Destination.for_host("example.org", 7, credential_file=f)
    assert (d.scheme, d.host, d.catalog_id) == ("https", "example.org", "7")
    assert d.auth_headers() == {"Authorization": "Bearer BT"}
    d2 = Destination.for_host("localhost:8080", "1", credential_file=f)
    assert d2.scheme == "http"
    assert d2.auth_headers() == {"Cookie": "webauthn=CK"}
    assert Destination.for_host("other.org", "1", credential_file=f).auth_headers() == {}


def test_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write_creds(tmp_path, {"example.org": {"bearer-token": "STORE"}})
    monkeypatch.setenv(TOKEN_ENV_VAR, "ENV")
    assert Destination.for_host("example.org", "1", credential_file=f).token == "ENV"
    assert Destination.for_host("example.org", "1", token="ARG", credential_file=f).token == "ARG"
    assert Destination.for_host("example.org", "1", scheme="http", credential_file=f).scheme == "http"


def test_missing_credential_file_means_anonymous(tmp_path: Path) -> None:
    d = Destination.for_host("example.org", "1", credential_file=str(tmp_path / "absent.json"))
    assert d.token is None and d.cookie is None


def test_key_is_stable_and_secret_free() -> None:
    a = Destination("https", "Example.org", "1", token="SECRET")
    b = Destination("https", "example.org", "1", cookie="webauthn=SECRET")
    assert a.key() == b.key() == "https://example.org/ermrest/catalog/1"
    assert Destination("http", "example.org", "1").key() != a.key()
    assert a.with_catalog("2").key().endswith("/catalog/2")
    for d in (a, b):
        assert "SECRET" not in repr(d) and "SECRET" not in str(d) and "SECRET" not in d.key()


def test_invalid_destination_rejected() -> None:
    with pytest.raises(ConfigError):
        Destination("ftp", "h", "1")
    with pytest.raises(ConfigError):
        Destination("https", "https://h", "1")
    with pytest.raises(ConfigError):
        Destination("https", "h", "")


def test_from_model_uses_catalog_scheme_and_credentials() -> None:
    # constructing an ErmrestCatalog does no network I/O
    cat = ErmrestCatalog("http", "localhost:5555", "3", credentials={"bearer-token": "BT"})

    class FakeDerivaModel:  # stands in for deriva_upload.model.DerivaModel: only .catalog is read
        catalog = cat
        hostname = "localhost:5555"

    d = Destination.from_model(FakeDerivaModel())
    assert (d.scheme, d.host, d.catalog_id, d.token) == ("http", "localhost:5555", "3", "BT")
    d2 = Destination.from_model(ErmrestCatalog("https", "example.org", "4", credentials={"cookie": "webauthn=X"}))
    assert (d2.scheme, d2.cookie) == ("https", "webauthn=X")


def test_from_model_without_credentials_reads_store(tmp_path: Path) -> None:
    f = write_creds(tmp_path, {"localhost:5555": {"cookie": "webauthn=STORED"}})
    cat = ErmrestCatalog("http", "localhost:5555", "3")
    d = Destination.from_model(cat, credential_file=f)
    assert d.cookie == "webauthn=STORED" and d.token is None
