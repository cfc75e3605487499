"""Object naming, headers and rows: what GenericUploader would send for a file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from deriva.core.utils.mime_utils import guess_content_type

from deriva_upload.engine.items import (
    Digests,
    Item,
    asset_row,
    content_disposition,
    content_type,
    hatrac_path,
    object_url,
    row_matches,
)
from deriva_upload.errors import ConfigError

D = Digests(hashlib.md5(b"abc").hexdigest(), hashlib.sha256(b"abc").hexdigest())


def item(name: str = "scan.png", **kw) -> Item:
    base = dict(path=Path("/x") / name, rel=name, size=3, mtime_ns=1, kind="asset", schema="test-schema",
                table="Image")
    base.update(kw)
    return Item(**base)


def test_digests_base64() -> None:
    assert D.md5_b64 == "kAFQmDzST7DWlj99KOF/cg=="
    assert D.sha256_b64 == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="


def test_seed_object_name_and_disposition() -> None:
    it = item()
    assert hatrac_path(it, D) == f"/hatrac/Image/{D.md5}.scan.png"
    assert content_disposition(it) == "filename*=UTF-8''scan.png"


@pytest.mark.parametrize("name,encoded", [
    ("scan 01.png", "scan%2001.png"),
    ("a+b.txt", "a%2Bb.txt"),
    ("résumé.txt", "r%C3%A9sum%C3%A9.txt"),
    ("x:y;z.txt", "x%3Ay%3Bz.txt"),
])
def test_names_are_percent_encoded_for_hatrac(name: str, encoded: str) -> None:
    it = item(name)
    path = hatrac_path(it, D)
    assert path == f"/hatrac/Image/{D.md5}.{encoded}"
    # Hatrac accepts only [-._~A-Za-z0-9/] and %XX
    import re
    assert re.fullmatch(r"(?:[-._~A-Za-z0-9/]|%[0-9A-F]{2})+", path)
    assert content_disposition(it) == f"filename*=UTF-8''{encoded}"


def test_without_disposition_template_the_last_segment_is_sanitized() -> None:
    it = item("scan 01.png", content_disposition=None, hatrac_uri="/hatrac/t/{file_name}")
    assert hatrac_path(it, D) == "/hatrac/t/scan_01.png"
    assert content_disposition(it) is None


def test_missing_template_variable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope"):
        hatrac_path(item(hatrac_uri="/hatrac/{nope}/{md5}"), D)


@pytest.mark.parametrize("name", ["a.png", "b.tar.gz", "c.csv", "README", "d.json", "e.txt", "f.nii.gz"])
def test_content_type_like_deriva_py(name: str) -> None:
    assert content_type(item(name)) == guess_content_type(name)


def test_row_with_metadata_null_and_rid() -> None:
    it = item(metadata={"Acquisition_Date": "2024-01-02", "Acquisition_Time": None, "Subject": "1-S"}, rid="1-AB")
    row = asset_row(it, D, "/hatrac/Image/x.png:V1")
    assert row == {"MD5": D.md5, "URL": "/hatrac/Image/x.png:V1", "Length": 3, "Filename": "scan.png",
                   "RID": "1-AB", "Acquisition_Date": "2024-01-02", "Subject": "1-S"}


def test_row_uses_spec_column_map_with_sanitized_groups() -> None:
    cmap = {"MD5": "{md5}", "URL": "{URI}", "Length": "{file_size}", "Filename": "{file_name}", "RID": "{RID}",
            "Operator-Name": "{Operator_Name}"}
    it = item(metadata={"Operator-Name": "ann"}, column_map=cmap)
    row = asset_row(it, D, "/u:1")
    assert row["Operator-Name"] == "ann"
    assert "RID" not in row


def test_object_url_versioned_or_not() -> None:
    assert object_url("/hatrac/a/b:V1", True) == "/hatrac/a/b:V1"
    assert object_url("/hatrac/a/b:V1", False) == "/hatrac/a/b"


def test_row_matches() -> None:
    it = item(rid="1-R")
    assert row_matches(it, {"RID": "1-R", "Filename": "zzz"})
    assert row_matches(item(), {"Filename": "scan.png"})
    assert not row_matches(item(), {"Filename": "other.png"})


def test_item_is_immutable_and_validated() -> None:
    it = item()
    with pytest.raises(AttributeError):
        it.size = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        it.metadata["x"] = "y"  # type: ignore[index]
    with pytest.raises(ConfigError):
        item(kind="blob")


def test_for_file_reads_size(tmp_path: Path) -> None:
    f = tmp_path / "a" / "b.txt"
    f.parent.mkdir()
    f.write_bytes(b"12345")
    it = Item.for_file(f, tmp_path, "s", "T", {"c": "v"})
    assert (it.rel, it.size, it.file_name, it.hatrac_uri) == ("a/b.txt", 5, "b.txt", "/hatrac/T/{md5}.{file_name}")
