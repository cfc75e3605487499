"""What one file is to the engine (:class:`Item`) and the pure rules derived from it.

An ``Item`` says where a file goes (table, metadata, pre-allocated RID) and how its
object is named; :class:`Digests` are its checksums. The helpers here turn the two into
exactly what GenericUploader would send: the Hatrac path, Content-Type,
Content-Disposition and the row. No I/O.
"""

from __future__ import annotations

import base64
import functools
import mimetypes
import re
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

from deriva_upload.errors import ConfigError

Kind = Literal["asset", "table"]

NULL_SENTINEL = "__NULL__"
"""Directory segment meaning "no value" (the seed's ``NULL_SENTINEL``)."""

# The seed's hatrac templates (asset_table_upload_spec): content-addressed object name
# per table, the original file name in Content-Disposition.
DEFAULT_HATRAC_URI = "/hatrac/{table}/{{md5}}.{{file_name}}"
DEFAULT_DISPOSITION = "filename*=UTF-8''{file_name}"
# System columns ERMrest fills itself; the seed's table mapping lists them as defaults.
DEFAULT_TABLE_DEFAULTS: tuple[str, ...] = ("RID", "RCB", "RMB", "RCT", "RMT")
# Columns of an asset row that come from the file, not from metadata.
ASSET_FILE_COLUMNS = frozenset({"URL", "Filename", "Length", "MD5", "RID"})
# deriva-py's sanitize_filenames_pattern default (names in URIs without a disposition template).
_SANITIZE = re.compile(r"[^a-zA-Z0-9_.-]")
# Characters Hatrac accepts unescaped in a path segment; everything else is %XX.
_HATRAC_SAFE = "-._~"


@dataclass(frozen=True, slots=True)
class Item:
    """One file to upload: its facts, its target and how its object is named.

    ``metadata`` is keyed by **column name**; a ``None`` value means NULL (the column is
    left out of the row). ``rid`` is a pre-allocated RID (sent with ``nondefaults=RID``).
    The template fields default to the seed's spec, so code that builds items from a
    manifest only fills the first nine fields.
    """

    path: Path
    rel: str
    size: int
    mtime_ns: int
    kind: Kind
    schema: str
    table: str
    metadata: Mapping[str, str | None] = field(default_factory=dict)
    rid: str | None = None
    execution_rid: str | None = None
    mapping_index: int | None = None
    file_name: str = ""
    hatrac_uri: str | None = None
    content_disposition: str | None = DEFAULT_DISPOSITION
    versioned_urls: bool = True
    chunk_size: int | None = None
    column_map: Mapping[str, str] | None = None
    default_columns: tuple[str, ...] = DEFAULT_TABLE_DEFAULTS

    def __post_init__(self) -> None:
        if self.kind not in ("asset", "table"):
            raise ConfigError(f"{self.rel}: item kind must be 'asset' or 'table', got {self.kind!r}")
        object.__setattr__(self, "path", Path(self.path))
        if not self.file_name:
            object.__setattr__(self, "file_name", self.path.name)
        if self.hatrac_uri is None:
            object.__setattr__(self, "hatrac_uri", DEFAULT_HATRAC_URI.format(table=self.table))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if self.column_map is not None:
            object.__setattr__(self, "column_map", MappingProxyType(dict(self.column_map)))
        object.__setattr__(self, "default_columns", tuple(self.default_columns))

    @property
    def table_key(self) -> str:
        """``schema:table`` (the report's and the CLI's name of the target); one shared string."""
        return sys.intern(f"{self.schema}:{self.table}")

    @classmethod
    def for_file(cls, path: Path | str, root: Path | str | None, schema: str, table: str,
                 metadata: Mapping[str, str | None] | None = None, rid: str | None = None,
                 kind: Kind = "asset", **extra: Any) -> Item:
        """An item for ``path`` with size and mtime read from disk (manifest-driven uploads)."""
        p = Path(path)
        st = p.stat()
        rel = p.relative_to(root).as_posix() if root is not None else p.name
        return cls(path=p, rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, kind=kind, schema=schema,
                   table=table, metadata=dict(metadata or {}), rid=rid, **extra)


@dataclass(frozen=True, slots=True)
class Digests:
    """MD5 and SHA-256 of one file's content (hex), with the base64 forms Hatrac uses."""

    md5: str
    sha256: str

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.md5)).decode("ascii")

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")


# -- object naming ------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _template_fields(template: str) -> tuple[str, ...]:
    """Field names of a ``str.format`` template (cached: a run has a handful of templates)."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


def _render_quoted(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with each used value percent-encoded for a Hatrac path or disposition."""
    used = {n: quote(str("" if values[n] is None else values[n]), safe=_HATRAC_SAFE)
            for n in _template_fields(template) if n in values}
    return template.format(**used)


def file_vars(item: Item, digests: Digests | None) -> dict[str, Any]:
    """The template variables GenericUploader derives from the file itself (§6.3)."""
    suffixes = "".join(PurePosixPath(item.file_name).suffixes)
    out: dict[str, Any] = {
        "file_name": item.file_name,
        "file_size": item.size,
        "file_ext": suffixes,
        "base_name": item.file_name[: -len(suffixes)] if suffixes else item.file_name,
        "target_table": f"{quote(item.schema, safe='')}:{quote(item.table, safe='')}",
        "schema": item.schema,
        "table": item.table,
    }
    if item.execution_rid is not None:
        out["execution_rid"] = item.execution_rid
    if digests is not None:
        out.update(md5=digests.md5, sha256=digests.sha256, md5_base64=digests.md5_b64,
                   sha256_base64=digests.sha256_b64)
    return out


def hatrac_path(item: Item, digests: Digests) -> str:
    """The object's (unversioned) Hatrac path, percent-encoded where Hatrac needs it.

    With a content-disposition template the URI is used as rendered (GenericUploader);
    values are percent-encoded so any file name becomes a legal Hatrac name. Without
    one, GenericUploader sanitizes the last segment (``[^a-zA-Z0-9_.-]`` -> ``_``).
    """
    template = item.hatrac_uri or DEFAULT_HATRAC_URI.format(table=item.table)
    values = {**_metadata_vars(item), **file_vars(item, digests)}
    try:
        if item.content_disposition:
            return _render_quoted(template, values)
        rendered = template.format(**{k: ("" if v is None else v) for k, v in values.items()})
    except (KeyError, IndexError) as e:
        raise ConfigError(f"{item.rel}: hatrac_uri template {template!r} needs {e}, which this file lacks") from e
    head, _, last = rendered.rpartition("/")
    return f"{head}/{quote(_SANITIZE.sub('_', last), safe=_HATRAC_SAFE)}"


def content_disposition(item: Item) -> str | None:
    """``filename*=UTF-8''<percent-encoded name>``, or None without a template."""
    if not item.content_disposition:
        return None
    values = {**_metadata_vars(item), **file_vars(item, None)}
    try:
        return _render_quoted(item.content_disposition, values)
    except (KeyError, IndexError) as e:
        raise ConfigError(f"{item.rel}: content-disposition template needs {e}, which this file lacks") from e


def content_type(item: Item) -> str:
    """Content-Type guessed exactly like deriva-py (``mime_utils.guess_content_type``)."""
    mtype, encoding = mimetypes.guess_type(item.file_name, strict=False)
    if mtype is not None and encoding is not None:
        return f"{mtype}+{encoding}"
    return mtype or encoding or "application/octet-stream"


def object_url(versioned: str, versioned_urls: bool) -> str:
    """The URL stored in the row: the version path, or the name before the first ``:``."""
    return versioned if versioned_urls else versioned.split(":", 1)[0]


# -- rows ---------------------------------------------------------------------------


def default_column_map(item: Item) -> dict[str, str]:
    """The seed's column_map for an asset table (plus one entry per metadata column)."""
    cmap = {"MD5": "{md5}", "URL": "{URI}", "Length": "{file_size}", "Filename": "{file_name}", "RID": "{RID}"}
    cmap.update({c: "{" + c + "}" for c in item.metadata})
    return cmap


def _metadata_vars(item: Item) -> dict[str, Any]:
    """Metadata under both column names and the group names the column_map uses."""
    out: dict[str, Any] = dict(item.metadata)
    if item.column_map:
        for col, tmpl in item.column_map.items():
            names = _template_fields(tmpl)
            if col in item.metadata and len(names) == 1 and tmpl == "{" + names[0] + "}":
                out.setdefault(names[0], item.metadata[col])
    return out


def asset_row(item: Item, digests: Digests, url: str) -> dict[str, Any]:
    """The row GenericUploader would insert for this file (``column_map`` rendered).

    NULL metadata (``None``) and templates that cannot be resolved are left out, as
    deriva-py's ``interpolateDict`` does; ``Length`` is sent as a number.
    """
    cmap = dict(item.column_map) if item.column_map is not None else default_column_map(item)
    if item.column_map is not None:
        for c in item.metadata:  # manifest metadata not named in the spec still goes in
            cmap.setdefault(c, "{" + c + "}")
    values: dict[str, Any] = {**_metadata_vars(item), **file_vars(item, digests), "URI": url}
    if item.rid is not None:
        values["RID"] = item.rid
    row: dict[str, Any] = {}
    for col, tmpl in cmap.items():
        names = _template_fields(tmpl)
        if any(values.get(n) is None for n in names):
            continue
        row[col] = tmpl.format(**values)
    if "Length" in row and "Length" in cmap and cmap["Length"] == "{file_size}":
        row["Length"] = item.size
    if item.rid is None:
        row.pop("RID", None)
    return row


def row_matches(item: Item, existing: Mapping[str, Any]) -> bool:
    """True when a catalog row is this file's row (the record_query_template test)."""
    if item.rid is not None and existing.get("RID") == item.rid:
        return True
    return existing.get("Filename") == item.file_name
