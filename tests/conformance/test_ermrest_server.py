"""The embedded catalog as a server: tokens, /authn, request log, TLS, process mode, restarts."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from deriva.core import ErmrestCatalog, HatracStore, get_credential
from requests import HTTPError

from deriva_upload.catalog import EmbeddedCatalog, create_app

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def token_catalog(tmp_path_factory):  # type: ignore[no-untyped-def]
    log = tmp_path_factory.mktemp("log") / "requests.jsonl"
    with EmbeddedCatalog(data_dir=tmp_path_factory.mktemp("tokcat"), token=TOKEN, request_log=log) as cat:
        yield cat


@pytest.mark.parametrize("path", ["/ermrest/catalog/1/schema", "/hatrac/", "/authn/session", "/ermrest/catalog/1/entity/deriva-ml:File"])
def test_token_required_everywhere(token_catalog, path) -> None:  # type: ignore[no-untyped-def]
    url = token_catalog.base_url + path
    r = httpx.get(url)
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/plain")
    r = httpx.get(url, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/plain")
    r = httpx.get(url, cookies={"webauthn": "wrong"})
    assert r.status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401
    assert httpx.get(url, cookies={"webauthn": TOKEN}).status_code not in (401, 403)


def test_session_document(token_catalog) -> None:  # type: ignore[no-untyped-def]
    doc = httpx.get(token_catalog.base_url + "/authn/session", headers=token_catalog.auth_headers()).json()
    assert doc["client"]["id"] == "local:user" and doc["client"]["display_name"] == "local user"
    assert {"full_name", "email", "identities"} <= set(doc["client"])
    assert {"attributes", "seconds_remaining", "since", "expires", "vary_headers"} <= set(doc)


def test_form_login_sets_cookie(token_catalog) -> None:  # type: ignore[no-untyped-def]
    url = token_catalog.base_url + "/authn/session"
    assert httpx.post(url, data={"username": "me", "password": "nope"}).status_code == 401
    r = httpx.post(url, data={"username": "me", "password": TOKEN})
    assert r.status_code == 200 and r.cookies.get("webauthn") == TOKEN
    assert r.json()["client"]["id"] == "local:user"


@pytest.mark.parametrize(
    "credentials",
    [{"cookie": f"webauthn={TOKEN}"}, {"bearer-token": TOKEN}, {"username": "me", "password": TOKEN}],
    ids=["cookie", "bearer", "login"],
)
def test_deriva_py_credentials(token_catalog, credentials) -> None:  # type: ignore[no-untyped-def]
    cat = ErmrestCatalog(token_catalog.scheme, token_catalog.hostname, "1", credentials=credentials)
    assert "deriva-ml" in cat.getCatalogModel().schemas
    assert cat.get_authn_session().json()["client"]["id"] == "local:user"
    store = HatracStore(token_catalog.scheme, token_catalog.hostname, credentials=credentials)
    assert store.get_authn_session().status_code == 200


def test_deriva_py_credential_file(token_catalog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cred_file = tmp_path / "credential.json"
    cred_file.write_text(json.dumps({token_catalog.hostname: {"cookie": f"webauthn={TOKEN}"}}))
    cred = get_credential(token_catalog.hostname, credential_file=str(cred_file))
    assert ErmrestCatalog(token_catalog.scheme, token_catalog.hostname, "1", credentials=cred).exists()
    with pytest.raises(HTTPError) as e:
        ErmrestCatalog(token_catalog.scheme, token_catalog.hostname, "1", credentials={"cookie": "webauthn=bad"}).getCatalogModel()
    assert e.value.response.status_code == 403


def test_request_log_and_counter(token_catalog) -> None:  # type: ignore[no-untyped-def]
    before = token_catalog.request_count
    with token_catalog.http_client() as c:
        c.get("/ermrest/catalog/1/entity/deriva-ml:Asset_Role")
        c.post("/ermrest/catalog/1/entity/demo-schema:Subject?defaults=RID,RCT,RMT,RCB,RMB", content=b'[{"Name": "logged"}]', headers={"content-type": "application/json"})
    assert token_catalog.request_count == before + 2
    lines = [json.loads(x) for x in token_catalog.request_log.read_text().splitlines()]
    last = lines[-1]
    assert last["method"] == "POST" and last["status"] == 200
    assert last["path"] == "/ermrest/catalog/1/entity/demo-schema:Subject?defaults=RID,RCT,RMT,RCB,RMB"
    assert last["req_bytes"] == len(b'[{"Name": "logged"}]') and last["resp_bytes"] > 100
    assert {"t", "method", "path", "status", "req_bytes", "resp_bytes"} == set(last)
    assert lines[-2]["method"] == "GET" and lines[-2]["status"] == 200


def test_open_server_serves_everyone_as_local_user(embedded_catalog) -> None:  # type: ignore[no-untyped-def]
    doc = httpx.get(embedded_catalog.base_url + "/authn/session").json()
    assert doc["client"]["id"] == "local:user"
    r = httpx.post(embedded_catalog.base_url + "/authn/session", data={"username": "a", "password": "b"})
    assert r.status_code == 200 and r.cookies.get("webauthn")


def test_tcp_nodelay_is_set_on_accepted_sockets() -> None:
    """asyncio sets TCP_NODELAY on accepted sockets only when the listener's proto is TCP."""
    import asyncio

    from deriva_upload.catalog.server import bind_socket

    async def main() -> int:
        seen: list[int] = []

        async def handler(reader, writer):  # type: ignore[no-untyped-def]
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = bind_socket("127.0.0.1", 0)
        server = await asyncio.start_server(handler, sock=listener)
        _r, w = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        w.close()
        server.close()
        return seen[0]

    assert asyncio.run(main()) != 0


def test_data_survives_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "persist"
    with EmbeddedCatalog(data_dir=data_dir) as cat, cat.http_client() as c:
        cid = cat.create_catalog()
        first = c.post(f"/ermrest/catalog/{cid}/entity/demo-schema:Subject", json=[{"Name": "kept"}]).json()[0]
    with EmbeddedCatalog(data_dir=data_dir) as cat, cat.http_client() as c:
        rows = c.get(f"/ermrest/catalog/{cid}/entity/demo-schema:Subject").json()
        assert [r["Name"] for r in rows] == ["kept"]
        second = c.post(f"/ermrest/catalog/{cid}/entity/demo-schema:Subject", json=[{"Name": "next"}]).json()[0]
        from deriva_upload.catalog.ermrest.rid import rid_decode

        assert rid_decode(second["RID"]) > rid_decode(first["RID"])
        assert (data_dir / "catalog-1.sqlite").exists()


def test_process_mode_and_tls(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with EmbeddedCatalog(data_dir=tmp_path / "p", tls=True, mode="process", token=TOKEN) as cat:
        assert cat.scheme == "https" and cat.ca_file and Path(cat.ca_file).exists()
        r = httpx.get(cat.base_url + "/ermrest/catalog/1", verify=ssl.create_default_context(cafile=str(cat.ca_file)), headers=cat.auth_headers())
        assert r.status_code == 200 and r.json()["id"] == "1"
        with pytest.raises(httpx.ConnectError):
            httpx.get(cat.base_url + "/ermrest/catalog/1")  # not trusted without the CA
        # what the CLI tells users: point REQUESTS_CA_BUNDLE at the CA file, then deriva-py just works
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cat.ca_file))
        ec = ErmrestCatalog("https", cat.hostname, "1", credentials={"bearer-token": TOKEN})
        assert "deriva-ml" in ec.getCatalogModel().schemas
        ec._session.close()  # an idle TLS keep-alive connection would hold shutdown for the grace period
        assert cat.create_catalog() == "2"
    # the subprocess is gone and the port is free again
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", cat.port)) != 0


def test_busy_port_is_a_clear_error(embedded_catalog, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from deriva_upload.errors import ServerError

    with pytest.raises(ServerError, match="cannot listen"):
        EmbeddedCatalog(data_dir=tmp_path / "busy", port=embedded_catalog.port).start()


def test_create_app_is_a_plain_asgi_app(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    app = create_app(tmp_path / "asgi")

    async def main() -> tuple[int, dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            r = await client.get("/ermrest/catalog/1")
            rows = await client.get("/ermrest/catalog/1/entity/deriva-ml:Asset_Role")
            return rows.status_code, r.json()

    try:
        status, doc = asyncio.run(main())
    finally:
        app.state.registry.close()  # ASGITransport runs no lifespan
    assert status == 200 and doc["id"] == "1"
    assert app.state.request_count == 2
