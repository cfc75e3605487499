"""Reading a staged execution (both layouts, features, tables) against an offline model.

No server: these check the local half of ``upload_execution`` (what is found, how
feature paths resolve, which problems are reported with file and line).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deriva.core.ermrest_model import Column, ForeignKey, Key, Table, builtin_types

from deriva_upload import layout
from deriva_upload.execution import scan_execution
from deriva_upload.model import DerivaModel

ML, DOM = "deriva-ml", "demo-schema"
EXEC = "1-EXEC"


def _fk(col: str, schema: str, table: str, ref: str = "RID") -> dict:
    return ForeignKey.define([col], schema, table, [ref])


def _strip_client_fkeys(doc: dict) -> dict:
    doc["foreign_keys"] = [fk for fk in doc.get("foreign_keys", [])
                           if fk["referenced_columns"][0]["table_name"] != "ERMrest_Client"]
    return doc


def _assoc(name: str, cols: list[tuple[str, str, str, str]], key: list[str] | None = None) -> dict:
    coldefs = [Column.define(c, builtin_types.text, nullok=False) for c, _, _, _ in cols]
    return Table.define(name, coldefs, key_defs=[Key.define(key or [c for c, *_ in cols])],
                        fkey_defs=[_fk(c, s, t, r) for c, s, t, r in cols])


def model_doc() -> dict:
    ml = {
        "Execution": Table.define("Execution", [Column.define("Description", builtin_types.markdown)]),
        "Asset_Type": Table.define_vocabulary("Asset_Type", "deriva-ml:{RID}"),
        "Asset_Role": Table.define_vocabulary("Asset_Role", "deriva-ml:{RID}"),
        "Feature_Name": Table.define_vocabulary("Feature_Name", "deriva-ml:{RID}"),
        "Execution_Metadata": Table.define_asset(ML, "Execution_Metadata"),
        "Execution_Metadata_Asset_Type": _assoc("Execution_Metadata_Asset_Type", [
            ("Execution_Metadata", ML, "Execution_Metadata", "RID"), ("Asset_Type", ML, "Asset_Type", "Name")]),
        "Execution_Metadata_Execution": _assoc("Execution_Metadata_Execution", [
            ("Execution_Metadata", ML, "Execution_Metadata", "RID"), ("Execution", ML, "Execution", "RID"),
            ("Asset_Role", ML, "Asset_Role", "Name")], key=["Execution_Metadata", "Execution"]),
    }
    image = Table.define_asset(DOM, "Image", column_defs=[
        Column.define("Acquisition_Date", builtin_types.date),
        Column.define("Acquisition_Time", builtin_types.timestamptz),
        Column.define("Subject", builtin_types.text)])
    dom = {
        "Subject": Table.define("Subject", [Column.define("Name", builtin_types.text)]),
        "Image": image,
        "ImageQuality": Table.define_vocabulary("ImageQuality", "demo:{RID}"),
        "Image_Asset_Type": _assoc("Image_Asset_Type", [
            ("Image", DOM, "Image", "RID"), ("Asset_Type", ML, "Asset_Type", "Name")]),
        "Image_Execution": _assoc("Image_Execution", [
            ("Image", DOM, "Image", "RID"), ("Execution", ML, "Execution", "RID"),
            ("Asset_Role", ML, "Asset_Role", "Name")], key=["Image", "Execution"]),
        "Execution_Image_Quality": _assoc("Execution_Image_Quality", [
            ("Execution", ML, "Execution", "RID"), ("Image", DOM, "Image", "RID"),
            ("Feature_Name", ML, "Feature_Name", "Name"), ("ImageQuality", DOM, "ImageQuality", "Name")],
            key=["Execution", "Image", "Feature_Name"]),
    }
    return {"schemas": {
        ML: {"schema_name": ML, "tables": {k: _strip_client_fkeys(v) for k, v in ml.items()}},
        DOM: {"schema_name": DOM, "tables": {k: _strip_client_fkeys(v) for k, v in dom.items()}},
    }}


@pytest.fixture
def model() -> DerivaModel:
    return DerivaModel.from_json(model_doc())


def image_table(model: DerivaModel) -> Table:
    return model.name_to_table("Image")


def stage_regex(model: DerivaModel, prefix: Path) -> dict[str, Path]:
    img = image_table(model)
    a = layout.asset_file_path(prefix, EXEC, img, "scan 01.png",
                               {"Acquisition_Date": "2026-01-15", "Subject": None})
    a.write_bytes(b"png-a")
    b = layout.asset_file_path(prefix, EXEC, img, "model.tar.gz", {}, rid="1-AB2C")
    b.write_bytes(b"tgz")
    types = layout.asset_type_path(prefix, EXEC, img)
    types.write_text(json.dumps({"scan 01.png": ["Image"]}) + "\n"
                     + json.dumps({"scan 01.png": ["Image", "Training"]}) + "\n")
    return {"a": a, "b": b}


def test_regex_layout_items_and_types(model: DerivaModel, tmp_path: Path) -> None:
    paths = stage_regex(model, tmp_path)
    plan = scan_execution(model, tmp_path, EXEC)
    assert not plan.problems and not plan.unmatched
    by_name = {a.item.path.name: a for a in plan.assets}
    a, b = by_name["scan 01.png"], by_name["model.tar.gz"]
    assert a.item.path == paths["a"]
    assert dict(a.item.metadata) == {"Acquisition_Date": "2026-01-15", "Acquisition_Time": None, "Subject": None}
    assert a.item.rid is None and b.item.rid == "1-AB2C"
    assert (a.item.schema, a.item.table, a.item.kind) == (DOM, "Image", "asset")
    assert a.types == ("Image", "Training")  # later JSONL lines win
    assert b.types == ()
    assert dict(plan.terms[(ML, "Asset_Type", "Name")]).keys() == {"Image", "Training"}


def test_manifest_layout_items(model: DerivaModel, tmp_path: Path) -> None:
    d = layout.flat_asset_dir(tmp_path, EXEC, "Image")
    (d / "scan001.jpg").write_bytes(b"jpg")
    (d / "stray.bin").write_bytes(b"?")
    manifest = {"version": 1, "execution_rid": EXEC, "assets": {
        "Image/scan001.jpg": {"asset_table": "Image", "schema": DOM, "asset_types": ["Training"],
                              "metadata": {"Subject": "2-DEF", "Acquisition_Date": "2026-01-15"},
                              "description": "first scan", "status": "pending", "rid": "1-XY2Z"}}}
    layout.manifest_path(tmp_path, EXEC).write_text(json.dumps(manifest))
    plan = scan_execution(model, tmp_path, EXEC)
    assert not plan.problems
    [a] = plan.assets
    assert a.item.rid == "1-XY2Z" and a.types == ("Training",)
    assert dict(a.item.metadata) == {"Subject": "2-DEF", "Acquisition_Date": "2026-01-15",
                                     "Acquisition_Time": None, "Description": "first scan"}
    assert [u.file for u in plan.unmatched] == [f"deriva-ml/execution/{EXEC}/assets/Image/stray.bin"]


def test_manifest_problems_listed(model: DerivaModel, tmp_path: Path) -> None:
    layout.flat_asset_dir(tmp_path, EXEC, "Image")
    manifest = {"assets": {
        "Image/missing.jpg": {"schema": DOM, "metadata": {}},
        "Nope/x.bin": {"metadata": {}},
        "Image/bad.jpg": {"schema": DOM, "metadata": {"Colour": "red"}}}}
    (layout.flat_asset_dir(tmp_path, EXEC, "Image") / "bad.jpg").write_bytes(b"x")
    layout.manifest_path(tmp_path, EXEC).write_text(json.dumps(manifest))
    plan = scan_execution(model, tmp_path, EXEC)
    text = " | ".join(str(p) for p in plan.problems)
    assert "missing.jpg is missing" in text
    assert "Nope is not an asset table" in text
    assert "no metadata column 'Colour'" in text


def test_feature_paths_resolve_and_missing_reported(model: DerivaModel, tmp_path: Path) -> None:
    paths = stage_regex(model, tmp_path)
    fdir = layout.feature_dir(tmp_path, EXEC, DOM, "Image", "Quality")
    # CSV whose asset column holds local paths: absolute, relative to the prefix, and a missing one
    rel_b = paths["b"].relative_to(tmp_path).as_posix()
    (fdir / "Quality.csv").write_text(
        "Image,ImageQuality\n"
        f"{paths['a']},Good\n"
        f"{rel_b},Bad\n"
        f"{tmp_path / 'nowhere.png'},Good\n")
    plan = scan_execution(model, tmp_path, EXEC)
    [group] = plan.features
    assert group.table.name == "Execution_Image_Quality"
    assert [(r.line, r.values["ImageQuality"], r.values["Execution"], r.values["Feature_Name"]) for r in group.rows] \
        == [(2, "Good", EXEC, "Quality"), (3, "Bad", EXEC, "Quality")]
    rels = {a.item.path: a.item.rel for a in plan.assets}
    assert group.rows[0].asset_refs == {"Image": rels[paths["a"]]}
    assert group.rows[1].asset_refs == {"Image": rels[paths["b"]]}
    [problem] = plan.problems
    assert problem.file == f"deriva-ml/execution/{EXEC}/feature/{DOM}/Image/Quality/Quality.csv"
    assert problem.line == 4 and "nowhere.png" in problem.message and "not staged" in problem.message
    assert set(plan.terms[(DOM, "ImageQuality", "Name")]) == {"Good", "Bad"}


def test_feature_jsonl_unknown_column_and_wrong_execution(model: DerivaModel, tmp_path: Path) -> None:
    paths = stage_regex(model, tmp_path)
    path = layout.feature_value_path(tmp_path, EXEC, DOM, "Image", "Quality")
    path.write_text(json.dumps({"Image": str(paths["a"]), "ImageQuality": "Good", "RCT": None}) + "\n\n"
                    + json.dumps({"Image": str(paths["a"]), "Colour": "red"}) + "\n"
                    + json.dumps({"Image": str(paths["b"]), "ImageQuality": "Bad", "Execution": "9-ZZZZ"}) + "\n")
    plan = scan_execution(model, tmp_path, EXEC)
    assert [r.line for r in plan.features[0].rows] == [1]
    assert sorted((p.line, p.message.split(":")[0]) for p in plan.problems) == [
        (3, "demo-schema"), (4, "row belongs to execution '9-ZZZZ', not 1-EXEC")]


def test_feature_asset_already_a_rid_is_kept(model: DerivaModel, tmp_path: Path) -> None:
    path = layout.feature_value_path(tmp_path, EXEC, DOM, "Image", "Quality")
    path.write_text(json.dumps({"Image": "1-AAAA", "ImageQuality": "Good"}) + "\n")
    plan = scan_execution(model, tmp_path, EXEC)
    assert not plan.problems
    assert plan.features[0].rows[0].values["Image"] == "1-AAAA"
    assert plan.features[0].rows[0].asset_refs == {}
    assert dict(plan.asset_rids[f"{DOM}:Image"]) == {"1-AAAA": [(path.relative_to(tmp_path).as_posix(), 1)]}


def test_tables_in_both_places(model: DerivaModel, tmp_path: Path) -> None:
    layout.execution_root(tmp_path, EXEC)
    seed_place = layout.table_path(tmp_path, DOM, "Subject")
    seed_place.write_text("Name\nalice\n\nbob\n")
    exec_place = layout.execution_root(tmp_path, EXEC) / "table" / DOM / "Subject" / "Subject.csv"
    exec_place.parent.mkdir(parents=True)
    exec_place.write_text("Name,Age\ncarol,3\n")
    plan = scan_execution(model, tmp_path, EXEC)
    assert [[r.values for r in g.rows] for g in plan.tables if g.rows] == [[{"Name": "alice"}, {"Name": "bob"}]]
    assert {r.file for g in plan.tables for r in g.rows} == {"deriva-ml/table/demo-schema/Subject/Subject.csv"}
    [p] = plan.problems
    assert p.line == 2 and "Age" in p.message and p.file.endswith(f"{EXEC}/table/{DOM}/Subject/Subject.csv")


def test_regex_file_at_wrong_depth_is_unmatched(model: DerivaModel, tmp_path: Path) -> None:
    bad = layout.asset_root(tmp_path, EXEC) / DOM / "Image" / "only-one-level" / "x.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"x")
    plan = scan_execution(model, tmp_path, EXEC)
    assert plan.assets == []
    [u] = plan.unmatched
    assert "expected 3 metadata directories" in u.message


def test_missing_execution_dir(model: DerivaModel, tmp_path: Path) -> None:
    from deriva_upload.errors import ConfigError

    with pytest.raises(ConfigError, match="no staged execution"):
        scan_execution(model, tmp_path, "1-NONE")


def test_feature_json_array_file(model: DerivaModel, tmp_path: Path) -> None:
    paths = stage_regex(model, tmp_path)
    fdir = layout.feature_dir(tmp_path, EXEC, DOM, "Image", "Quality")
    (fdir / "Quality.json").write_text(json.dumps([
        {"Image": str(paths["a"]), "ImageQuality": "Good"},
        {"Image": str(paths["b"]), "ImageQuality": None},
        "not an object"]))
    (fdir / "notes.txt").write_text("ignored, but reported")
    plan = scan_execution(model, tmp_path, EXEC)
    rows = plan.features[0].rows
    assert [(r.line, r.values.get("ImageQuality")) for r in rows] == [(1, "Good"), (2, None)]
    [p] = plan.problems
    assert p.line == 3 and "JSON object" in p.message
    assert [u.file.rsplit("/", 1)[-1] for u in plan.unmatched] == ["notes.txt"]


def test_hidden_files_not_uploaded(model: DerivaModel, tmp_path: Path) -> None:
    stage_regex(model, tmp_path)
    hidden = layout.asset_root(tmp_path, EXEC) / DOM / "Image" / "a" / "b" / "c" / ".DS_Store"
    hidden.parent.mkdir(parents=True)
    hidden.write_bytes(b"x")
    plan = scan_execution(model, tmp_path, EXEC)
    assert all(a.item.path.name != ".DS_Store" for a in plan.assets)
    assert [u.message for u in plan.unmatched] == ["hidden file; not uploaded"]
