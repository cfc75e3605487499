"""The catalog model: the ERMrest schema document, its digest, and the edits that change it.

The stored document *is* the ``GET /schema`` answer (protocol §3.3), so reading the model
is a cached serialization.  Each ERMrest table maps to one SQLite table named after the
table's RID (``t_<RID>``), so renaming tables or schemas never touches SQLite.  Edits work
on a copy of the document and record which SQLite tables must be created, dropped or
rebuilt; the store applies that plan inside the same transaction that saves the document.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import BadRequest, Conflict, NotFound
from .types import ColumnType, coerce, column_type, output_converter

SYSTEM_COLUMNS = ("RID", "RCT", "RMT", "RCB", "RMB")
SYSTEM_COLUMN_TYPES = {
    "RID": {"typename": "ermrest_rid", "is_domain": True, "base_type": {"typename": "text"}},
    "RCT": {"typename": "ermrest_rct", "is_domain": True, "base_type": {"typename": "timestamptz"}},
    "RMT": {"typename": "ermrest_rmt", "is_domain": True, "base_type": {"typename": "timestamptz"}},
    "RCB": {"typename": "ermrest_rcb", "is_domain": True, "base_type": {"typename": "text"}},
    "RMB": {"typename": "ermrest_rmb", "is_domain": True, "base_type": {"typename": "text"}},
}
# Columns indexed even when no key covers them: the uploader looks assets up by these.
LOOKUP_INDEX_COLUMNS = ("MD5", "Filename")
# Types whose default may be a template expanded with the new row's RID (ERMrest behaviour).
RID_TEMPLATE_TYPES = frozenset({"ermrest_curie", "ermrest_uri"})
FKEY_ACTIONS = frozenset({"NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"})
TABLE_RIGHTS = {"select": True, "insert": True, "update": True, "delete": True, "owner": True, "enumerate": True, "write": True}
COLUMN_RIGHTS = {"select": True, "insert": True, "update": True, "owner": True, "enumerate": True, "write": True}
SCHEMA_RIGHTS = {"owner": True, "create": True, "enumerate": True}


def qi(name: str) -> str:
    """Quote an SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


# Longest schema/table/column name accepted (PostgreSQL truncates at 63 bytes; we are laxer
# but keep names sane for SQLite and for URL paths).
MAX_NAME_LENGTH = 255


def check_model_name(kind: str, name: object) -> str:
    """A model element name must be a non-empty string without NUL, of sane length."""
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"Invalid {kind} name {str(name)[:40]!r}.")
    return name


def phys_name(table_rid: str) -> str:
    return "t_" + table_rid


# ---------------------------------------------------------------------------
# digest


@dataclass
class ColumnInfo:
    name: str
    ctype: ColumnType
    nullok: bool
    default: Any  # stored form, or None
    default_template: str | None  # "{RID}" template for curie/uri defaults
    out: Callable[[Any], Any] | None


@dataclass
class FKeyInfo:
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    on_update: str


@dataclass
class TableInfo:
    schema: str
    name: str
    rid: str
    phys: str
    columns: list[ColumnInfo]
    colmap: dict[str, ColumnInfo]
    keys: list[tuple[str, ...]]
    fkeys: list[FKeyInfo]
    doc: dict

    @property
    def qname(self) -> str:
        return f"{self.schema}:{self.name}"

    def column(self, name: str, for_data: bool = True) -> ColumnInfo:
        c = self.colmap.get(name)
        if c is None:
            exc = Conflict if for_data else NotFound
            raise exc(f"Requested column {name} does not exist in table {self.name}.")
        return c


@dataclass
class ModelState:
    """An immutable digest of one model document (replaced as a whole on every edit)."""

    doc: dict
    tables: dict[tuple[str, str], TableInfo] = field(default_factory=dict)
    by_rid: dict[str, TableInfo] = field(default_factory=dict)
    _schema_bytes: bytes | None = None

    def table(self, schema: str | None, name: str, for_data: bool = True) -> TableInfo:
        exc = Conflict if for_data else NotFound
        if schema is None:
            found = [t for (s, n), t in self.tables.items() if n == name]
            if len(found) == 1:
                return found[0]
            if not found:
                raise exc(f"Table {name} does not exist.")
            raise exc(f"Table name {name} is ambiguous.")
        if schema not in self.doc["schemas"]:
            raise exc(f"Schema {schema} does not exist.")
        t = self.tables.get((schema, name))
        if t is None:
            raise exc(f"Table {name} does not exist in schema {schema}.")
        return t

    def schema_json(self, snaptime: str) -> bytes:
        if self._schema_bytes is None:
            self._schema_bytes = json.dumps(self.doc, separators=(",", ":")).encode()
        # splice the snaptime in without re-serializing the (possibly large) document
        return b'{"snaptime":' + json.dumps(snaptime).encode() + b"," + self._schema_bytes[1:] + b"\n"


def digest(doc: dict) -> ModelState:
    """Digest and validate a model document; raises Conflict/BadRequest when inconsistent."""
    state = ModelState(doc=doc)
    for sname, sdoc in doc["schemas"].items():
        for tname, tdoc in sdoc["tables"].items():
            cols = []
            for cdoc in tdoc["column_definitions"]:
                ctype = column_type(cdoc["type"])
                default = cdoc.get("default")
                template = None
                if isinstance(default, str) and "{RID}" in default and _leaf_typename(cdoc["type"]) in RID_TEMPLATE_TYPES:
                    template, stored = default, None
                else:
                    try:
                        stored = coerce(ctype, default) if default is not None else None
                    except Exception:
                        raise BadRequest(f"Invalid default {default!r} for column {cdoc['name']}.") from None
                cols.append(ColumnInfo(cdoc["name"], ctype, bool(cdoc.get("nullok", True)), stored, template, output_converter(ctype)))
            colmap = {c.name: c for c in cols}
            if len(colmap) != len(cols):
                raise Conflict(f"Table {tname} has duplicate column names.")
            keys = []
            for kdoc in tdoc["keys"]:
                kc = tuple(kdoc["unique_columns"])
                for c in kc:
                    if c not in colmap:
                        raise Conflict(f"Key column {c} does not exist in table {tname}.")
                keys.append(kc)
            info = TableInfo(sname, tname, tdoc["RID"], phys_name(tdoc["RID"]), cols, colmap, keys, [], tdoc)
            state.tables[(sname, tname)] = info
            state.by_rid[info.rid] = info
    for info in state.tables.values():
        for fk in info.doc["foreign_keys"]:
            cols = tuple(c["column_name"] for c in fk["foreign_key_columns"])
            refs = fk["referenced_columns"]
            rs, rt = refs[0]["schema_name"], refs[0]["table_name"]
            rcols = tuple(c["column_name"] for c in refs)
            for c in cols:
                if c not in info.colmap:
                    raise Conflict(f"Foreign key column {c} does not exist in table {info.name}.")
            target = state.tables.get((rs, rt))
            if target is None:
                raise Conflict(f"Referenced table {rs}:{rt} does not exist.")
            for c in rcols:
                if c not in target.colmap:
                    raise Conflict(f"Referenced column {c} does not exist in table {rs}:{rt}.")
            if not any(set(k) == set(rcols) for k in target.keys):
                raise Conflict(f"Referenced columns {', '.join(rcols)} are not a key of table {rs}:{rt}.")
            info.fkeys.append(FKeyInfo(cols, rs, rt, rcols, fk.get("on_delete") or "NO ACTION", fk.get("on_update") or "NO ACTION"))
    return state


def _leaf_typename(tdoc: dict) -> str:
    return tdoc.get("typename", "text")


# ---------------------------------------------------------------------------
# DDL


def table_ddl(state: ModelState, info: TableInfo, phys: str | None = None) -> list[str]:
    """CREATE TABLE plus its indexes for one table (keys become unique indexes)."""
    phys = phys or info.phys
    parts = []
    for c in info.columns:
        parts.append(f"{qi(c.name)} {c.ctype.affinity}" + ("" if c.nullok else " NOT NULL"))
    for fk in info.fkeys:
        target = state.tables[(fk.ref_schema, fk.ref_table)]
        parts.append(
            f"FOREIGN KEY ({', '.join(qi(c) for c in fk.columns)}) REFERENCES {qi(target.phys)} "
            f"({', '.join(qi(c) for c in fk.ref_columns)}) ON DELETE {fk.on_delete} ON UPDATE {fk.on_update}"
        )
    stmts = [f"CREATE TABLE {qi(phys)} ({', '.join(parts)})"]
    stmts.extend(index_ddl(info, phys))
    return stmts


def index_ddl(info: TableInfo, phys: str | None = None) -> list[str]:
    phys = phys or info.phys
    base = info.phys
    stmts = []
    covered = set()
    for i, k in enumerate(info.keys):
        stmts.append(f"CREATE UNIQUE INDEX {qi(f'{base}__k{i}')} ON {qi(phys)} ({', '.join(qi(c) for c in k)})")
        covered.add(k[0])
    for i, fk in enumerate(info.fkeys):
        if fk.columns[0] not in covered:
            stmts.append(f"CREATE INDEX {qi(f'{base}__f{i}')} ON {qi(phys)} ({', '.join(qi(c) for c in fk.columns)})")
            covered.add(fk.columns[0])
    for c in LOOKUP_INDEX_COLUMNS:
        if c in info.colmap and c not in covered:
            stmts.append(f"CREATE INDEX {qi(f'{base}__c_{c}')} ON {qi(phys)} ({qi(c)})")
    return stmts


# ---------------------------------------------------------------------------
# edits


@dataclass
class Plan:
    """SQLite work implied by a model edit."""

    create: set[str] = field(default_factory=set)  # table RIDs
    drop: set[str] = field(default_factory=set)  # physical names
    rebuild: dict[str, dict[str, str | None]] = field(default_factory=dict)  # RID -> {new col: old col}

    def empty(self) -> bool:
        return not (self.create or self.drop or self.rebuild)


def new_model_doc() -> dict:
    """The model document of an empty catalog."""
    return {"annotations": {}, "rights": dict(SCHEMA_RIGHTS), "features": {}, "acls": {}, "schemas": {}}


class ModelEditor:
    """Applies ERMrest model mutations to a copy of the document and records the SQLite plan."""

    def __init__(self, state: ModelState, next_rid: Callable[[], str]) -> None:
        self.doc = copy.deepcopy(state.doc)
        self.old = state
        self.next_rid = next_rid
        self.plan = Plan()

    # -- lookups (model paths: unknown names are 404)
    def schema_doc(self, sname: str) -> dict:
        s = self.doc["schemas"].get(sname)
        if s is None:
            raise NotFound(f"Schema {sname} does not exist.")
        return s

    def table_doc(self, sname: str, tname: str) -> dict:
        t = self.schema_doc(sname)["tables"].get(tname)
        if t is None:
            raise NotFound(f"Table {tname} does not exist in schema {sname}.")
        return t

    def column_doc(self, sname: str, tname: str, cname: str) -> dict:
        for c in self.table_doc(sname, tname)["column_definitions"]:
            if c["name"] == cname:
                return c
        raise NotFound(f"Column {cname} does not exist in table {tname}.")

    def key_doc(self, sname: str, tname: str, cols: list[str]) -> dict:
        for k in self.table_doc(sname, tname)["keys"]:
            if set(k["unique_columns"]) == set(cols):
                return k
        raise NotFound(f"Key ({', '.join(cols)}) does not exist in table {tname}.")

    def fkey_doc(self, sname: str, tname: str, cols: list[str], rs: str, rt: str, rcols: list[str]) -> dict:
        want = dict(zip(cols, rcols))
        for fk in self.table_doc(sname, tname)["foreign_keys"]:
            fcols = [c["column_name"] for c in fk["foreign_key_columns"]]
            refs = fk["referenced_columns"]
            if (
                len(fcols) == len(cols)
                and refs[0]["schema_name"] == rs
                and refs[0]["table_name"] == rt
                and dict(zip(fcols, [r["column_name"] for r in refs])) == want
            ):
                return fk
        raise NotFound(f"Foreign key ({', '.join(cols)}) -> {rs}:{rt} does not exist in table {tname}.")

    def _touch(self, tdoc: dict) -> None:
        """Mark a pre-existing table for rebuild (keeping its column mapping)."""
        rid = tdoc["RID"]
        if rid in self.plan.create or rid in self.plan.rebuild:
            return
        if rid in self.old.by_rid:
            self.plan.rebuild[rid] = {c["name"]: c["name"] for c in tdoc["column_definitions"]}

    # -- schemas
    def create_schema(self, sdoc: dict) -> dict:
        if not isinstance(sdoc, dict) or not isinstance(sdoc.get("schema_name"), str) or not sdoc["schema_name"]:
            raise BadRequest("Schema document requires a schema_name.")
        sname = check_model_name("schema", sdoc["schema_name"])
        if sname in self.doc["schemas"]:
            raise Conflict(f"Schema {sname} already exists.")
        new = {
            "RID": self.next_rid(),
            "schema_name": sname,
            "comment": sdoc.get("comment"),
            "rights": dict(SCHEMA_RIGHTS),
            "annotations": dict(sdoc.get("annotations") or {}),
            "acls": dict(sdoc.get("acls") or {}),
            "tables": {},
        }
        self.doc["schemas"][sname] = new
        tables = sdoc.get("tables") or {}
        if not isinstance(tables, dict):
            raise BadRequest("Schema tables must be an object.")
        for tname, tdoc in tables.items():
            if not isinstance(tdoc, dict):
                raise BadRequest(f"Invalid table document for {tname}.")
            tdoc = dict(tdoc)
            tdoc.setdefault("table_name", tname)
            self.create_table(sname, tdoc, check_refs=False)
        return new

    def alter_schema(self, sname: str, changes: dict) -> dict:
        s = self.schema_doc(sname)
        _check_changes(changes, {"schema_name", "comment", "annotations", "acls"})
        for k in ("comment", "annotations", "acls"):
            if k in changes:
                s[k] = changes[k] if k == "comment" else dict(changes[k] or {})
        new = changes.get("schema_name", sname)
        if new != sname:
            check_model_name("schema", new)
            if new in self.doc["schemas"]:
                raise Conflict(f"Schema {new} already exists.")
            s["schema_name"] = new
            self.doc["schemas"] = {(new if k == sname else k): v for k, v in self.doc["schemas"].items()}
            for t in s["tables"].values():
                t["schema_name"] = new
            self._rename_refs(lambda ref: ref["schema_name"] == sname, {"schema_name": new}, sname, new)
        return s

    def drop_schema(self, sname: str) -> None:
        s = self.schema_doc(sname)
        if s["tables"]:
            raise Conflict(f"Schema {sname} is not empty; drop its tables first.")
        del self.doc["schemas"][sname]

    # -- tables
    def create_table(self, sname: str, tdoc: dict, check_refs: bool = True) -> dict:
        s = self.schema_doc(sname)
        if not isinstance(tdoc, dict) or not isinstance(tdoc.get("table_name"), str) or not tdoc["table_name"]:
            raise BadRequest("Table document requires a table_name.")
        tname = check_model_name("table", tdoc["table_name"])
        if tname in s["tables"]:
            raise Conflict(f"Table {tname} already exists in schema {sname}.")
        if tdoc.get("kind", "table") != "table":
            raise BadRequest("Only tables (kind 'table') can be created.")
        cols_in = tdoc.get("column_definitions") or []
        if not isinstance(cols_in, list):
            raise BadRequest("column_definitions must be a list.")
        names = {c.get("name") for c in cols_in if isinstance(c, dict)}
        cols = [self._column(tname, {"name": n, "type": SYSTEM_COLUMN_TYPES[n], "nullok": n in ("RCB", "RMB")}) for n in SYSTEM_COLUMNS if n not in names]
        cols += [self._column(tname, c) for c in cols_in]
        new = {
            "RID": self.next_rid(),
            "schema_name": sname,
            "table_name": tname,
            "rights": dict(TABLE_RIGHTS),
            "kind": "table",
            "comment": tdoc.get("comment"),
            "annotations": dict(tdoc.get("annotations") or {}),
            "acls": dict(tdoc.get("acls") or {}),
            "acl_bindings": dict(tdoc.get("acl_bindings") or {}),
            "column_definitions": cols,
            "keys": [],
            "foreign_keys": [],
        }
        s["tables"][tname] = new
        self.plan.create.add(new["RID"])
        keys_in = list(tdoc.get("keys") or [])
        if not any(list(k.get("unique_columns", [])) == ["RID"] for k in keys_in if isinstance(k, dict)):
            keys_in.insert(0, {"unique_columns": ["RID"]})
        for k in keys_in:
            self.create_key(sname, tname, k)
        for fk in tdoc.get("foreign_keys") or []:
            self.create_fkey(sname, tname, fk)
        return new

    def alter_table(self, sname: str, tname: str, changes: dict) -> dict:
        t = self.table_doc(sname, tname)
        _check_changes(changes, {"schema_name", "table_name", "comment", "annotations", "acls", "acl_bindings", "kind"})
        for k in ("comment", "annotations", "acls", "acl_bindings"):
            if k in changes:
                t[k] = changes[k] if k == "comment" else dict(changes[k] or {})
        new_name = changes.get("table_name", tname)
        new_schema = changes.get("schema_name", sname)
        if (new_schema, new_name) != (sname, tname):
            check_model_name("table", new_name)
            dest = self.schema_doc(new_schema) if new_schema != sname else self.doc["schemas"][sname]
            if new_name in dest["tables"]:
                raise Conflict(f"Table {new_name} already exists in schema {new_schema}.")
            src = self.doc["schemas"][sname]["tables"]
            if new_schema == sname:
                self.doc["schemas"][sname]["tables"] = {(new_name if k == tname else k): v for k, v in src.items()}
            else:
                del src[tname]
                dest["tables"][new_name] = t
            t["table_name"], t["schema_name"] = new_name, new_schema
            self._rename_refs(
                lambda ref: ref["schema_name"] == sname and ref["table_name"] == tname,
                {"schema_name": new_schema, "table_name": new_name},
            )
        return t

    def drop_table(self, sname: str, tname: str) -> None:
        t = self.table_doc(sname, tname)
        for s in self.doc["schemas"].values():
            for other in s["tables"].values():
                if other is t:
                    continue
                for fk in other["foreign_keys"]:
                    r = fk["referenced_columns"][0]
                    if r["schema_name"] == sname and r["table_name"] == tname:
                        raise Conflict(f"Table {sname}:{tname} is referenced by {other['schema_name']}:{other['table_name']}; drop that foreign key first.")
        del self.doc["schemas"][sname]["tables"][tname]
        if t["RID"] in self.plan.create:
            self.plan.create.discard(t["RID"])
        else:
            self.plan.rebuild.pop(t["RID"], None)
            self.plan.drop.add(phys_name(t["RID"]))

    # -- columns
    def _column(self, tname: str, cdoc: dict) -> dict:
        if not isinstance(cdoc, dict) or not isinstance(cdoc.get("name"), str) or not cdoc["name"]:
            raise BadRequest(f"Column document in table {tname} requires a name.")
        check_model_name("column", cdoc["name"])
        if not isinstance(cdoc.get("type"), dict):
            raise BadRequest(f"Column {cdoc['name']} requires a type.")
        column_type(cdoc["type"])  # validates
        return {
            "RID": self.next_rid(),
            "name": cdoc["name"],
            "rights": dict(COLUMN_RIGHTS),
            "type": cdoc["type"],
            "default": cdoc.get("default"),
            "nullok": bool(cdoc.get("nullok", True)),
            "comment": cdoc.get("comment"),
            "annotations": dict(cdoc.get("annotations") or {}),
            "acls": dict(cdoc.get("acls") or {}),
            "acl_bindings": dict(cdoc.get("acl_bindings") or {}),
        }

    def create_column(self, sname: str, tname: str, cdoc: dict) -> dict:
        t = self.table_doc(sname, tname)
        if isinstance(cdoc, dict) and any(c["name"] == cdoc.get("name") for c in t["column_definitions"]):
            raise Conflict(f"Column {cdoc['name']} already exists in table {tname}.")
        self._touch(t)
        new = self._column(tname, cdoc)
        t["column_definitions"].append(new)
        if t["RID"] in self.plan.rebuild:
            self.plan.rebuild[t["RID"]][new["name"]] = None
        return new

    def alter_column(self, sname: str, tname: str, cname: str, changes: dict) -> dict:
        t = self.table_doc(sname, tname)
        c = self.column_doc(sname, tname, cname)
        _check_changes(changes, {"name", "type", "default", "nullok", "comment", "annotations", "acls", "acl_bindings"})
        if cname in SYSTEM_COLUMNS and any(k in changes for k in ("name", "type", "nullok", "default")):
            raise Conflict(f"System column {cname} cannot be altered.")
        for k in ("comment", "annotations", "acls", "acl_bindings"):
            if k in changes:
                c[k] = changes[k] if k == "comment" else dict(changes[k] or {})
        structural = False
        if "type" in changes and changes["type"] != c["type"]:
            column_type(changes["type"])
            c["type"] = changes["type"]
            structural = True
        if "nullok" in changes and bool(changes["nullok"]) != c["nullok"]:
            c["nullok"] = bool(changes["nullok"])
            structural = True
        if "default" in changes:
            c["default"] = changes["default"]
        new = changes.get("name", cname)
        if new != cname:
            check_model_name("column", new)
            if any(x["name"] == new for x in t["column_definitions"]):
                raise Conflict(f"Column {new} already exists in table {tname}.")
            self._touch(t)
            c["name"] = new
            if t["RID"] in self.plan.rebuild:
                m = self.plan.rebuild[t["RID"]]
                m[new] = m.pop(cname, None)
            for k in t["keys"]:
                k["unique_columns"] = [new if x == cname else x for x in k["unique_columns"]]
            for fk in t["foreign_keys"]:
                for ref in fk["foreign_key_columns"]:
                    if ref["column_name"] == cname:
                        ref["column_name"] = new
            # references from other tables to this column
            for s in self.doc["schemas"].values():
                for other in s["tables"].values():
                    for fk in other["foreign_keys"]:
                        hit = False
                        for ref in fk["referenced_columns"]:
                            if ref["schema_name"] == sname and ref["table_name"] == tname and ref["column_name"] == cname:
                                ref["column_name"] = new
                                hit = True
                        if hit and other is not t:
                            self._touch(other)
        elif structural:
            self._touch(t)
        return c

    def drop_column(self, sname: str, tname: str, cname: str) -> None:
        t = self.table_doc(sname, tname)
        self.column_doc(sname, tname, cname)
        if cname in SYSTEM_COLUMNS:
            raise Conflict(f"System column {cname} cannot be dropped.")
        for k in t["keys"]:
            if cname in k["unique_columns"]:
                raise Conflict(f"Column {cname} is used by a key; drop the key first.")
        for fk in t["foreign_keys"]:
            if any(r["column_name"] == cname for r in fk["foreign_key_columns"]):
                raise Conflict(f"Column {cname} is used by a foreign key; drop it first.")
        self._touch(t)
        t["column_definitions"] = [c for c in t["column_definitions"] if c["name"] != cname]
        if t["RID"] in self.plan.rebuild:
            self.plan.rebuild[t["RID"]].pop(cname, None)

    # -- keys
    def create_key(self, sname: str, tname: str, kdoc: dict) -> dict:
        t = self.table_doc(sname, tname)
        if not isinstance(kdoc, dict) or not isinstance(kdoc.get("unique_columns"), list) or not kdoc["unique_columns"]:
            raise BadRequest("Key document requires unique_columns.")
        cols = [str(c) for c in kdoc["unique_columns"]]
        names = {c["name"] for c in t["column_definitions"]}
        for c in cols:
            if c not in names:
                raise Conflict(f"Key column {c} does not exist in table {tname}.")
        if any(set(k["unique_columns"]) == set(cols) for k in t["keys"]):
            raise Conflict(f"Key ({', '.join(cols)}) already exists in table {tname}.")
        self._touch(t)
        new = {
            "RID": self.next_rid(),
            "unique_columns": cols,
            "names": self._constraint_names(sname, kdoc.get("names"), f"{tname}_{'_'.join(cols)}_key"),
            "comment": kdoc.get("comment"),
            "annotations": dict(kdoc.get("annotations") or {}),
        }
        t["keys"].append(new)
        return new

    def alter_key(self, sname: str, tname: str, cols: list[str], changes: dict) -> dict:
        k = self.key_doc(sname, tname, cols)
        _check_changes(changes, {"comment", "annotations", "names"})
        for f in ("comment", "annotations"):
            if f in changes:
                k[f] = changes[f] if f == "comment" else dict(changes[f] or {})
        if "names" in changes:
            k["names"] = self._constraint_names(sname, changes["names"], k["names"][0][1])
        return k

    def drop_key(self, sname: str, tname: str, cols: list[str]) -> None:
        t = self.table_doc(sname, tname)
        k = self.key_doc(sname, tname, cols)
        if k["unique_columns"] == ["RID"]:
            raise Conflict("The RID key cannot be dropped.")
        for s in self.doc["schemas"].values():
            for other in s["tables"].values():
                for fk in other["foreign_keys"]:
                    refs = fk["referenced_columns"]
                    if refs[0]["schema_name"] == sname and refs[0]["table_name"] == tname and {r["column_name"] for r in refs} == set(k["unique_columns"]):
                        raise Conflict("Key is referenced by a foreign key; drop that first.")
        self._touch(t)
        t["keys"] = [x for x in t["keys"] if x is not k]

    # -- foreign keys
    def create_fkey(self, sname: str, tname: str, fkdoc: dict) -> dict:
        t = self.table_doc(sname, tname)
        if not isinstance(fkdoc, dict):
            raise BadRequest("Foreign key document must be an object.")
        fcols, rcols = fkdoc.get("foreign_key_columns"), fkdoc.get("referenced_columns")
        if not isinstance(fcols, list) or not isinstance(rcols, list) or not fcols or len(fcols) != len(rcols):
            raise BadRequest("Foreign key needs foreign_key_columns and referenced_columns of equal length.")
        try:
            fnames = [c["column_name"] for c in fcols]
            rs = {c.get("schema_name", sname) for c in rcols}
            rt = {c["table_name"] for c in rcols}
            rnames = [c["column_name"] for c in rcols]
        except (KeyError, TypeError):
            raise BadRequest("Malformed foreign key column reference.") from None
        if len(rs) != 1 or len(rt) != 1:
            raise BadRequest("Referenced columns must belong to one table.")
        rschema, rtable = rs.pop(), rt.pop()
        on_delete = (fkdoc.get("on_delete") or "NO ACTION").upper()
        on_update = (fkdoc.get("on_update") or "NO ACTION").upper()
        if on_delete not in FKEY_ACTIONS or on_update not in FKEY_ACTIONS:
            raise BadRequest("Invalid foreign key action.")
        self._touch(t)
        new = {
            "RID": self.next_rid(),
            "foreign_key_columns": [{"schema_name": sname, "table_name": tname, "column_name": c} for c in fnames],
            "referenced_columns": [{"schema_name": rschema, "table_name": rtable, "column_name": c} for c in rnames],
            "names": self._constraint_names(sname, fkdoc.get("names"), f"{tname}_{'_'.join(fnames)}_fkey"),
            "on_delete": on_delete,
            "on_update": on_update,
            "rights": {"insert": True, "update": True},
            "comment": fkdoc.get("comment"),
            "annotations": dict(fkdoc.get("annotations") or {}),
            "acls": dict(fkdoc.get("acls") or {}),
            "acl_bindings": dict(fkdoc.get("acl_bindings") or {}),
        }
        t["foreign_keys"].append(new)
        return new

    def alter_fkey(self, sname: str, tname: str, path: tuple, changes: dict) -> dict:
        t = self.table_doc(sname, tname)
        fk = self.fkey_doc(sname, tname, *path)
        _check_changes(changes, {"comment", "annotations", "acls", "acl_bindings", "names", "on_delete", "on_update"})
        for f in ("comment", "annotations", "acls", "acl_bindings"):
            if f in changes:
                fk[f] = changes[f] if f == "comment" else dict(changes[f] or {})
        if "names" in changes:
            fk["names"] = self._constraint_names(sname, changes["names"], fk["names"][0][1])
        for f in ("on_delete", "on_update"):
            if f in changes:
                v = (changes[f] or "NO ACTION").upper()
                if v not in FKEY_ACTIONS:
                    raise BadRequest("Invalid foreign key action.")
                if v != fk[f]:
                    fk[f] = v
                    self._touch(t)
        return fk

    def drop_fkey(self, sname: str, tname: str, path: tuple) -> None:
        t = self.table_doc(sname, tname)
        fk = self.fkey_doc(sname, tname, *path)
        self._touch(t)
        t["foreign_keys"] = [x for x in t["foreign_keys"] if x is not fk]

    # -- helpers
    def _constraint_names(self, sname: str, names: Any, default: str) -> list[list[str]]:
        if isinstance(names, list) and names and isinstance(names[0], list) and len(names[0]) == 2:
            s, n = names[0]
            if s in ("", "placeholder", None):
                s = sname
            return [[str(s), str(n)]]
        return [[sname, default]]

    def _rename_refs(self, match: Callable[[dict], bool], new: dict, old_schema: str | None = None, new_schema: str | None = None) -> None:
        for s in self.doc["schemas"].values():
            for t in s["tables"].values():
                for fk in t["foreign_keys"]:
                    for ref in fk["foreign_key_columns"] + fk["referenced_columns"]:
                        if match(ref):
                            ref.update(new)
                for c in t["keys"] + t["foreign_keys"]:
                    if old_schema is not None and c["names"] and c["names"][0][0] == old_schema:
                        c["names"][0][0] = new_schema

    def finish(self) -> ModelState:
        """Validate the edited document; the caller applies ``self.plan`` and saves."""
        return digest(self.doc)


def _check_changes(changes: Any, allowed: set[str]) -> None:
    if not isinstance(changes, dict):
        raise BadRequest("Alteration document must be an object.")
    for k in changes:
        if k not in allowed and k not in ("RID", "rights"):
            raise BadRequest(f"Cannot alter field {k!r}.")
