"""Walk an upload tree once and turn every file into an :class:`Item` or an unmatched entry.

Matching interprets the upload spec's *structure* rather than running its regexes
verbatim: an asset mapping says "files under ``deriva-ml/execution/<exec>/asset/
<schema>/<Table>/`` carry one directory per metadata column (in the order of the
pattern's groups), optionally a RID directory, then the file". We accept **any** file
name there (the seed's ``asset_file_regex`` makes GenericUploader silently skip
``scan 01.png``, ``model.tar.gz``, ``README``: seed quirk 8) and any metadata segment
value (quirk 9). Table files are found at the spec's place and at the seed's
``table_path`` place (quirk 4). Mappings that do not follow the layout are matched with
GenericUploader's regex semantics. A file that matches nothing is reported with the
reason, never dropped.
"""

from __future__ import annotations

import os
import re
import stat as stat_mod
import string
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deriva_upload.engine.items import (
    DEFAULT_DISPOSITION,
    DEFAULT_TABLE_DEFAULTS,
    NULL_SENTINEL,
    Item,
)
from deriva_upload.errors import ConfigError

# The layout's fixed directory names (deriva_ml.dataset.upload): upload root,
# execution directory, asset and table sub-trees.
UPLOAD_ROOT_NAME = "deriva-ml"
EXECUTION_DIR = "execution"
ASSET_DIR = "asset"
TABLE_DIR = "table"
# Our journal directory and deriva-py's transfer-state files never get uploaded.
JOURNAL_DIR_NAME = ".deriva-upload"
SKIP_FILE_PREFIXES = (".deriva-upload",)
# Group names of the layout's regexes that are not metadata columns.
_STRUCTURAL_GROUPS = frozenset({"execution_rid", "schema", "asset_table", "table", "target_table", "RID",
                                "file", "ext", "file_ext", "feature_name", "basename"})
# The seed's RID segment pattern (its (?i) flag makes it case-insensitive).
_RID_SEGMENT = re.compile(r"^[-A-Za-z0-9]+$")
_TABLE_FILE_EXTS = ("csv", "json")


@dataclass(frozen=True)
class AssetRule:
    """One asset mapping, read as the layout it describes."""

    index: int
    schema: str
    table: str
    meta_groups: tuple[str, ...]
    meta_columns: tuple[str, ...]
    has_rid: bool
    use_pre_allocated_rid: bool
    hatrac_uri: str | None
    content_disposition: str | None
    versioned_urls: bool
    chunk_size: int | None
    column_map: Mapping[str, str] | None


@dataclass(frozen=True)
class TableRule:
    """The table mapping (``asset_type: table``)."""

    index: int
    default_columns: tuple[str, ...]


@dataclass(frozen=True)
class RegexRule:
    """A mapping that does not follow the layout: GenericUploader's regex semantics."""

    index: int
    mapping: Mapping[str, Any]
    dir_re: re.Pattern[str] | None
    file_re: re.Pattern[str] | None
    ext_re: re.Pattern[str] | None


@dataclass(frozen=True)
class Unmatched:
    """A file the spec does not place, with the reason (shown to the user)."""

    rel: str
    reason: str


@dataclass
class ScanResult:
    items: list[Item] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(i.size for i in self.items)


def _fields(template: str) -> list[str]:
    return [n for _, n, _, _ in string.Formatter().parse(template) if n]


def _compile(pattern: str | None, what: str, index: int, flags: int = 0) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern, flags)
    except re.error as e:
        raise ConfigError(f"upload spec asset_mappings[{index}].{what} is not a valid regex: {e}") from e


def _chunk_size(mapping: Mapping[str, Any]) -> int | None:
    v = (mapping.get("hatrac_options") or {}).get("chunk_size")
    try:
        n = int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return n if n and n > 0 else None


def _versioned(mapping: Mapping[str, Any]) -> bool:
    opts = mapping.get("hatrac_options") or {}
    v = opts.get("versioned_urls", opts.get("versioned_uris", True))
    return str(v).lower() not in ("false", "0", "no", "off") if not isinstance(v, bool) else v


class SpecMatcher:
    """The upload spec compiled into rules; ``match`` places one file."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        mappings = spec.get("asset_mappings")
        if not isinstance(mappings, Sequence) or isinstance(mappings, (str, bytes)):
            raise ConfigError("upload spec has no 'asset_mappings' list")
        self.asset_rules: dict[tuple[str, str], AssetRule] = {}
        self.table_rule: TableRule | None = None
        self.regex_rules: list[RegexRule] = []
        for index, m in enumerate(mappings):
            if not isinstance(m, Mapping):
                raise ConfigError(f"upload spec asset_mappings[{index}] is not an object")
            rule = self._asset_rule(index, m)
            if rule is not None:
                self.asset_rules.setdefault((rule.schema.lower(), rule.table.lower()), rule)
            elif m.get("asset_type") == "table" and self.table_rule is None:
                self.table_rule = TableRule(index, tuple(m.get("default_columns") or DEFAULT_TABLE_DEFAULTS))
            self.regex_rules.append(RegexRule(
                index, m, _compile(m.get("dir_pattern"), "dir_pattern", index),
                _compile(m.get("file_pattern"), "file_pattern", index),
                _compile(m.get("ext_pattern"), "ext_pattern", index, re.IGNORECASE)))

    @staticmethod
    def _asset_rule(index: int, m: Mapping[str, Any]) -> AssetRule | None:
        """The layout reading of a file mapping with a literal target table, else None."""
        if m.get("asset_type", "file") != "file":
            return None
        target = m.get("target_table")
        if not (isinstance(target, Sequence) and len(target) == 2
                and all(isinstance(t, str) and "{" not in t for t in target)):
            return None
        pattern = _compile(m.get("file_pattern"), "file_pattern", index)
        if pattern is None or f"/{ASSET_DIR}/" not in pattern.pattern:
            return None
        cmap = dict(m.get("column_map") or {})
        group_to_col: dict[str, str] = {}
        for col, tmpl in cmap.items():
            names = _fields(str(tmpl))
            if len(names) == 1 and tmpl == "{" + names[0] + "}":
                group_to_col.setdefault(names[0], col)
        groups = sorted(pattern.groupindex.items(), key=lambda kv: kv[1])
        meta = [(g, group_to_col[g]) for g, _ in groups if g not in _STRUCTURAL_GROUPS and g in group_to_col]
        templates = m.get("hatrac_templates") or {}
        return AssetRule(
            index=index, schema=target[0], table=target[1],
            meta_groups=tuple(g for g, _ in meta), meta_columns=tuple(c for _, c in meta),
            has_rid="RID" in pattern.groupindex,
            use_pre_allocated_rid=bool(m.get("use_pre_allocated_rid", False)),
            hatrac_uri=templates.get("hatrac_uri"),
            content_disposition=templates.get("content-disposition"),
            versioned_urls=_versioned(m), chunk_size=_chunk_size(m), column_map=cmap or None)

    # -- matching -------------------------------------------------------------------

    def match(self, path: str, rel: str, size: int, mtime_ns: int) -> Item | Unmatched:
        """Place the file at absolute posix ``path`` (``rel`` is what reports show)."""
        parts = path.split("/")
        for i, part in enumerate(parts[:-1]):
            if part.lower() != UPLOAD_ROOT_NAME:
                continue
            nxt = parts[i + 1].lower() if i + 1 < len(parts) - 1 else ""
            if nxt == EXECUTION_DIR and i + 3 < len(parts) - 1:
                sub = parts[i + 3].lower()
                if sub == ASSET_DIR:
                    return self._match_asset(parts, i, path, rel, size, mtime_ns)
                if sub == TABLE_DIR:
                    return self._match_table(parts[i + 4:], parts[i + 2], path, rel, size, mtime_ns)
            elif nxt == TABLE_DIR:
                return self._match_table(parts[i + 2:], None, path, rel, size, mtime_ns)
        hit = self._match_regex(path, rel, size, mtime_ns)
        if hit is not None:
            return hit
        return Unmatched(rel, "not in an asset or table directory of the upload layout, "
                              "and no asset mapping of the upload spec matches it")

    def _match_asset(self, parts: list[str], i: int, path: str, rel: str, size: int,
                     mtime_ns: int) -> Item | Unmatched:
        exec_rid = parts[i + 2]
        if len(parts) < i + 7:
            return Unmatched(rel, "asset files belong in asset/<schema>/<table>/...; this file is too high up")
        schema, table = parts[i + 4], parts[i + 5]
        rule = self.asset_rules.get((schema.lower(), table.lower()))
        if rule is None:
            hit = self._match_regex(path, rel, size, mtime_ns)
            if hit is not None:
                return hit
            return Unmatched(rel, f"the upload spec has no asset mapping for table {schema}:{table}")
        rest = parts[i + 6:]
        n = len(rule.meta_groups)
        rid: str | None = None
        if len(rest) == n + 1:
            pass
        elif rule.has_rid and len(rest) == n + 2:
            rid = rest[n]
            if not _RID_SEGMENT.match(rid):
                return Unmatched(rel, f"directory {rid!r} in the RID position is not a RID")
        else:
            cols = ", ".join(rule.meta_columns) or "none"
            rid_txt = " plus an optional RID directory" if rule.has_rid else ""
            return Unmatched(rel, f"{rule.schema}:{rule.table} expects {n} metadata director"
                                  f"{'y' if n == 1 else 'ies'} ({cols}){rid_txt} before the file name; "
                                  f"found {len(rest) - 1}")
        metadata = {col: (None if v == NULL_SENTINEL else v) for col, v in zip(rule.meta_columns, rest[:n])}
        return Item(path=Path(path), rel=rel, size=size, mtime_ns=mtime_ns, kind="asset", schema=rule.schema,
                    table=rule.table, metadata=metadata,
                    rid=rid if rule.use_pre_allocated_rid else None, execution_rid=exec_rid,
                    mapping_index=rule.index, hatrac_uri=rule.hatrac_uri,
                    content_disposition=rule.content_disposition, versioned_urls=rule.versioned_urls,
                    chunk_size=rule.chunk_size, column_map=rule.column_map)

    def _match_table(self, rest: list[str], exec_rid: str | None, path: str, rel: str, size: int,
                     mtime_ns: int) -> Item | Unmatched:
        if self.table_rule is None:
            return Unmatched(rel, "the upload spec has no table mapping (asset_type 'table')")
        if len(rest) != 3:
            return Unmatched(rel, "table files belong at table/<schema>/<table>/<table>.csv|json")
        schema, table, name = rest
        stem, dot, ext = name.rpartition(".")
        if not dot or stem.lower() != table.lower() or ext.lower() not in _TABLE_FILE_EXTS:
            return Unmatched(rel, f"a table directory holds only {table}.csv or {table}.json")
        return Item(path=Path(path), rel=rel, size=size, mtime_ns=mtime_ns, kind="table", schema=schema,
                    table=table, execution_rid=exec_rid, mapping_index=self.table_rule.index,
                    default_columns=self.table_rule.default_columns, content_disposition=None)

    def _match_regex(self, path: str, rel: str, size: int, mtime_ns: int) -> Item | None:
        """GenericUploader's rule: the first mapping whose patterns all match."""
        for r in self.regex_rules:
            groups: dict[str, Any] = {}
            ok = True
            for rx in (r.dir_re, r.ext_re, r.file_re):
                if rx is None:
                    continue
                mt = rx.search(path)
                if not mt:
                    ok = False
                    break
                groups.update({k: v for k, v in mt.groupdict().items() if v is not None})
            if not ok or (r.dir_re is None and r.file_re is None and r.ext_re is None):
                continue
            return self._item_from_groups(r, groups, path, rel, size, mtime_ns)
        return None

    def _item_from_groups(self, r: RegexRule, groups: dict[str, Any], path: str, rel: str, size: int,
                          mtime_ns: int) -> Item | None:
        m = r.mapping
        target = m.get("target_table") or [groups.get("schema"), groups.get("table")]
        try:
            schema, table = (str(t).format(**groups) for t in target)
        except (KeyError, IndexError, ValueError):
            return None
        if not schema or not table or schema == "None" or table == "None":
            return None
        values = {k: (None if v == NULL_SENTINEL else v) for k, v in groups.items()}
        if m.get("asset_type") == "table":
            return Item(path=Path(path), rel=rel, size=size, mtime_ns=mtime_ns, kind="table", schema=schema,
                        table=table, execution_rid=values.get("execution_rid"), mapping_index=r.index,
                        default_columns=tuple(m.get("default_columns") or DEFAULT_TABLE_DEFAULTS),
                        content_disposition=None)
        cmap = dict(m.get("column_map") or {})
        metadata: dict[str, str | None] = {}
        for col, tmpl in cmap.items():
            names = _fields(str(tmpl))
            if (col not in ("URL", "Filename", "Length", "MD5", "RID") and len(names) == 1
                    and names[0] in groups and names[0] not in _STRUCTURAL_GROUPS):
                metadata[col] = values[names[0]]
        templates = m.get("hatrac_templates") or {}
        rid = values.get("RID") if m.get("use_pre_allocated_rid") else None
        return Item(path=Path(path), rel=rel, size=size, mtime_ns=mtime_ns, kind="asset", schema=schema,
                    table=table, metadata=metadata, rid=rid, execution_rid=values.get("execution_rid"),
                    mapping_index=r.index, hatrac_uri=templates.get("hatrac_uri"),
                    content_disposition=templates.get("content-disposition", DEFAULT_DISPOSITION
                                                      if not templates else None),
                    versioned_urls=_versioned(m), chunk_size=_chunk_size(m), column_map=cmap or None)


# -- walking ------------------------------------------------------------------------


def in_shard(rel: str, shard: tuple[int, int] | None) -> bool:
    """Stable assignment of a file to one of ``n`` shards (crc32 of its relative path)."""
    if shard is None:
        return True
    i, n = shard
    return zlib.crc32(rel.encode("utf-8", "surrogateescape")) % n == i


def walk_files(root: Path, refused: list[Unmatched] | None = None) -> Iterator[tuple[str, str, os.stat_result]]:
    """``(absolute posix path, relative posix path, stat)`` of every regular file, sorted.

    Follows symlinks that stay inside ``root`` (the seed's staging trees are symlink
    farms), each linked directory once. A link that leaves ``root``, closes a loop,
    leads into a directory already walked through another link, or cannot be read is
    not followed and is appended to ``refused`` with the reason (never skipped silently).
    Skips our journal directory and deriva-py transfer-state files.
    """
    root_abs = os.path.abspath(root)
    root_real = os.path.realpath(root_abs)
    refused = refused if refused is not None else []
    # Only a symlinked directory can close a loop, so only their targets are remembered
    # (a set of every directory would cost ~150 bytes per directory on huge trees).
    seen_links: set[tuple[int, int]] = set()
    stack: list[tuple[str, str]] = [(root_abs, "")]
    while stack:
        d, rel_d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            refused.append(Unmatched(rel_d or ".", f"directory cannot be read: {exc.strerror or exc}"))
            continue
        subdirs: list[tuple[str, str]] = []
        for e in entries:
            rel = f"{rel_d}/{e.name}" if rel_d else e.name
            link = e.is_symlink()
            if link:
                target = os.path.realpath(e.path)
                if target != root_real and not target.startswith(root_real + os.sep):
                    refused.append(Unmatched(rel, f"refused: symlink points outside the upload directory "
                                                  f"(to {target}); copy the file into the tree to upload it"))
                    continue
            try:
                est = e.stat(follow_symlinks=True)
            except OSError as exc:
                refused.append(Unmatched(rel, f"cannot be read: {exc.strerror or exc}"
                                              + (" (broken symlink)" if link else "")))
                continue
            if stat_mod.S_ISDIR(est.st_mode):
                if e.name == JOURNAL_DIR_NAME:
                    continue
                if link:
                    key = (est.st_dev, est.st_ino)
                    here = os.path.realpath(d)
                    if here == target or here.startswith(target + os.sep):
                        refused.append(Unmatched(rel, f"refused: symlink loop (points back to its own ancestor "
                                                      f"{os.path.relpath(target, root_real)})"))
                        continue
                    if key in seen_links:
                        refused.append(Unmatched(rel, "refused: symlink to a directory already walked through "
                                                      "another link (each file is uploaded once)"))
                        continue
                    seen_links.add(key)
                subdirs.append((e.path, rel))
            elif stat_mod.S_ISREG(est.st_mode):
                if e.name.startswith(SKIP_FILE_PREFIXES):
                    continue
                yield e.path.replace(os.sep, "/"), rel, est
            else:
                refused.append(Unmatched(rel, "not a regular file (device, socket or pipe)"))
        stack.extend(reversed(subdirs))


def iter_scan(root: Path | str, spec: Mapping[str, Any], shard: tuple[int, int] | None = None,
              matcher: SpecMatcher | None = None) -> Iterator[Item | Unmatched]:
    """Items and unmatched entries for every file under ``root``, in walk order (streaming)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"upload directory {root} does not exist or is not a directory")
    matcher = matcher or SpecMatcher(spec)
    refused: list[Unmatched] = []
    for path, rel, st in walk_files(root, refused):
        while refused:
            yield refused.pop(0)
        if not in_shard(rel, shard):
            continue
        yield matcher.match(path, rel, st.st_size, st.st_mtime_ns)
    yield from refused


def scan_tree(root: Path | str, spec: Mapping[str, Any], shard: tuple[int, int] | None = None) -> ScanResult:
    """All items and unmatched files under ``root`` (see :func:`iter_scan`)."""
    out = ScanResult()
    for x in iter_scan(root, spec, shard):
        if isinstance(x, Item):
            out.items.append(x)
        else:
            out.unmatched.append((x.rel, x.reason))
    return out
