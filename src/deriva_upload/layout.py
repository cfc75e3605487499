"""Where files go before upload: the seed's directory layout and its regexes.

Pure path logic (the only side effect is creating the directories the seed creates).
The directory tree is the contract between the code that stages outputs and the
code that uploads them::

    <prefix>/deriva-ml/
        execution/<exec_rid>/
            asset/<schema>/<Table>/<meta_1>/.../<meta_n>/[<RID>/]<file>     regex layout
            assets/<Table>/<file> + asset-manifest.json                     manifest-first layout
            asset-type/<schema>/<Table>.jsonl
            feature/<schema>/<target>/<feature>/<feature>.jsonl
            table/<schema>/<T>/<T>.csv
            upload-staging/                                                 symlinks for GenericUploader
        table/<schema>/<T>/<T>.csv                                          seed's table_path()

Differences from the seed (see seed-quirks.md) are marked ``quirk N``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from deriva.core.ermrest_model import Table

from .errors import DerivaMLException, LayoutError
from .model import asset_metadata_columns

RID = str

NULL_SENTINEL = "__NULL__"
"""Directory segment standing for a NULL metadata value (read back as NULL)."""

# --- the seed's module-level regexes, verbatim (seed-version.md) -------------------------
SEP = re.escape(os.path.sep)
upload_root_regex = f"(?i)^.*{SEP}deriva-ml"
exec_dir_regex = upload_root_regex + f"{SEP}execution{SEP}(?P<execution_rid>[-\\w]+)"
feature_dir_regex = exec_dir_regex + f"{SEP}feature"
feature_table_dir_regex = (
    feature_dir_regex + f"{SEP}(?P<schema>[-\\w]+){SEP}(?P<target_table>[-\\w]+){SEP}(?P<feature_name>[-\\w]+)"
)
feature_value_regex = feature_table_dir_regex + f"{SEP}(?P=feature_name)[.](?P<ext>[(csv|json)]*)$"
feature_asset_dir_regex = feature_table_dir_regex + f"{SEP}asset{SEP}(?P<asset_table>[-\\w]+)"
feature_asset_regex = feature_asset_dir_regex + f"{SEP}(?P<file>[A-Za-z0-9_-]+)[.](?P<ext>[a-z0-9]*)$"
asset_path_regex = exec_dir_regex + rf"{SEP}asset{SEP}(?P<schema>[-\w]+){SEP}(?P<asset_table>[-\w]*)"
asset_file_regex = r"(?P<file>[-\w]+)[.](?P<ext>[a-z0-9]*)$"
table_regex = (
    exec_dir_regex + rf"{SEP}table{SEP}(?P<schema>[-\w]+){SEP}(?P<table>[-\w]+){SEP}(?P=table)[.](csv|json)$"
)

# --- the regexes our own code matches with --------------------------------------------------
# quirk 7: the seed's greedy ``^.*/deriva-ml`` lets a later "deriva-ml" segment (the ML
# schema is called deriva-ml) stand for the upload root. We anchor the execution at the
# FIRST ``/deriva-ml/execution/<rid>`` of the path and match the rest from there.
_EXEC_START = re.compile(r"/deriva-ml/execution/[-\w]+(?:/|$)", re.IGNORECASE)
_EXEC = r"/deriva-ml/execution/(?P<execution_rid>[-\w]+)"
_FEATURE_TABLE_DIR = re.compile(
    _EXEC + r"/feature/(?P<schema>[-\w]+)/(?P<target_table>[-\w]+)/(?P<feature_name>[-\w]+)$", re.IGNORECASE
)
_ASSET_PATH = re.compile(_EXEC + r"/asset/(?P<schema>[-\w]+)/(?P<asset_table>[-\w]*)", re.IGNORECASE)


def match_in_execution(pattern: re.Pattern, path: str | Path) -> Optional[re.Match]:
    """Match ``pattern`` at the first ``/deriva-ml/execution/<rid>`` of ``path`` (quirk 7)."""
    text = Path(path).as_posix()
    start = _EXEC_START.search(text)
    return pattern.match(text, start.start()) if start else None


# A path segment longer than this cannot be created on common filesystems (ext4, APFS, NTFS).
MAX_SEGMENT_BYTES = 255


def is_feature_dir(path: str | Path) -> Optional[re.Match]:
    """Match a feature table directory; groups: execution_rid, schema, target_table, feature_name.

    Accepts ``str`` as well as ``Path`` (quirk 11).
    """
    return match_in_execution(_FEATURE_TABLE_DIR, path)


def normalize_asset_dir(path: str | Path) -> Optional[tuple[str, str]]:
    """``("schema/table", file name)`` for a path in the regex asset layout, else None."""
    p = Path(path)
    if not (m := match_in_execution(_ASSET_PATH, p)):
        return None
    return f"{m['schema']}/{m['asset_table']}", p.name


def upload_root(prefix: Path | str) -> Path:
    """Top-level upload directory ``<prefix>/deriva-ml`` (created)."""
    path = Path(prefix) / "deriva-ml"
    path.mkdir(exist_ok=True, parents=True)
    return path


def execution_rids(prefix: Path | str) -> list[RID]:
    """RIDs of the executions staged under the upload root.

    Directories only, sorted, and ``[]`` when nothing is staged (quirk 12: the seed
    returned stray files as RIDs and raised when ``execution/`` was missing).
    """
    path = upload_root(prefix) / "execution"
    if not path.is_dir():
        return []
    return sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def execution_root(prefix: Path | str, exec_rid) -> Path:
    """Directory of one execution's staged files (created)."""
    path = upload_root(prefix) / "execution" / exec_rid
    path.mkdir(exist_ok=True, parents=True)
    return path


def _exec_subdir(prefix: Path | str, exec_rid: str, *parts: str) -> Path:
    path = execution_root(prefix, exec_rid).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def feature_root(prefix: Path | str, exec_rid: str) -> Path:
    """Directory for an execution's feature files (created)."""
    return _exec_subdir(prefix, exec_rid, "feature")


def asset_root(prefix: Path | str, exec_rid: str) -> Path:
    """Directory for an execution's assets in the regex layout (created)."""
    return _exec_subdir(prefix, exec_rid, "asset")


def flat_asset_dir(prefix: Path | str, exec_rid: str, asset_table_name: str) -> Path:
    """Flat per-table directory of the manifest-first layout, ``assets/<Table>`` (created)."""
    return _exec_subdir(prefix, exec_rid, "assets", asset_table_name)


def upload_staging_root(prefix: Path | str, exec_rid: str) -> Path:
    """Symlink tree for GenericUploader (``engine="deriva-py"`` only; our engine reads manifests)."""
    return _exec_subdir(prefix, exec_rid, "upload-staging")


def manifest_path(prefix: Path | str, exec_rid: str) -> Path:
    """``asset-manifest.json`` of an execution (not created)."""
    return execution_root(prefix, exec_rid) / "asset-manifest.json"


def feature_dir(prefix: Path | str, exec_rid: str, schema: str, target_table: str, feature_name: str) -> Path:
    """Directory of one feature's values (created)."""
    return _exec_subdir(prefix, exec_rid, "feature", schema, target_table, feature_name)


def feature_value_path(prefix: Path | str, exec_rid: str, schema: str, target_table: str, feature_name: str) -> Path:
    """``<feature>.jsonl`` holding a feature's values (our engine also reads .csv/.json; quirk 5)."""
    return feature_dir(prefix, exec_rid, schema, target_table, feature_name) / f"{feature_name}.jsonl"


def table_path(prefix: Path | str, schema: str, table: str) -> Path:
    """``deriva-ml/table/<schema>/<T>/<T>.csv``, the seed's place (our engine uploads it; quirk 4)."""
    path = upload_root(prefix) / "table" / schema / table
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{table}.csv"


def asset_type_path(prefix: Path | str, exec_rid: RID, asset_table: Table) -> Path:
    """JSON-lines file of asset types for one asset table (directory created)."""
    path = execution_root(prefix, exec_rid=exec_rid) / "asset-type" / asset_table.schema.name
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{asset_table.name}.jsonl"


def encode_segment(column: str, value: Any) -> str:
    """The directory segment for one metadata value; None becomes ``NULL_SENTINEL`` (quirk 2).

    Raises ``LayoutError`` for values a single path segment cannot carry faithfully
    (quirk 9), before anything is written.
    """
    if value is None:
        return NULL_SENTINEL
    text = str(value)
    problem = None
    if text == "":
        problem = "is empty"
    elif text in (".", ".."):
        problem = f"is {text!r}, which a directory cannot be named"
    elif "/" in text or os.sep in text or "\x00" in text:
        problem = "contains a path separator or NUL"
    elif text == NULL_SENTINEL:
        problem = f"is the NULL marker {NULL_SENTINEL!r}; pass None for NULL"
    elif len(text.encode("utf-8", "surrogateescape")) > MAX_SEGMENT_BYTES:
        problem = f"is longer than {MAX_SEGMENT_BYTES} bytes"
    if problem:
        raise LayoutError(f"metadata column {column!r}: value {text[:60]!r} {problem}; the layout cannot store it")
    return text


def decode_segment(segment: str) -> str | None:
    """Inverse of :func:`encode_segment`: ``NULL_SENTINEL`` reads back as None."""
    return None if segment == NULL_SENTINEL else segment


def _check_file_name(file_name: str) -> None:
    if not file_name or file_name in (".", "..") or "/" in file_name or os.sep in file_name or "\x00" in file_name:
        raise LayoutError(f"file name {file_name!r} must be a single, non-empty path segment")


def asset_file_path(
    prefix: Path | str,
    exec_rid: RID,
    asset_table: Table,
    file_name: str,
    metadata: dict[str, Any],
    rid: RID | None = None,
) -> Path:
    """Where to put one asset file in the regex layout, with metadata encoded in the path.

    ``asset/<schema>/<Table>/<m_1>/.../<m_n>/[<rid>/]<file_name>``: metadata columns in
    sorted order (quirk 1), None or missing as ``NULL_SENTINEL`` (quirk 2), and the
    optional pre-allocated ``rid`` segment the spec expects (quirk 3). Everything is
    validated before any directory is created (quirk 10).
    """
    metadata = metadata or {}
    columns = asset_metadata_columns(asset_table)
    unknown = sorted(set(metadata) - set(columns))
    if unknown:
        raise DerivaMLException(
            f"Metadata {metadata} does not match asset metadata of {asset_table.name}: "
            f"unknown column(s) {unknown}; allowed columns are {columns}"
        )
    segments = [encode_segment(c, metadata.get(c)) for c in columns]
    if rid is not None:
        if not re.fullmatch(r"[-A-Za-z0-9]+", str(rid)):
            raise LayoutError(f"RID {rid!r} is not a valid ERMrest RID")
        segments.append(str(rid))
    _check_file_name(file_name)
    path = execution_root(prefix, exec_rid) / "asset" / asset_table.schema.name / asset_table.name
    path = path.joinpath(*segments)
    path.mkdir(parents=True, exist_ok=True)
    return path / file_name


__all__ = [
    "NULL_SENTINEL",
    "asset_file_path",
    "asset_root",
    "asset_type_path",
    "decode_segment",
    "encode_segment",
    "execution_rids",
    "execution_root",
    "feature_dir",
    "feature_root",
    "feature_value_path",
    "flat_asset_dir",
    "is_feature_dir",
    "manifest_path",
    "normalize_asset_dir",
    "table_path",
    "upload_root",
    "upload_staging_root",
]
