"""``/authn/session`` and the optional shared-token check for every request.

The embedded catalog is single-user: every caller is ``local:user``.  With a token
configured, callers must present it as ``Authorization: Bearer <token>`` or as the cookie
``webauthn=<token>`` (what deriva-py sends from a credential file); without one, 401 when
nothing was presented and 403 when the wrong thing was.  Logging in with a form POST
(``username``/``password``, password = token) returns the cookie, like webauthn.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

TOKEN_ENV = "DERIVA_UPLOAD_TOKEN"
COOKIE_NAME = "webauthn"
# Session lifetime reported to clients; sessions never really expire in the embedded catalog.
SESSION_SECONDS = 24 * 3600
# Cookie value handed out when no token is configured (any value is accepted then).
OPEN_COOKIE_VALUE = "local-session"
LOGIN_PATH = "/authn/session"

LOCAL_CLIENT: dict[str, Any] = {
    "id": "local:user",
    "display_name": "local user",
    "full_name": "Local User",
    "email": None,
    "identities": ["local:user"],
}


def presented_credential(headers: dict[bytes, bytes] | list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token or webauthn cookie in raw ASGI headers, if any."""
    auth = None
    cookie_header = None
    for k, v in headers:
        lk = k.lower()
        if lk == b"authorization":
            auth = v.decode("latin-1")
        elif lk == b"cookie":
            cookie_header = (cookie_header + "; " if cookie_header else "") + v.decode("latin-1")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if cookie_header:
        c = SimpleCookie()
        try:
            c.load(cookie_header)
        except Exception:  # noqa: BLE001 - a malformed cookie is just "no credential"
            return None
        if COOKIE_NAME in c:
            return c[COOKIE_NAME].value
    return None


def token_matches(token: str, presented: str) -> bool:
    return hmac.compare_digest(token.encode(), presented.encode())


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain")


class AuthMiddleware:
    """Sets ``scope["state"]["client"]`` and enforces the token when one is configured."""

    def __init__(self, app: Any, token: str | None = None) -> None:
        self.app = app
        self.token = token or None

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self.token is not None:
            presented = presented_credential(scope.get("headers", []))
            is_login = scope["path"] == LOGIN_PATH and scope["method"] == "POST"
            if not is_login:
                if presented is None:
                    await _plain(401, "Access requires authentication.")(scope, receive, send)
                    return
                if not token_matches(self.token, presented):
                    await _plain(403, "Access forbidden. Detail: invalid credentials.")(scope, receive, send)
                    return
        state["client"] = dict(LOCAL_CLIENT)
        await self.app(scope, receive, send)


def session_doc(client: dict) -> dict:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return {
        "client": client,
        "attributes": [{"id": client["id"], "display_name": client["display_name"], "identities": [client["id"]]}],
        "seconds_remaining": SESSION_SECONDS,
        "since": now.isoformat(sep=" "),
        "expires": (now + timedelta(seconds=SESSION_SECONDS)).isoformat(sep=" "),
        "vary_headers": ["cookie"],
        "tracking": None,
    }


def make_session_endpoint(token: str | None):  # type: ignore[no-untyped-def]
    """Starlette endpoint for ``/authn/session`` (GET session, POST login, DELETE logout)."""

    async def endpoint(request: Request) -> Response:
        client = (request.scope.get("state") or {}).get("client") or dict(LOCAL_CLIENT)
        if request.method in ("GET", "HEAD", "PUT"):
            return Response(json.dumps(session_doc(client)) + "\n", media_type="application/json")
        if request.method == "DELETE":
            resp = Response("", status_code=200)
            resp.delete_cookie(COOKIE_NAME, path="/")
            return resp
        # POST: form login
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        password = form.get("password", "")
        if token is not None:
            if not form.get("username") or not token_matches(token, password):
                return _plain(401, "Login failed.")
            value = token
        else:
            value = OPEN_COOKIE_VALUE
        resp = Response(json.dumps(session_doc(dict(LOCAL_CLIENT))) + "\n", media_type="application/json")
        resp.set_cookie(COOKIE_NAME, value, path="/", httponly=True, samesite="lax")
        return resp

    return endpoint
