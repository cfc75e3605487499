"""Where an upload goes and with which credentials.

A ``Destination`` is a small immutable value: scheme, host (``host[:port]``, exactly
as deriva-py and its credential store spell it), catalog id, and the secrets needed to
talk to it. Secrets never appear in ``repr``/``str`` so a destination can be logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from deriva_upload.errors import ConfigError

#: Environment variable holding a bearer token; overrides the credential store.
TOKEN_ENV_VAR = "DERIVA_UPLOAD_TOKEN"

# Hosts where plain http is the sensible default (local test servers); everything
# else defaults to https like deriva-py.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _bare_host(host: str) -> str:
    """Host name without port (handles ``[::1]:8080``)."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def default_scheme(host: str) -> str:
    """``http`` for loopback hosts, ``https`` otherwise."""
    return "http" if _bare_host(host).lower() in _LOCAL_HOSTS else "https"


@dataclass(frozen=True)
class Destination:
    """One catalog (ERMrest + the Hatrac on the same host) plus credentials."""

    scheme: str
    host: str
    catalog_id: str
    token: str | None = field(default=None, repr=False)
    cookie: str | None = field(default=None, repr=False)
    verify: bool | str = True

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https"):
            raise ConfigError(f"destination scheme must be 'http' or 'https', got {self.scheme!r}")
        if not self.host or "/" in self.host:
            raise ConfigError(f"destination host must be 'name[:port]' without a scheme or path, got {self.host!r}")
        object.__setattr__(self, "catalog_id", str(self.catalog_id))
        if not self.catalog_id:
            raise ConfigError("destination catalog id is empty")

    # -- constructors ----------------------------------------------------------------

    @classmethod
    def for_host(cls, host: str, catalog_id: str | int, token: str | None = None, scheme: str | None = None,
                 *, verify: bool | str = True, credential_file: str | None = None) -> Destination:
        """Destination for ``host`` with credentials from the usual places.

        Token precedence: the ``token`` argument, then ``$DERIVA_UPLOAD_TOKEN``, then
        deriva-py's credential store (``bearer-token``; a ``cookie`` entry is sent as a
        Cookie header). The store is keyed by the exact ``host[:port]`` string.
        """
        cookie: str | None = None
        if token is None:
            token = os.environ.get(TOKEN_ENV_VAR) or None
        if token is None:
            cred = _stored_credential(host, credential_file)
            token = cred.get("bearer-token") or None
            cookie = cred.get("cookie") or None
        return cls(scheme or default_scheme(host), host, str(catalog_id), token, cookie, verify)

    @classmethod
    def from_model(cls, model: Any, *, token: str | None = None, credential_file: str | None = None) -> Destination:
        """Destination of the catalog behind a ``DerivaModel`` (or an ``ErmrestCatalog``).

        Takes scheme, host and credentials from deriva-py's binding, so whatever the user
        configured for deriva-py (including plain http, seed quirk 13) is used as is.
        """
        catalog = getattr(model, "catalog", model)
        scheme = getattr(catalog, "_scheme", None)
        host = getattr(catalog, "_server", None)
        catalog_id = getattr(catalog, "catalog_id", None) or getattr(catalog, "_catalog_id", None)
        if not (scheme and host and catalog_id is not None):
            server = getattr(catalog, "deriva_server", None)
            scheme = scheme or getattr(server, "scheme", None)
            host = host or getattr(server, "server", None) or getattr(model, "hostname", None)
        if not (scheme and host and catalog_id is not None):
            raise ConfigError("cannot tell the catalog's scheme/host/id from the model; pass dest= explicitly")
        creds = getattr(catalog, "_credentials", None) or {}
        cookie: str | None = None
        if token is None:
            token = os.environ.get(TOKEN_ENV_VAR) or creds.get("bearer-token") or None
            cookie = creds.get("cookie") or _session_cookie(catalog)
            if not (token or cookie or creds):
                # A binding made without credentials: use the store, as DerivaML itself does
                # (``get_credential(host)``) before it connects.
                stored = _stored_credential(str(host), credential_file)
                token = stored.get("bearer-token") or None
                cookie = stored.get("cookie") or None
        verify = _session_verify(catalog)
        return cls(str(scheme), str(host), str(catalog_id), token, cookie, verify)

    # -- derived values --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``scheme://host`` (the Hatrac and /authn base)."""
        return f"{self.scheme}://{self.host}"

    @property
    def catalog_path(self) -> str:
        """``/ermrest/catalog/<id>`` (path prefix of every ERMrest request)."""
        from urllib.parse import quote

        return f"/ermrest/catalog/{quote(self.catalog_id, safe='')}"

    def key(self) -> str:
        """Stable identity of the destination (no secrets): keys the journal."""
        return f"{self.scheme}://{self.host.lower()}/ermrest/catalog/{self.catalog_id}"

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the credentials (empty for anonymous / default user)."""
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers

    def with_catalog(self, catalog_id: str | int) -> Destination:
        """Same host and credentials, another catalog."""
        return Destination(self.scheme, self.host, str(catalog_id), self.token, self.cookie, self.verify)

    def __str__(self) -> str:
        return self.key()


def _stored_credential(host: str, credential_file: str | None) -> dict[str, str]:
    """The deriva-py credential entry for ``host`` ({} when none or unreadable)."""
    try:
        if credential_file is not None:
            from deriva.core import read_credential

            creds = read_credential(credential_file, create_default=False) or {}
            return dict(creds.get(host, creds.get(host.lower(), {})) or {})
        from deriva.core import get_credential

        # No Globus lookup: it can reach the network; a bearer token in the deriva
        # credential file or $DERIVA_UPLOAD_TOKEN covers token users.
        return dict(get_credential(host, globus_credential_file=None) or {})
    except Exception:  # noqa: BLE001 — a broken/missing credential file means "anonymous"
        return {}


def _session_cookie(catalog: Any) -> str | None:
    """A ``webauthn`` cookie deriva-py obtained at login (username/password credentials)."""
    session = getattr(catalog, "_session", None)
    jar = getattr(session, "cookies", None)
    if jar is None:
        return None
    try:
        value = jar.get("webauthn")
    except Exception:  # noqa: BLE001 — several cookies of that name: ambiguous, skip
        return None
    return f"webauthn={value}" if value else None


def _session_verify(catalog: Any) -> bool | str:
    """TLS verification setting of deriva-py's session (a CA bundle path or a bool)."""
    session = getattr(catalog, "_session", None)
    verify = getattr(session, "verify", True)
    return verify if isinstance(verify, (bool, str)) else True
