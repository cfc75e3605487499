"""HTTP handlers for ``/ermrest``: catalogs, the model API and the data APIs.

Routing works on ``scope["raw_path"]`` (percent-encoded) so ERMrest syntax characters are
split before literals are decoded.  Database work runs in worker threads so one slow
request never blocks the event loop (and Hatrac transfers) of the server.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from typing import Any, Callable
from urllib.parse import unquote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from . import data
from .errors import BadRequest, ErmrestError, Forbidden, MethodNotAllowed, NotFound, UnsupportedMediaType
from .model import ModelEditor, ModelState
from .store import CatalogStore, Registry, snapshot
from .types import csv_text
from .urlparse import DATA_APIS, decode_literal, parse_catalog_route, parse_data_request, split_names

log = logging.getLogger(__name__)

# Largest request body we accept (JSON/CSV entity input, model documents).  Large enough
# for big CSV table files, small enough that a runaway client cannot exhaust memory.
MAX_BODY_BYTES = 256 * 1024 * 1024
JSON_CT = "application/json"
STREAM_CT = "application/x-json-stream"
CSV_CT = "text/csv"
LOCAL_CLIENT = {"id": "local:user", "display_name": "local user", "full_name": "Local User", "email": None}


def error_response(e: ErmrestError) -> Response:
    return Response(e.body(), status_code=e.status, media_type="text/plain")


def json_response(doc: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":")) + "\n"
    return Response(body, status_code=status, media_type=JSON_CT, headers=headers)


def query_params(raw_qs: bytes) -> dict[str, str]:
    """Parse the query string without turning '+' into spaces; values stay raw (undecoded)."""
    out: dict[str, str] = {}
    for part in raw_qs.decode("latin-1").split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out[unquote(k)] = v
    return out


def name_list(raw: str | None) -> set[str]:
    if not raw:
        return set()
    return set(split_names(raw))


class ErmrestApp:
    """ASGI app for ``/ermrest/...`` over a :class:`Registry`."""

    def __init__(self, registry: Registry, bootstrap: Callable[[CatalogStore, str], None] | None = None) -> None:
        self.registry = registry
        self.bootstrap = bootstrap
        # bootstrap kind -> in-memory copy of a freshly bootstrapped catalog (same for every copy)
        self._templates: dict[str, Any] = {}
        self._template_lock = threading.Lock()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except ErmrestError as e:
            response = error_response(e)
        except Exception as e:  # noqa: BLE001 - never let a bug look like a transient 5xx loop
            log.exception("ermrest handler failed")
            response = Response(f"Internal server error. Detail: {type(e).__name__}: {e}\n", status_code=500, media_type="text/plain")
        await response(scope, receive, send)

    # ------------------------------------------------------------------
    async def read_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BadRequest(f"Request body exceeds {MAX_BODY_BYTES} bytes.")
        chunks = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise BadRequest(f"Request body exceeds {MAX_BODY_BYTES} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(self, request: Request, allow_empty: bool = False) -> Any:
        body = await self.read_body(request)
        if not body.strip():
            if allow_empty:
                return None
            raise BadRequest("Request body must be a JSON document.")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"Malformed JSON input: {str(e)[:200]}") from None

    async def dispatch(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        raw = raw_path.decode("latin-1")
        route = parse_catalog_route(raw)
        method = request.method
        if route.catalog_id is None:
            if method == "POST":
                return await self.create_catalog(request)
            raise MethodNotAllowed()
        store = self.registry.open.get(route.catalog_id) or await to_thread.run_sync(self.registry.get, route.catalog_id)
        if route.rest is None or route.rest == "":
            if method in ("GET", "HEAD"):
                return json_response(self.catalog_doc(store))
            if method == "DELETE":
                await to_thread.run_sync(self.registry.delete, route.catalog_id)
                return Response(status_code=204)
            raise MethodNotAllowed()
        if route.snapshot and method not in ("GET", "HEAD"):
            raise Forbidden("Snapshots are read-only.")
        api_raw, sep, tail = route.rest.partition("/")
        api = decode_literal(api_raw)
        client = (request.scope.get("state") or {}).get("client") or LOCAL_CLIENT
        if api == "schema":
            return await self.model_api(request, store, tail if sep else None)
        if api in ("annotation", "acl"):
            return await self.catalog_subresource(request, store, api, tail if sep else None)
        if api in DATA_APIS:
            return await self.data_api(request, store, api, tail, client)
        if api == "entity_rid":
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed()
            rid = decode_literal(tail.strip("/"))
            doc = await to_thread.run_sync(data.resolve_rid, store, rid)
            return json_response(doc)
        raise NotFound(f"Unknown catalog resource {api!r}.")

    # ------------------------------------------------------------------ catalogs
    def catalog_doc(self, store: CatalogStore) -> dict:
        m = store.model.doc
        return {
            "id": store.id,
            "snaptime": store.snaptime,
            "annotations": m.get("annotations", {}),
            "rights": {"owner": True, "create": True},
            "features": {},
            "acls": m.get("acls", {}) or {"owner": [LOCAL_CLIENT["id"]]},
            "is_persistent": True,
        }

    async def create_catalog(self, request: Request) -> Response:
        doc = await self.read_json(request, allow_empty=True) or {}
        if not isinstance(doc, dict):
            raise BadRequest("Catalog creation input must be a JSON object.")
        if doc.get("clone_source") is not None:
            raise BadRequest("clone_source is not supported by the embedded catalog.")
        # Non-standard extension: ?bootstrap=none|deriva-ml|demo (default "none": an empty
        # catalog with only the ERMrest public tables, like real ERMrest)
        params = query_params(request.scope.get("query_string", b""))
        kind = decode_literal(params.get("bootstrap", "")) or "none"
        requested = doc.get("id")

        def work() -> str:
            with self._template_lock:
                template = self._templates.get(kind)
                store = self.registry.create(str(requested) if requested is not None else None, template=template)
                if template is None and self.bootstrap is not None:
                    try:
                        self.bootstrap(store, kind)
                    except Exception:
                        self.registry.delete(store.id)
                        raise
                    self._templates[kind] = snapshot(store)
            return store.id

        cid = await to_thread.run_sync(work)
        return Response(
            json.dumps({"id": cid}),
            status_code=201,
            media_type=JSON_CT,
            headers={"Location": f"/ermrest/catalog/{cid}"},
        )

    async def catalog_subresource(self, request: Request, store: CatalogStore, kind: str, tail: str | None) -> Response:
        field = "annotations" if kind == "annotation" else "acls"
        key = decode_literal(tail) if tail else None
        method = request.method
        if method in ("GET", "HEAD"):
            cur = store.model.doc.get(field, {})
            if key is None:
                return json_response(cur)
            if key not in cur:
                raise NotFound(f"{kind} {key} not found.")
            return json_response(cur[key])
        if method in ("PUT", "DELETE"):
            value = await self.read_json(request) if method == "PUT" else None

            def edit(ed: ModelEditor) -> None:
                _edit_mapping(ed.doc, field, key, method, value, kind, f"Catalog {field}")

            await to_thread.run_sync(store.edit_model, edit)
            return Response(status_code=204)
        raise MethodNotAllowed()

    # ------------------------------------------------------------------ model
    async def model_api(self, request: Request, store: CatalogStore, tail: str | None) -> Response:
        method = request.method
        tail = (tail or "").rstrip("/")
        segs = tail.split("/") if tail else []
        if not segs:
            if method in ("GET", "HEAD"):
                return Response(store.model.schema_json(store.snaptime), media_type=JSON_CT)
            if method == "POST":
                body = await self.read_json(request)
                return await self.create_schemas(store, body)
            raise MethodNotAllowed()
        names = [decode_literal(s) for s in segs]
        sname = names[0]
        # subresources: annotation/comment/acl/acl_binding after an element path
        sub_at = _subresource_index(names)
        if sub_at is not None:
            return await self.element_subresource(request, store, segs[:sub_at], names[sub_at:])
        if len(segs) == 1:
            return await self.element(request, store, ("schema", sname))
        if names[1] != "table":
            raise NotFound(f"Unknown model resource {names[1]!r}.")
        if len(segs) == 2:
            if method == "POST":
                body = await self.read_json(request)
                doc = await to_thread.run_sync(store.edit_model, lambda ed: ed.create_table(sname, body))
                return json_response(doc, 201)
            if method in ("GET", "HEAD"):
                return json_response(list(_model_schema(store.model, sname)["tables"].values()))
            raise MethodNotAllowed()
        tname = names[2]
        if len(segs) == 3:
            return await self.element(request, store, ("table", sname, tname))
        part = names[3]
        if part == "column":
            if len(segs) == 4:
                return await self.collection(request, store, sname, tname, "column")
            if len(segs) == 5:
                return await self.element(request, store, ("column", sname, tname, names[4]))
        elif part == "key":
            if len(segs) == 4:
                return await self.collection(request, store, sname, tname, "key")
            if len(segs) == 5:
                return await self.element(request, store, ("key", sname, tname, split_names(segs[4])))
        elif part == "foreignkey":
            if len(segs) == 4:
                return await self.collection(request, store, sname, tname, "foreignkey")
            if len(segs) == 8 and names[5] == "reference":
                return await self.element(request, store, _element_path(segs))
        raise NotFound("Unknown model resource.")

    async def create_schemas(self, store: CatalogStore, body: Any) -> Response:
        if isinstance(body, dict) and isinstance(body.get("schemas"), dict):
            docs = []
            for name, sdoc in body["schemas"].items():
                sdoc = dict(sdoc or {})
                sdoc.setdefault("schema_name", name)
                docs.append(sdoc)
            wrap = True
        elif isinstance(body, list):
            docs, wrap = body, False
        else:
            raise BadRequest("Schema creation input must be a list of schema documents or {\"schemas\": {...}}.")

        def work(ed: ModelEditor) -> list[dict]:
            return [ed.create_schema(d) for d in docs]

        created = await to_thread.run_sync(store.edit_model, work)
        if wrap:
            return json_response({"schemas": {d["schema_name"]: d for d in created}}, 201)
        return json_response(created, 201)

    async def collection(self, request: Request, store: CatalogStore, sname: str, tname: str, part: str) -> Response:
        method = request.method
        if method in ("GET", "HEAD"):
            t = _model_table(store.model, sname, tname)
            key = {"column": "column_definitions", "key": "keys", "foreignkey": "foreign_keys"}[part]
            return json_response(t[key])
        if method != "POST":
            raise MethodNotAllowed()
        body = await self.read_json(request)
        if part == "column":
            doc = await to_thread.run_sync(store.edit_model, lambda ed: ed.create_column(sname, tname, body))
            return json_response(doc, 201)
        if part == "key":
            doc = await to_thread.run_sync(store.edit_model, lambda ed: ed.create_key(sname, tname, body))
            return json_response(doc, 201)
        items = body if isinstance(body, list) else [body]
        docs = await to_thread.run_sync(store.edit_model, lambda ed: [ed.create_fkey(sname, tname, d) for d in items])
        return json_response(docs, 201)

    async def element(self, request: Request, store: CatalogStore, path: tuple) -> Response:
        method = request.method
        if method in ("GET", "HEAD"):
            return json_response(_lookup(ModelEditorView(store.model), path))
        if method == "PUT":
            body = await self.read_json(request)
            doc = await to_thread.run_sync(store.edit_model, lambda ed: _alter(ed, path, body))
            return json_response(doc)
        if method == "DELETE":
            await to_thread.run_sync(store.edit_model, lambda ed: _drop(ed, path))
            return Response(status_code=204)
        if method == "POST" and path[0] == "schema":
            # POST /schema/S (no body) creates an empty schema
            await to_thread.run_sync(store.edit_model, lambda ed: ed.create_schema({"schema_name": path[1]}))
            return Response(status_code=201)
        raise MethodNotAllowed()

    async def element_subresource(self, request: Request, store: CatalogStore, raw_segs: list[str], sub: list[str]) -> Response:
        path = _element_path(raw_segs)
        kind = sub[0]
        key = sub[1] if len(sub) > 1 else None
        if len(sub) > 2:
            raise NotFound("Unknown model subresource.")
        field = {"annotation": "annotations", "comment": "comment", "acl": "acls", "acl_binding": "acl_bindings"}[kind]
        method = request.method
        if method in ("GET", "HEAD"):
            doc = _lookup(ModelEditorView(store.model), path)
            if field not in doc:
                raise NotFound(f"{kind} not found.")
            val = doc[field]
            if key is not None:
                if not isinstance(val, dict) or key not in val:
                    raise NotFound(f"{kind} {key} not found.")
                val = val[key]
            if field == "comment":
                return Response((val or "") + "\n" if val else "", media_type="text/plain")
            return json_response(val)
        if method not in ("PUT", "DELETE"):
            raise MethodNotAllowed()
        if method == "PUT":
            if field == "comment":
                value: Any = (await self.read_body(request)).decode("utf-8", "replace")
                try:
                    value = json.loads(value) if value.strip().startswith('"') else value
                except ValueError:
                    pass
            else:
                value = await self.read_json(request)
        else:
            value = None

        def edit(ed: ModelEditor) -> None:
            doc = _lookup(ed, path)
            if field == "comment":
                doc["comment"] = value
                return
            _edit_mapping(doc, field, key, method, value, kind, kind)

        await to_thread.run_sync(store.edit_model, edit)
        return Response(status_code=204)

    # ------------------------------------------------------------------ data
    async def data_api(self, request: Request, store: CatalogStore, api: str, tail: str, client: dict) -> Response:
        req = parse_data_request(api, tail)
        params = query_params(request.scope.get("query_string", b""))
        method = request.method
        if method in ("GET", "HEAD"):
            limit = _limit(params.get("limit"))
            fmt = _negotiate(request, params, None)

            def work() -> Response:
                # query and serialize off the event loop (large results take a while)
                cols, tuples, outcols = data.select(store, req, limit)
                return _format_rows(fmt, cols, tuples, outcols, params)

            return await to_thread.run_sync(work)
        if method == "POST":
            if api != "entity":
                raise MethodNotAllowed()
            onconflict = decode_literal(params.get("onconflict", "abort"))
            if onconflict not in ("abort", "skip"):
                raise BadRequest(f"Invalid onconflict value {onconflict!r}.")
            defaults = name_list(params.get("defaults"))
            nondefaults = name_list(params.get("nondefaults"))
            ctype = (request.headers.get("content-type") or JSON_CT).split(";")[0].strip().lower()
            if ctype not in (CSV_CT, JSON_CT, STREAM_CT):
                raise UnsupportedMediaType(f"Unsupported input type {ctype}.")
            body = await self.read_body(request)

            def work() -> tuple[Any, list[dict]]:
                # parse and insert in one worker-thread hop
                header = None
                if ctype == CSV_CT:
                    header, csv_rows = data.parse_csv(body)
                    rows = [dict(zip(header, r)) for r in csv_rows]
                else:
                    rows = data.parse_json_rows(body, ctype == STREAM_CT)
                return data.insert(store, req, rows, defaults, nondefaults, onconflict == "skip", client, header)

            table, out = await to_thread.run_sync(work)
            in_fmt = {CSV_CT: "csv", JSON_CT: "json", STREAM_CT: "stream"}[ctype]
            fmt = _negotiate(request, params, in_fmt)
            return _format_dicts(fmt, out, [c.name for c in table.columns], table)
        if method == "PUT":
            ctype = (request.headers.get("content-type") or JSON_CT).split(";")[0].strip().lower()
            body = await self.read_body(request)
            if ctype == CSV_CT:
                header, csv_rows = await to_thread.run_sync(data.parse_csv, body)
                rows = [dict(zip(header, r)) for r in csv_rows]
            elif ctype in (JSON_CT, STREAM_CT):
                rows = await to_thread.run_sync(data.parse_json_rows, body, ctype == STREAM_CT)
            else:
                raise UnsupportedMediaType(f"Unsupported input type {ctype}.")
            if api == "entity":
                table, out = await to_thread.run_sync(data.upsert, store, req, rows, client)
                return _format_dicts(_negotiate(request, params, "json"), out, [c.name for c in table.columns], table)
            if api == "attributegroup":
                out = await to_thread.run_sync(data.update_attributegroup, store, req, rows, client)
                return json_response(out)
            raise MethodNotAllowed()
        if method == "DELETE":
            if api == "entity":
                await to_thread.run_sync(data.delete_entities, store, req)
                return Response(status_code=204)
            if api == "attribute":
                await to_thread.run_sync(data.clear_attributes, store, req, client)
                return Response(status_code=204)
            raise MethodNotAllowed()
        raise MethodNotAllowed()


# ----------------------------------------------------------------------------- helpers

_SUBRESOURCES = ("annotation", "comment", "acl", "acl_binding")


def _subresource_index(names: list[str]) -> int | None:
    """Position of annotation/comment/acl/acl_binding after a schema/table/column/key/fkey path."""
    n = len(names)
    for i in (1, 3, 5, 8):
        if i < n and names[i] in _SUBRESOURCES and n - i <= 2:
            if i == 1:
                return i
            if names[1] != "table":
                return None
            if i == 3 or (i == 5 and names[3] in ("column", "key")) or (i == 8 and names[3] == "foreignkey"):
                return i
    return None


def _table_pair(raw: str) -> tuple[str, str]:
    parts = raw.split(":")
    if len(parts) != 2:
        raise BadRequest("Referenced table must be written S:T.")
    return decode_literal(parts[0]), decode_literal(parts[1])


def _element_path(raw_segs: list[str]) -> tuple:
    names = [decode_literal(s) for s in raw_segs]
    if len(names) == 1:
        return ("schema", names[0])
    if len(names) == 3 and names[1] == "table":
        return ("table", names[0], names[2])
    if len(names) == 5 and names[3] == "column":
        return ("column", names[0], names[2], names[4])
    if len(names) == 5 and names[3] == "key":
        return ("key", names[0], names[2], split_names(raw_segs[4]))
    if len(names) == 8 and names[3] == "foreignkey" and names[5] == "reference":
        rs, rt = _table_pair(raw_segs[6])
        return ("fkey", names[0], names[2], (split_names(raw_segs[4]), rs, rt, split_names(raw_segs[7])))
    raise NotFound("Unknown model resource.")


class ModelEditorView(ModelEditor):
    """Read-only lookups over a model state without copying the document."""

    def __init__(self, state: ModelState) -> None:  # noqa: D401 - no deep copy for reads
        self.doc = state.doc
        self.old = state


def _lookup(ed: ModelEditor, path: tuple) -> dict:
    kind = path[0]
    if kind == "schema":
        return ed.schema_doc(path[1])
    if kind == "table":
        return ed.table_doc(path[1], path[2])
    if kind == "column":
        return ed.column_doc(path[1], path[2], path[3])
    if kind == "key":
        return ed.key_doc(path[1], path[2], path[3])
    if kind == "fkey":
        return ed.fkey_doc(path[1], path[2], *path[3])
    raise NotFound("Unknown model resource.")  # pragma: no cover


def _alter(ed: ModelEditor, path: tuple, body: Any) -> dict:
    kind = path[0]
    if kind == "schema":
        return ed.alter_schema(path[1], body)
    if kind == "table":
        return ed.alter_table(path[1], path[2], body)
    if kind == "column":
        return ed.alter_column(path[1], path[2], path[3], body)
    if kind == "key":
        return ed.alter_key(path[1], path[2], path[3], body)
    return ed.alter_fkey(path[1], path[2], path[3], body)


def _drop(ed: ModelEditor, path: tuple) -> None:
    kind = path[0]
    if kind == "schema":
        ed.drop_schema(path[1])
    elif kind == "table":
        ed.drop_table(path[1], path[2])
    elif kind == "column":
        ed.drop_column(path[1], path[2], path[3])
    elif kind == "key":
        ed.drop_key(path[1], path[2], path[3])
    else:
        ed.drop_fkey(path[1], path[2], path[3])


def _model_schema(state: ModelState, sname: str) -> dict:
    return ModelEditorView(state).schema_doc(sname)


def _model_table(state: ModelState, sname: str, tname: str) -> dict:
    return ModelEditorView(state).table_doc(sname, tname)


def _limit(raw: str | None) -> int | None:
    if raw is None:
        return None
    v = decode_literal(raw)
    if v == "none":
        return None
    if not v.isdigit():
        raise BadRequest(f"Invalid limit {v!r}.")
    return int(v)


def _negotiate(request: Request, params: dict[str, str], input_fmt: str | None) -> str:
    acc = decode_literal(params["accept"]) if "accept" in params else None
    if acc is None:
        header = (request.headers.get("accept") or "*/*").lower()
        for mime, fmt in ((CSV_CT, "csv"), (STREAM_CT, "stream"), (JSON_CT, "json")):
            if mime in header:
                return fmt
        return input_fmt or "json"
    acc = acc.lower()
    if acc in ("csv", CSV_CT):
        return "csv"
    if acc in ("json", JSON_CT):
        return "json"
    if acc in (STREAM_CT, "json-stream", "x-json-stream"):
        return "stream"
    raise BadRequest(f"Unsupported accept value {acc!r}.")


def _format_rows(fmt: str, cols: list[tuple[str, Any]], tuples: list[tuple], outcols: list, params: dict[str, str]) -> Response:
    headers = {}
    if "download" in params:
        name = decode_literal(params["download"]) or "download"
        ext = {"csv": "csv", "json": "json", "stream": "json"}[fmt]
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{name}.{ext}"
    if fmt == "csv":
        arrays_json = decode_literal(params.get("arrays", "")) == "json"
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c[0] for c in cols])
        types = [o.ctype for o in outcols]
        for t in tuples:
            buf.write(",".join(_csv_field(ct, v, arrays_json) for ct, v in zip(types, t)) + "\n")
        return Response(buf.getvalue(), media_type=CSV_CT, headers=headers)
    rows = data.output_rows(cols, tuples)
    if fmt == "stream":
        return Response("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows), media_type=STREAM_CT, headers=headers)
    return Response(json.dumps(rows, separators=(",", ":")) + "\n", media_type=JSON_CT, headers=headers)


def _csv_field(ctype: Any, v: Any, arrays_json: bool) -> str:
    if v is None:
        return ""
    if ctype is None:
        s = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    else:
        s = csv_text(ctype, v, arrays_json)  # type: ignore[assignment]
    if s == "" or any(ch in s for ch in ',"\n\r'):
        return '"' + s.replace('"', '""') + '"'
    return s


def _format_dicts(fmt: str, rows: list[dict], names: list[str], table: Any) -> Response:
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(names)
        for r in rows:
            fields = []
            for c in table.columns:
                v = r.get(c.name)
                if v is None:
                    fields.append("")
                    continue
                if c.ctype.kind == "bool" and not c.ctype.is_array:
                    s = "t" if v else "f"
                elif c.ctype.is_array or c.ctype.kind == "json":
                    s = json.dumps(v, separators=(",", ":"))
                else:
                    s = v if isinstance(v, str) else str(v)
                fields.append('"' + s.replace('"', '""') + '"' if (s == "" or any(ch in s for ch in ',"\n\r')) else s)
            buf.write(",".join(fields) + "\n")
        return Response(buf.getvalue(), media_type=CSV_CT)
    if fmt == "stream":
        return Response("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows), media_type=STREAM_CT)
    return Response(json.dumps(rows, separators=(",", ":")) + "\n", media_type=JSON_CT)


def _edit_mapping(doc: dict, field: str, key: str | None, method: str, value: Any, kind: str, what: str) -> None:
    """PUT or DELETE one key (or the whole mapping) of an ``annotations``/``acls``-like field."""
    cur = doc.setdefault(field, {})
    if method == "PUT":
        if key is None:
            if not isinstance(value, dict):
                raise BadRequest(f"{what} must be an object.")
            doc[field] = value
        else:
            cur[key] = value
    elif key is None:
        doc[field] = {}
    elif key in cur:
        del cur[key]
    else:
        raise NotFound(f"{kind} {key} not found.")
