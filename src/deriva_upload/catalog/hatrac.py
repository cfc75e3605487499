"""HTTP layer of the embedded Hatrac: a raw ASGI app speaking the protocol deriva-py uses.

Mounted at ``/hatrac`` by the catalog app.  It parses ``scope["raw_path"]`` itself
(``;upload`` and ``;versions`` must survive, percent-escapes must stay escaped),
checks names, streams bodies and maps :class:`HatracError` to plain-text answers.
All bytes and rows are handled by :mod:`deriva_upload.catalog.hatrac_store`.

It is raw ASGI rather than Starlette routes because a small PUT must cost as little
as possible (the target is >= 1,000 PUT/s on two cores).

Public: :func:`create_hatrac_app` (the app), :func:`open_jobs` (count of open upload
jobs, for tests), and the pure parsers (:func:`parse_target`, :func:`parse_name`,
:func:`parse_digest`, :func:`parse_etags`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from starlette.concurrency import run_in_threadpool

from deriva_upload.catalog.hatrac_store import (
    ANY,
    INLINE_MAX_BYTES,
    IO_BLOCK,
    HatracError,
    JobInfo,
    NewVersion,
    ObjectStore,
    VersionInfo,
    b64,
    new_id,
    open_jobs,
)

__all__ = ["create_hatrac_app", "open_jobs", "parse_target", "parse_name", "parse_digest", "parse_etags", "Target",
           "HatracApp", "HATRAC_PREFIX", "FSYNC_ENV"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HATRAC_PREFIX = "/hatrac"
NAMESPACE_TYPE = "application/x-hatrac-namespace"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_OWNER = "local:user"
# Set to "0" to skip fsync of object data and SQLite commits (faster, not crash-safe).
FSYNC_ENV = "DERIVA_UPLOAD_HATRAC_FSYNC"
# The reference Hatrac refuses single PUTs above 128 MiB; bigger objects use upload jobs.
MAX_PUT_BYTES = 128 * 1024 * 1024
# PUT bodies up to this size are collected in memory: up to INLINE_MAX_BYTES they go
# into their SQLite row with no thread hop, above it into a file with one worker-thread
# call; bigger bodies stream to a temp file block by block.
INLINE_BODY_BYTES = 1024 * 1024
# Hashing/reading this little costs less in the event loop than a thread hop (and
# objects this small are stored in their SQLite row, see hatrac_store).
LOOP_WORK_BYTES = INLINE_MAX_BYTES
# Largest object an upload job may declare: far above any ML output we expect, and
# well below ext4's 16 TiB file limit (the part file is preallocated sparse).
MAX_OBJECT_BYTES = 1024**4
# Job-creation JSON documents are a few hundred bytes; refuse anything absurd.
MAX_JSON_BYTES = 64 * 1024
# On an early error we still read (and discard) a body up to this size, so the client
# gets our answer instead of a reset connection; above it we close the connection.
DRAIN_LIMIT = 256 * 1024 * 1024

_SEGMENT = re.compile(r"(?:[-._~A-Za-z0-9]|%[0-9A-Fa-f]{2})+")
_ID = re.compile(r"[A-Za-z0-9]+")
_DISPOSITION = re.compile(r"filename\*=UTF-8''[-_.~A-Za-z0-9%]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,1024}")


# ---------------------------------------------------------------------------- parsing (pure)
@dataclass(frozen=True)
class Target:
    """What a request path addresses: ``name[:version][;sub[/job[/chunk]]]``."""

    name: str                 # '' (root) or '/ns/obj', percent-encoded as sent
    version: str | None = None
    sub: str | None = None    # None, 'versions' or 'upload'
    job: str | None = None
    chunk: str | None = None  # raw chunk number text (validated by the handler)

    @property
    def url(self) -> str:
        return HATRAC_PREFIX + self.name


def parse_name(path: str) -> str:
    """Validate a name path ('' or '/a/b', relative to /hatrac) and return it.

    Only ``[-._~A-Za-z0-9]`` and ``%XX`` are allowed in segments; ``.``/``..``, empty
    segments and escapes that decode to ``/``, NUL, ``.`` or ``..`` are refused (400).
    """
    if path in ("", "/"):
        return ""
    if not path.startswith("/"):
        raise HatracError(400, f"Invalid name {path!r}: must start with '/'.")
    if path.endswith("/"):
        path = path[:-1]  # '/ns/' addresses the namespace '/ns'
    for seg in path[1:].split("/"):
        if not seg:
            raise HatracError(400, f"Invalid name {path!r}: empty path segment.")
        if not _SEGMENT.fullmatch(seg):
            raise HatracError(400, f"Invalid name {path!r}: only [-._~A-Za-z0-9] and %XX escapes are allowed.")
        raw = unquote_to_bytes(seg)
        if raw in (b".", b"..") or b"/" in raw or b"\\" in raw or b"\x00" in raw:
            raise HatracError(400, f"Invalid name {path!r}: segment {seg!r} is not allowed.")
    return path


def parse_target(path: str) -> Target:
    """Split a /hatrac-relative raw path into name, version and sub-resource."""
    name_part, sep, sub = path.partition(";")
    name_part, colon, version = name_part.partition(":")
    name = parse_name(name_part)
    if colon:
        if not _ID.fullmatch(version) or not name:
            raise HatracError(400, f"Invalid version in {path!r}.")
    if not sep:
        return Target(name, version or None)
    if not name:
        raise HatracError(400, f"Invalid path {path!r}: the root has no sub-resources.")
    if colon:
        raise HatracError(400, f"Invalid path {path!r}: sub-resources of versions are not supported.")
    parts = sub.split("/")
    kind = parts[0]
    if kind == "versions" and len(parts) == 1:
        return Target(name, None, "versions")
    if kind == "upload" and len(parts) <= 3:
        job = parts[1] if len(parts) > 1 else None
        if len(parts) == 2 and job == "":
            job = None  # 'obj;upload/' lists jobs like 'obj;upload'
        elif job is not None and not _ID.fullmatch(job):
            raise HatracError(400, f"Invalid upload job id in {path!r}.")
        return Target(name, None, "upload", job, parts[2] if len(parts) == 3 else None)
    raise HatracError(400, f"Sub-resource ;{sub} is not supported by this server.")


def parse_digest(value: str, algorithm: str) -> bytes:
    """Decode a Content-MD5 / Content-SHA256 value given in base64 or hex (400 otherwise)."""
    size = hashlib.new(algorithm).digest_size
    value = value.strip()
    if len(value) == 2 * size and _HEX.fullmatch(value):
        return bytes.fromhex(value)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise HatracError(400, f"Invalid {algorithm} digest {value!r}: expected base64 or hex of {size} bytes.")
    return raw


def parse_etags(value: str | None) -> str | frozenset[str] | None:
    """An If-Match / If-None-Match header: None, ANY ('*') or the version ids it lists.

    Our ETags are ``"<version>"``; weak validators (``W/``) compare the same.
    """
    if value is None:
        return None
    if value.strip() == "*":
        return ANY
    tags = set()
    for item in value.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        tags.add(item.strip('"'))
    return frozenset(tags)


def check_disposition(value: str) -> str:
    if not _DISPOSITION.fullmatch(value):
        raise HatracError(400, f"Invalid Content-Disposition {value!r}: expected filename*=UTF-8''<name>.")
    return value


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range -> (start, end exclusive); None means 'send it all'.

    Malformed specs and multi-ranges are ignored (RFC 9110 allows serving the whole
    object); a well-formed range outside the object raises 416.
    """
    unit, _, spec = value.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    first, last = first.strip(), last.strip()
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or first == last == "":
        return None
    if first == "":
        n = int(last)
        if n == 0:
            raise HatracError(416, f"Unsatisfiable range {value!r} for {size} bytes.")
        return max(0, size - n), size
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise HatracError(416, f"Unsatisfiable range {value!r} for {size} bytes.")
    return start, size if last == "" else min(size, int(last) + 1)


def _prefers_uri_list(accept: str) -> bool:
    best: tuple[float, str] = (-1.0, "application/json")
    for i, item in enumerate(accept.split(",")):
        mtype, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if mtype in ("text/uri-list", "application/json") and q > best[0]:
            best = (q, mtype)
    return best[1] == "text/uri-list"


# ---------------------------------------------------------------------------- ASGI plumbing
class _Request:
    """The bits of an ASGI request the handlers need, plus body bookkeeping."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self._receive = receive
        self.body_done = False
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", ()):
            headers[k.decode("latin-1").lower()] = v.decode("latin-1")
        self.headers = headers
        self.query = parse_qs(scope.get("query_string", b"").decode("latin-1"))

    def flag(self, key: str) -> bool:
        return self.query.get(key, ["false"])[-1].lower() == "true"

    @property
    def owner(self) -> str:
        state = self.scope.get("state") or {}
        client = state.get("client") if isinstance(state, dict) else getattr(state, "client", None)
        if isinstance(client, dict) and client.get("id"):
            return str(client["id"])
        return DEFAULT_OWNER

    def content_length(self, required: bool = True) -> int | None:
        value = self.headers.get("content-length")
        if value is None:
            if required:
                raise HatracError(411, "Content-Length header is required.")
            return None
        if not value.isdigit():
            raise HatracError(400, f"Invalid Content-Length {value!r}.")
        return int(value)

    async def pieces(self):
        """Yield the request body as it arrives."""
        while not self.body_done:
            msg = await self._receive()
            if msg["type"] == "http.disconnect":
                self.body_done = True
                raise _Disconnected()
            if not msg.get("more_body", False):
                self.body_done = True
            body = msg.get("body", b"")
            if body:
                yield body

    async def read(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        async for piece in self.pieces():
            total += len(piece)
            if total > limit:
                raise HatracError(413, f"Request body larger than {limit} bytes.")
            parts.append(piece)
        return b"".join(parts)

    async def drain(self) -> bool:
        """Discard an unread body so the connection stays usable; False if too big."""
        if self.body_done:
            return True
        length = self.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > DRAIN_LIMIT):
            return False
        total = 0
        try:
            async for piece in self.pieces():
                total += len(piece)
                if total > DRAIN_LIMIT:
                    return False
        except _Disconnected:
            return False
        return True


class _Disconnected(Exception):
    """The client went away mid-body; nothing to answer."""


def _h(name: str, value: str) -> tuple[bytes, bytes]:
    return name.encode("latin-1"), value.encode("latin-1")


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"",
                   length: int | None = None) -> None:
    if status not in (204, 304):
        headers.append((b"content-length", str(len(body) if length is None else length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _text(send: Send, status: int, message: str, close: bool = False) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if close:
        headers.append((b"connection", b"close"))
    await _respond(send, status, headers, (message.rstrip("\n") + "\n").encode("utf-8"))


async def _uri_created(send: Send, url: str) -> None:
    await _respond(send, 201, [_h("location", url), (b"content-type", b"text/uri-list")],
                   (url + "\n").encode("latin-1"))


async def _json(send: Send, doc: Any, status: int = 200) -> None:
    await _respond(send, status, [(b"content-type", b"application/json")],
                   (json.dumps(doc) + "\n").encode("utf-8"))


# ---------------------------------------------------------------------------- the app
class HatracApp:
    """ASGI callable serving one :class:`ObjectStore`."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def close(self) -> None:
        """Stop the store's commit thread (the app is mounted, so it gets no lifespan events)."""
        self.store.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websockets of our own
        req = _Request(scope, receive)
        try:
            target = self._target(scope)
            await self._dispatch(req, target, send)
        except HatracError as e:
            ok = await req.drain()
            await _text(send, e.status or 400, e.message, close=not ok)
        except _Disconnected:
            return
        except FileNotFoundError:
            # Deleted by a concurrent request between look-up and open.
            ok = await req.drain()
            await _text(send, 404, "Resource not found.", close=not ok)

    @staticmethod
    def _target(scope: Scope) -> Target:
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise HatracError(400, "Invalid name: only [-._~A-Za-z0-9] and %XX escapes are allowed.") from None
        path = urlsplit(text).path
        if path == HATRAC_PREFIX or path.startswith(HATRAC_PREFIX + "/"):
            path = path[len(HATRAC_PREFIX):]
        return parse_target(path)

    async def _dispatch(self, req: _Request, t: Target, send: Send) -> None:
        m = req.method
        if t.sub is None:
            if t.version is not None:
                if m in ("GET", "HEAD"):
                    return await self._get_object(req, t, send)
                if m == "DELETE":
                    await run_in_threadpool(self.store.delete_version, t.name, t.version)
                    return await _respond(send, 204, [])
            elif m in ("GET", "HEAD"):
                info = self.store.lookup(t.name)
                if info is not None and not info[1] and info[0] == "ns":
                    return await self._list_namespace(req, t, send)
                return await self._get_object(req, t, send)
            elif m == "PUT":
                ctype = req.headers.get("content-type", "")
                if ctype.split(";")[0].strip().lower() == NAMESPACE_TYPE:
                    return await self._create_namespace(req, t, send)
                return await self._put_object(req, t, send)
            elif m == "DELETE":
                await run_in_threadpool(self.store.delete_name, t.name)
                return await _respond(send, 204, [])
        elif t.sub == "versions":
            if m in ("GET", "HEAD"):
                urls = [f"{t.url}:{v}" for v in self.store.list_versions(t.name)]
                return await _json(send, urls)
        elif t.job is None:
            if m in ("GET", "HEAD"):
                urls = [f"{t.url};upload/{j}" for j in self.store.list_jobs(t.name)]
                return await _json(send, urls)
            if m == "POST":
                return await self._create_job(req, t, send)
        elif t.chunk is None:
            if m in ("GET", "HEAD"):
                return await _json(send, _job_doc(self.store.get_job(t.name, t.job)))
            if m == "POST":
                self.store.get_job(t.name, t.job)  # 404 before any work
                await run_in_threadpool(self.store.finalize_job, t.name, t.job, req.owner)
                return await _uri_created(send, f"{t.url}:{t.job}")
            if m == "DELETE":
                await run_in_threadpool(self.store.cancel_job, t.name, t.job)
                return await _respond(send, 204, [])
        elif m == "PUT":
            return await self._put_chunk(req, t, send)
        raise HatracError(405, f"Method {m} not allowed on {req.scope.get('path', t.url)}.")

    # ------------------------------------------------------------------ namespaces
    async def _create_namespace(self, req: _Request, t: Target, send: Send) -> None:
        if req.content_length(required=False):
            raise HatracError(400, "A namespace PUT must have an empty body.")
        await req.drain()
        await run_in_threadpool(self.store.create_namespace, t.name, req.flag("parents"), req.owner)
        await _uri_created(send, t.url)

    async def _list_namespace(self, req: _Request, t: Target, send: Send) -> None:
        children = [HATRAC_PREFIX + c for c in self.store.list_namespace(t.name)]
        if _prefers_uri_list(req.headers.get("accept", "")):
            body = "".join(c + "\n" for c in children).encode("latin-1")
            return await _respond(send, 200, [(b"content-type", b"text/uri-list")], _body_for(req, body),
                                  len(body))
        body = (json.dumps(children) + "\n").encode("latin-1")
        await _respond(send, 200, [(b"content-type", b"application/json")], _body_for(req, body), len(body))

    # ------------------------------------------------------------------ objects
    async def _put_object(self, req: _Request, t: Target, send: Send) -> None:
        if not t.name:
            raise HatracError(409, "The root namespace cannot be replaced by an object.")
        length = req.content_length()
        if length > MAX_PUT_BYTES:
            raise HatracError(413, f"Object of {length} bytes is larger than the {MAX_PUT_BYTES} bytes allowed "
                                   "for one PUT; use a chunked upload job.")
        h = req.headers
        ctype = h.get("content-type") or DEFAULT_CONTENT_TYPE
        disposition = check_disposition(h["content-disposition"]) if "content-disposition" in h else None
        want_md5 = parse_digest(h["content-md5"], "md5") if "content-md5" in h else None
        want_sha = parse_digest(h["content-sha256"], "sha256") if "content-sha256" in h else None
        store = self.store
        meta_args = dict(name=t.name, parents=req.flag("parents"), owner=req.owner, content_type=ctype,
                         disposition=disposition, if_match=parse_etags(h.get("if-match")),
                         if_none_match=parse_etags(h.get("if-none-match")))
        if length <= INLINE_BODY_BYTES:  # the commit checks the name; nothing big to waste
            data = await req.read(length)
            _check_length(len(data), length)
            if length <= INLINE_MAX_BYTES:
                # No thread hop, no file: hash here, then wait for the group commit.
                md5, sha = hashlib.md5(data).digest(), hashlib.sha256(data).digest()
                _verify(md5, sha, want_md5, want_sha, 400)
                version = await store.put_inline(NewVersion(md5=md5, sha256=sha, **meta_args), data,
                                                 asyncio.get_running_loop().create_future())
            else:
                md5, sha = await run_in_threadpool(_digests, data)
                _verify(md5, sha, want_md5, want_sha, 400)
                version = await run_in_threadpool(store.put_bytes, NewVersion(md5=md5, sha256=sha, **meta_args),
                                                  data)
        else:
            store.precheck_object(t.name, meta_args["parents"])  # refuse before streaming megabytes
            sink = _TempSink(store.new_temp(), store.durable)
            try:
                buf: list[bytes] = []
                size = 0
                async for piece in req.pieces():
                    buf.append(piece)
                    size += len(piece)
                    if size >= IO_BLOCK:
                        await run_in_threadpool(sink.write, b"".join(buf))
                        buf, size = [], 0
                if buf:
                    await run_in_threadpool(sink.write, b"".join(buf))
                await run_in_threadpool(sink.close)
                _check_length(sink.size, length)
                md5, sha = sink.md5.digest(), sink.sha256.digest()
                _verify(md5, sha, want_md5, want_sha, 400)
                version = await run_in_threadpool(
                    store.commit_file, NewVersion(md5=md5, sha256=sha, **meta_args), new_id(), sink.path, sink.size)
            except BaseException:
                sink.discard()
                raise
        await _uri_created(send, f"{t.url}:{version}")

    async def _get_object(self, req: _Request, t: Target, send: Send) -> None:
        if not t.name:
            raise HatracError(409, "The root is a namespace.")
        info = self.store.get_version(t.name, t.version)
        headers = _object_headers(info)
        tags = parse_etags(req.headers.get("if-none-match"))
        if tags is not None and (tags == ANY or info.version in tags):
            return await _respond(send, 304, [_h("etag", f'"{info.version}"'),
                                              _h("content-location", f"{HATRAC_PREFIX}{info.name}:{info.version}")])
        start, end, status = 0, info.size, 200
        rng = req.headers.get("range")
        if rng is not None and info.size > 0:
            try:
                r = parse_range(rng, info.size)
            except HatracError as e:
                return await _respond(send, 416, [(b"content-type", b"text/plain; charset=utf-8"),
                                                  _h("content-range", f"bytes */{info.size}")],
                                      _body_for(req, (e.message + "\n").encode()), len(e.message) + 1)
            if r is not None:
                start, end = r
                status = 206
                headers.append(_h("content-range", f"bytes {start}-{end - 1}/{info.size}"))
        count = end - start
        headers.append((b"content-length", str(count).encode()))
        if req.method == "HEAD":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if info.inline:
            body = self.store.read_inline(info.version)[start:end]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if count <= LOOP_WORK_BYTES:
            fd = os.open(info.path, os.O_RDONLY)
            try:
                body = os.pread(fd, count, start)
            finally:
                os.close(fd)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        fd = os.open(info.path, os.O_RDONLY)  # open before answering: a deletion now cannot bite
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            pos = start
            while pos < end:
                block = await run_in_threadpool(os.pread, fd, min(IO_BLOCK, end - pos), pos)
                if not block:
                    break  # cannot happen for a committed file; end the body rather than hang
                pos += len(block)
                await send({"type": "http.response.body", "body": block, "more_body": pos < end})
            if pos < end:
                await send({"type": "http.response.body", "body": b""})
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ upload jobs
    async def _create_job(self, req: _Request, t: Target, send: Send) -> None:
        raw = await req.read(MAX_JSON_BYTES)
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            raise HatracError(400, "Upload job request body must be a JSON object.") from None
        if not isinstance(doc, dict):
            raise HatracError(400, "Upload job request body must be a JSON object.")
        chunk_length = _int_field(doc, "chunk-length", "chunk_bytes")
        content_length = _int_field(doc, "content-length", "total_bytes")
        if not 0 < chunk_length <= MAX_OBJECT_BYTES:
            raise HatracError(400, f"Field chunk-length must be an integer from 1 to {MAX_OBJECT_BYTES}.")
        if not 0 <= content_length <= MAX_OBJECT_BYTES:
            raise HatracError(400, f"Field content-length must be an integer from 0 to {MAX_OBJECT_BYTES}.")
        md5_text = _str_field(doc, "content-md5", "content_md5")
        sha_text = _str_field(doc, "content-sha256", "content_sha256")
        ctype = _header_safe(_str_field(doc, "content-type", "content_type") or DEFAULT_CONTENT_TYPE,
                             "content-type")
        disposition = _str_field(doc, "content-disposition", "content_disposition")
        job = await run_in_threadpool(
            self.store.create_job, t.name, req.flag("parents"), req.owner, chunk_length,
            content_length, ctype, parse_digest(md5_text, "md5") if md5_text else None,
            parse_digest(sha_text, "sha256") if sha_text else None,
            check_disposition(disposition) if disposition else None)
        await _uri_created(send, f"{t.url};upload/{job}")

    async def _put_chunk(self, req: _Request, t: Target, send: Send) -> None:
        assert t.job is not None and t.chunk is not None
        if not t.chunk.isdigit():
            raise HatracError(400, f"Invalid chunk number {t.chunk!r}.")
        n = int(t.chunk)
        length = req.content_length()
        info = self.store.get_job(t.name, t.job)
        if n >= info.chunk_count:
            raise HatracError(409, f"Uploaded chunk number {n} out of range.")
        if length != info.chunk_size(n):
            raise HatracError(409, f"Chunk {n} must be {info.chunk_size(n)} bytes, not {length}.")
        writer = await run_in_threadpool(self.store.chunk_begin, info, n)
        try:
            buf: list[bytes] = []
            size = 0
            async for piece in req.pieces():
                buf.append(piece)
                size += len(piece)
                if size >= IO_BLOCK:
                    await run_in_threadpool(writer.write, b"".join(buf))
                    buf, size = [], 0
            if buf:
                await run_in_threadpool(writer.write, b"".join(buf))
        except BaseException:
            writer.abort()
            raise
        await run_in_threadpool(writer.finish)
        await _respond(send, 204, [])


# ---------------------------------------------------------------------------- helpers
def _body_for(req: _Request, body: bytes) -> bytes:
    return b"" if req.method == "HEAD" else body


def _digests(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.md5(data).digest(), hashlib.sha256(data).digest()


def _check_length(got: int, declared: int) -> None:
    if got != declared:
        raise HatracError(400, f"Received {got} bytes; Content-Length declared {declared}.")


def _verify(md5: bytes, sha: bytes, want_md5: bytes | None, want_sha: bytes | None, status: int) -> None:
    if want_md5 is not None and md5 != want_md5:
        raise HatracError(status, f"Received content MD5 {b64(md5)} does not match expected {b64(want_md5)}.")
    if want_sha is not None and sha != want_sha:
        raise HatracError(status, f"Received content SHA256 {b64(sha)} does not match expected "
                                  f"{b64(want_sha)}.")


def _object_headers(info: VersionInfo) -> list[tuple[bytes, bytes]]:
    basename = info.name.rsplit("/", 1)[-1]
    return [
        _h("content-type", info.content_type),
        _h("content-md5", b64(info.md5)),
        _h("content-sha256", b64(info.sha256)),
        _h("content-location", f"{HATRAC_PREFIX}{info.name}:{info.version}"),
        _h("content-disposition", info.disposition or f"filename*=UTF-8''{basename}"),
        _h("etag", f'"{info.version}"'),
        (b"accept-ranges", b"bytes"),
    ]


def _job_doc(info: JobInfo) -> dict[str, Any]:
    url = f"{HATRAC_PREFIX}{info.name};upload/{info.job}"
    doc: dict[str, Any] = {
        "url": url,
        "target": HATRAC_PREFIX + info.name,
        "owner": [info.owner],
        "chunk-length": info.chunk_length,
        "content-length": info.content_length,
        "content-type": info.content_type,
        "content-md5": b64(info.md5) if info.md5 is not None else None,
        "content-sha256": b64(info.sha256) if info.sha256 is not None else None,
    }
    if info.disposition:
        doc["content-disposition"] = info.disposition
    return doc


def _int_field(doc: dict[str, Any], key: str, alias: str) -> int:
    value = doc.get(key, doc.get(alias))
    if value is None:
        raise HatracError(400, f"Upload job field {key} is required.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise HatracError(400, f"Upload job field {key} must be an integer.")
    return value


def _header_safe(value: str, field: str) -> str:
    """A JSON string we will later send as a header: printable ASCII only."""
    if not _HEADER_VALUE.fullmatch(value):
        raise HatracError(400, f"Upload job field {field} must be printable ASCII.")
    return value


def _str_field(doc: dict[str, Any], key: str, alias: str) -> str | None:
    value = doc.get(key, doc.get(alias))
    if value is not None and not isinstance(value, str):
        raise HatracError(400, f"Upload job field {key} must be a string.")
    return value


class _TempSink:
    """A temp file in the store that hashes what it is given (worker-thread methods)."""

    def __init__(self, path: Path, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.size = 0
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        assert self.fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.md5.update(data)
        self.sha256.update(data)
        self.size += len(data)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def create_hatrac_app(root: Path, durable: bool | None = None) -> HatracApp:
    """The Hatrac ASGI app storing objects under ``root`` (created if missing).

    ``durable`` (default: on, or the ``DERIVA_UPLOAD_HATRAC_FSYNC`` environment
    variable when it is "0"/"1") fsyncs object data and SQLite commits before a 201.
    """
    if durable is None:
        durable = os.environ.get(FSYNC_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    return HatracApp(ObjectStore(Path(root), durable=durable))
