"""Names and patterns of a staged execution's directory layout (no I/O)."""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST_NAME = "asset-manifest.json"
FEATURE_EXTENSIONS = (".jsonl", ".json", ".csv")
TABLE_EXTENSIONS = (".csv", ".json")
# Top-level entries of ``deriva-ml/execution/<RID>/`` that hold staged outputs.
LAYOUT_ENTRIES = frozenset({"asset", "assets", "asset-type", "feature", "table", MANIFEST_NAME})
# Directories of an execution that are not staged outputs: deriva-py's symlink tree and
# our own state.
IGNORED_DIRS = frozenset({"upload-staging", ".deriva-upload"})
# An ERMrest RID (Crockford base32 in groups of four): how an asset column value that
# already is a RID (not a local path) is recognised.
RID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{1,4}(-[0-9A-HJKMNP-TV-Z]{4})*$")


def execution_root(prefix: Path, exec_rid: str) -> Path:
    """Where execution ``exec_rid`` is staged under ``prefix``."""
    return prefix / "deriva-ml" / "execution" / exec_rid


def rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` for messages (as is when it lies elsewhere)."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()
