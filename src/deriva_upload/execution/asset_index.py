"""Find the staged asset that a feature value's local path names."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from deriva_upload.execution.plan import StagedAsset
from deriva_upload.layout import normalize_asset_dir


class AssetIndex:
    """Finds the staged asset a feature's local path names."""

    def __init__(self, assets: Sequence[StagedAsset], prefix: Path, root: Path) -> None:
        self.prefix = prefix
        self.root = root
        self.by_path: dict[str, StagedAsset] = {}
        self.by_dir_name: dict[tuple[str, str], list[StagedAsset]] = defaultdict(list)
        self.by_table_name: dict[tuple[str, str], list[StagedAsset]] = defaultdict(list)
        for a in assets:
            p = a.item.path
            self.by_path[os.path.abspath(p)] = a
            try:
                self.by_path.setdefault(str(p.resolve()), a)
            except OSError:
                pass
            self.by_dir_name[(p.parent.name, p.name)].append(a)
            self.by_table_name[(f"{a.table.schema.name}/{a.table.name}", p.name)].append(a)

    def find(self, value: str) -> tuple[StagedAsset | None, str]:
        """The asset for ``value`` (a path), or None and why not."""
        p = Path(value)
        candidates = [p] if p.is_absolute() else [self.root / p, self.prefix / p, Path.cwd() / p]
        for c in candidates:
            hit = self.by_path.get(os.path.abspath(c))
            if hit is not None:
                return hit, ""
        for c in candidates:
            try:
                hit = self.by_path.get(str(c.resolve()))
            except OSError:
                hit = None
            if hit is not None:
                return hit, ""
        key = normalize_asset_dir(p)
        options = self.by_table_name.get(key, []) if key else []
        if not options:
            options = self.by_dir_name.get((p.parent.name, p.name), [])
        if len(options) == 1:
            return options[0], ""
        if len(options) > 1:
            return None, f"{value!r} matches {len(options)} staged assets; use the full staged path"
        return None, f"asset file {value!r} is not staged in this execution"
