"""Scanning an upload tree against the spec: every file placed or reported with a reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deriva_upload.engine.items import Item
from deriva_upload.engine.scan import SpecMatcher, in_shard, scan_tree, walk_files
from deriva_upload.errors import ConfigError
from deriva_upload.spec import bulk_upload_configuration
from tests.support.models import derivaml_model

EXEC = "deriva-ml/execution/1-EXE"


@pytest.fixture(scope="module")
def spec() -> dict:
    return bulk_upload_configuration(derivaml_model(), chunk_size=1024)


def write(root: Path, rel: str, data: bytes = b"x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def by_rel(result) -> dict[str, Item]:
    return {i.rel: i for i in result.items}


def test_asset_with_metadata_rid_and_null(tmp_path: Path, spec: dict) -> None:
    # Image metadata sorted: Acquisition_Date, Acquisition_Time, Subject
    rel = f"{EXEC}/asset/test-schema/Image/2024-01-02/__NULL__/1-SUBJ/1-ABCD/scan 01.png"
    write(tmp_path, rel, b"png")
    res = scan_tree(tmp_path, spec)
    assert res.unmatched == []
    item = by_rel(res)[rel]
    assert (item.schema, item.table, item.kind) == ("test-schema", "Image", "asset")
    assert dict(item.metadata) == {"Acquisition_Date": "2024-01-02", "Acquisition_Time": None, "Subject": "1-SUBJ"}
    assert item.rid == "1-ABCD"
    assert item.execution_rid == "1-EXE"
    assert item.file_name == "scan 01.png"
    assert item.size == 3
    assert item.chunk_size == 1024
    assert item.hatrac_uri == "/hatrac/Image/{md5}.{file_name}"


def test_asset_without_rid_segment_and_odd_names(tmp_path: Path, spec: dict) -> None:
    names = ["model.tar.gz", "README", ".hidden", "a+b.txt", "IMG_1.PNG", "résumé.txt"]
    for n in names:
        write(tmp_path, f"{EXEC}/asset/deriva-ml/Execution_Metadata/{n}")
    res = scan_tree(tmp_path, spec)
    assert res.unmatched == []
    got = {i.file_name for i in res.items}
    assert got == set(names)
    assert all(i.rid is None and i.table == "Execution_Metadata" and dict(i.metadata) == {} for i in res.items)


def test_metadata_values_the_seed_regex_rejects(tmp_path: Path, spec: dict) -> None:
    rel = f"{EXEC}/asset/test-schema/Image/2024-01-02/2024-01-02T10:00:00+01:00/S%1/f.png"
    write(tmp_path, rel)
    item = by_rel(scan_tree(tmp_path, spec))[rel]
    assert item.metadata["Acquisition_Time"] == "2024-01-02T10:00:00+01:00"
    assert item.metadata["Subject"] == "S%1"


def test_wrong_depth_is_reported_with_reason(tmp_path: Path, spec: dict) -> None:
    rel = f"{EXEC}/asset/test-schema/Image/2024-01-02/f.png"
    write(tmp_path, rel)
    res = scan_tree(tmp_path, spec)
    assert res.items == []
    [(path, reason)] = res.unmatched
    assert path == rel
    assert "3 metadata directories" in reason and "Acquisition_Date" in reason and "found 1" in reason


def test_unknown_table_and_stray_files_are_reported(tmp_path: Path, spec: dict) -> None:
    write(tmp_path, f"{EXEC}/asset/test-schema/Nope/f.png")
    write(tmp_path, f"{EXEC}/asset-type/test-schema/Image.jsonl")
    write(tmp_path, "notes.txt")
    res = scan_tree(tmp_path, spec)
    reasons = dict(res.unmatched)
    assert "no asset mapping for table test-schema:Nope" in reasons[f"{EXEC}/asset/test-schema/Nope/f.png"]
    assert f"{EXEC}/asset-type/test-schema/Image.jsonl" in reasons
    assert "notes.txt" in reasons
    assert res.items == []


def test_table_files_at_both_places(tmp_path: Path, spec: dict) -> None:
    a = f"{EXEC}/table/test-schema/Subject/Subject.csv"
    b = "deriva-ml/table/test-schema/Subject/Subject.json"
    c = f"{EXEC}/table/test-schema/Subject/other.csv"
    for r in (a, b, c):
        write(tmp_path, r)
    res = scan_tree(tmp_path, spec)
    items = by_rel(res)
    assert items[a].kind == items[b].kind == "table"
    assert items[a].table_key == "test-schema:Subject"
    assert items[a].default_columns == ("RID", "RCB", "RMB", "RCT", "RMT")
    assert "Subject.csv or Subject.json" in dict(res.unmatched)[c]


def test_root_inside_the_layout(tmp_path: Path, spec: dict) -> None:
    # upload_directory(model, <exec>/asset): the layout prefix is above the root
    f = write(tmp_path, f"{EXEC}/asset/deriva-ml/Execution_Asset/1-RID/out.bin")
    res = scan_tree(tmp_path / EXEC / "asset", spec)
    [item] = res.items
    assert item.rel == "deriva-ml/Execution_Asset/1-RID/out.bin"
    assert item.rid == "1-RID" and item.path == f


def test_first_execution_anchor_wins(tmp_path: Path, spec: dict) -> None:
    # quirk 7: a later deriva-ml segment (the ML schema name) must not be taken as the root
    rel = f"{EXEC}/asset/deriva-ml/Execution_Metadata/deriva-ml.txt"
    write(tmp_path, rel)
    [item] = scan_tree(tmp_path, spec).items
    assert item.execution_rid == "1-EXE" and item.table == "Execution_Metadata"


def test_journal_dir_and_state_files_are_skipped(tmp_path: Path, spec: dict) -> None:
    write(tmp_path, ".deriva-upload/journal-x.sqlite")
    write(tmp_path, f"{EXEC}/asset/deriva-ml/Execution_Metadata/.deriva-upload-state-h.json")
    assert [r for _, r, _ in walk_files(tmp_path)] == []


def test_symlinked_files_and_dir_loops(tmp_path: Path, spec: dict) -> None:
    src = write(tmp_path, "src/real.txt", b"abc")
    d = tmp_path / EXEC / "asset/deriva-ml/Execution_Metadata"
    d.mkdir(parents=True)
    (d / "real.txt").symlink_to(src)
    (tmp_path / "src" / "loop").symlink_to(tmp_path / "src")
    res = scan_tree(tmp_path, spec)
    item = by_rel(res)[f"{EXEC}/asset/deriva-ml/Execution_Metadata/real.txt"]
    assert item.size == 3
    unmatched = dict(u for u in res.unmatched if u[0].startswith("src/"))
    assert sorted(unmatched) == ["src/loop", "src/real.txt"]  # real.txt once; the loop reported, not followed
    assert "symlink loop" in unmatched["src/loop"]


def test_generic_mapping_uses_regex_semantics(tmp_path: Path) -> None:
    spec = {"asset_mappings": [{
        "file_pattern": r"^.*/assets/(?P<Kind>[^/]+)/(?P<basename>[^/]+)$",
        "target_table": ["isa", "file"],
        "column_map": {"URL": "{URI}", "Filename": "{file_name}", "MD5": "{md5}", "Length": "{file_size}",
                       "Kind": "{Kind}"},
        "hatrac_templates": {"hatrac_uri": "/hatrac/test/{md5}.{file_name}"},
    }]}
    write(tmp_path, "assets/raw/a.txt")
    write(tmp_path, "other/b.txt")
    res = scan_tree(tmp_path, spec)
    [item] = res.items
    assert (item.schema, item.table, dict(item.metadata)) == ("isa", "file", {"Kind": "raw"})
    assert item.content_disposition is None  # templates given without one: GenericUploader sanitizes the URI
    assert [u[0] for u in res.unmatched] == ["other/b.txt"]


def test_bad_spec_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="asset_mappings"):
        SpecMatcher({})
    with pytest.raises(ConfigError, match=re.escape("asset_mappings[0].file_pattern")):
        SpecMatcher({"asset_mappings": [{"file_pattern": "(?P<a-b>x)"}]})
    with pytest.raises(ConfigError, match="does not exist"):
        scan_tree(tmp_path / "missing", {"asset_mappings": []})


def test_shards_partition_the_files() -> None:
    rels = [f"f{i}" for i in range(200)]
    parts = [[r for r in rels if in_shard(r, (i, 3))] for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(rels)
    assert all(parts)
