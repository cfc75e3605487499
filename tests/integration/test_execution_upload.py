"""upload_execution against the embedded catalog, with executions staged by our path builders.

Every row, association and feature value is read back with deriva-py's own client and
compared exactly; reruns must change nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from deriva.core import ErmrestCatalog

from deriva_upload import execution as execution_mod
from deriva_upload import layout
from deriva_upload.engine.destination import Destination
from deriva_upload.execution import ExecutionValidationError, upload_execution, upload_executions
from deriva_upload.model import DerivaModel

DOM, ML = "demo-schema", "deriva-ml"
FAST = dict(max_retries=1, retry_delay=0.01)
# every table the execution upload may write
TABLES = [f"{DOM}:Image", f"{DOM}:Image_Asset_Type", f"{DOM}:Image_Execution", f"{DOM}:Execution_Image_Quality",
          f"{DOM}:Subject", f"{ML}:Execution_Asset", f"{ML}:Execution_Asset_Asset_Type",
          f"{ML}:Execution_Asset_Execution"]


class Env:
    """A fresh catalog, its model, a deriva-py client for checks, an Execution and two Subjects."""

    def __init__(self, handle: Any, tmp_path: Path) -> None:
        self.handle = handle
        self.catalog = ErmrestCatalog(handle.scheme, handle.hostname, handle.catalog_id,
                                      credentials=handle.credentials, caching=False)
        self.model = DerivaModel.from_catalog(self.catalog)
        self.prefix = tmp_path / "work"
        self.journal = tmp_path / "journal"
        self.exe = self.post(f"{ML}:Execution", [{"Description": "test run"}])[0]["RID"]
        s = self.post(f"{DOM}:Subject", [{"Name": "S1"}, {"Name": "S2"}])
        self.s1, self.s2 = s[0]["RID"], s[1]["RID"]

    def post(self, table: str, rows: list[dict]) -> list[dict]:
        return self.catalog.post(f"/entity/{table}", json=rows).json()

    def rows(self, table: str) -> list[dict]:
        return self.catalog.get(f"/entity/{table}").json()

    def snapshot(self) -> dict[str, list]:
        """Every row of every table the upload touches, without the modification stamps."""
        return {t: sorted((json.dumps({k: v for k, v in r.items() if k not in ("RMT", "RMB")}, sort_keys=True)
                           for r in self.rows(t))) for t in TABLES}

    def upload(self, exe: str | None = None, **kw: Any):
        return upload_execution(self.model, self.prefix, exe or self.exe, journal_dir=self.journal,
                                **{**FAST, **kw})


@pytest.fixture
def env(fresh_catalog, tmp_path: Path) -> Env:
    return Env(fresh_catalog, tmp_path)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def stage_regex_execution(env: Env) -> dict[str, Path]:
    """Three images (metadata partly NULL), a model file, asset types, a feature CSV, a table CSV."""
    img = env.model.name_to_table("Image")
    ea = env.model.name_to_table("Execution_Asset")
    p = env.prefix
    files = {
        "img1": layout.asset_file_path(p, env.exe, img, "scan1.png",
                                       {"Acquisition_Date": "2026-01-15", "Subject": env.s1}),
        "img2": layout.asset_file_path(p, env.exe, img, "scan 2.png", {"Subject": env.s2, "Acquisition_Date": None}),
        "img3": layout.asset_file_path(p, env.exe, img, "scan3.png", {}),
        "model": layout.asset_file_path(p, env.exe, ea, "model.tar.gz", {}),
    }
    for i, (name, path) in enumerate(files.items()):
        path.write_bytes(f"{name}-content-{i}".encode() * (i + 1))
    with layout.asset_type_path(p, env.exe, img).open("w") as f:
        for name in ("scan1.png", "scan 2.png", "scan3.png"):
            f.write(json.dumps({name: ["Image"]}) + "\n")
    layout.asset_type_path(p, env.exe, ea).write_text(
        json.dumps({"model.tar.gz": ["Model_File"]}) + "\n"
        + json.dumps({"model.tar.gz": ["Model_File", "Execution_Asset"]}) + "\n")  # later line wins
    fdir = layout.feature_dir(p, env.exe, DOM, "Image", "Quality")
    (fdir / "Quality.csv").write_text(f"Image,ImageQuality\n{files['img1']},Good\n{files['img2']},Bad\n")
    layout.table_path(p, DOM, "Subject").write_text("Name\ncarol\ndave\n")
    return files


def test_regex_execution_uploaded_exactly_and_rerun_changes_nothing(env: Env) -> None:
    files = stage_regex_execution(env)
    events: list = []
    report = env.upload(progress_callback=events.append)
    assert report.ok, report.to_json()
    rel = {k: v.relative_to(env.prefix / "deriva-ml" / "execution" / env.exe).as_posix() for k, v in files.items()}
    rid = {k: report.assets[rel[k]] for k in files}
    assert len(set(rid.values())) == 4

    images = {r["RID"]: r for r in env.rows(f"{DOM}:Image")}
    assert set(images) == {rid["img1"], rid["img2"], rid["img3"]}
    expect_meta = {"img1": ("2026-01-15", None, env.s1), "img2": (None, None, env.s2), "img3": (None, None, None)}
    for key, (date, time_, subject) in expect_meta.items():
        row = images[rid[key]]
        assert row["Filename"] == files[key].name
        assert row["Length"] == files[key].stat().st_size
        assert row["MD5"] == md5(files[key])
        assert row["URL"].startswith(f"/hatrac/Image/{md5(files[key])}.")
        assert (row["Acquisition_Date"], row["Acquisition_Time"], row["Subject"]) == (date, time_, subject)
    [model_row] = env.rows(f"{ML}:Execution_Asset")
    assert (model_row["RID"], model_row["Filename"], model_row["MD5"]) == (
        rid["model"], "model.tar.gz", md5(files["model"]))

    assert {(r["Image"], r["Asset_Type"]) for r in env.rows(f"{DOM}:Image_Asset_Type")} == {
        (rid[k], "Image") for k in ("img1", "img2", "img3")}
    assert {(r["Execution_Asset"], r["Asset_Type"]) for r in env.rows(f"{ML}:Execution_Asset_Asset_Type")} == {
        (rid["model"], "Model_File"), (rid["model"], "Execution_Asset")}
    assert {(r["Image"], r["Execution"], r["Asset_Role"]) for r in env.rows(f"{DOM}:Image_Execution")} == {
        (rid[k], env.exe, "Output") for k in ("img1", "img2", "img3")}
    assert {(r["Execution_Asset"], r["Execution"], r["Asset_Role"])
            for r in env.rows(f"{ML}:Execution_Asset_Execution")} == {(rid["model"], env.exe, "Output")}
    assert {(r["Execution"], r["Image"], r["Feature_Name"], r["ImageQuality"])
            for r in env.rows(f"{DOM}:Execution_Image_Quality")} == {
        (env.exe, rid["img1"], "Quality", "Good"), (env.exe, rid["img2"], "Quality", "Bad")}
    assert sorted(r["Name"] for r in env.rows(f"{DOM}:Subject")) == ["S1", "S2", "carol", "dave"]

    t = report.tables
    assert (t[f"{DOM}:Image"].inserted, t[f"{DOM}:Image"].failed) == (3, 0)
    assert t[f"{DOM}:Image"].bytes == sum(files[k].stat().st_size for k in ("img1", "img2", "img3"))
    assert t[f"{ML}:Execution_Asset"].inserted == 1
    assert t[f"{DOM}:Image_Asset_Type"].inserted == 3
    assert t[f"{ML}:Execution_Asset_Asset_Type"].inserted == 2
    assert t[f"{DOM}:Image_Execution"].inserted == 3
    assert t[f"{DOM}:Execution_Image_Quality"].inserted == 2
    assert t[f"{DOM}:Subject"].inserted == 2
    assert report.bytes_sent > 0
    as_json = json.loads(report.to_json())
    assert as_json["ok"] and as_json["assets"] == report.assets
    assert as_json["tables"][f"{DOM}:Execution_Image_Quality"]["inserted"] == 2
    assert events and {e.phase for e in events} >= {"validate", "link", "done"}

    before = env.snapshot()
    again = env.upload()
    assert again.ok, again.to_json()
    assert env.snapshot() == before
    assert again.assets == report.assets
    assert all(c.inserted == 0 and c.failed == 0 for c in again.tables.values()), again.to_json()
    assert again.tables[f"{DOM}:Image"].present == 3
    assert again.tables[f"{DOM}:Execution_Image_Quality"].present == 2
    assert again.tables[f"{DOM}:Subject"].present == 2


def test_manifest_layout_with_preleased_rid(env: Env) -> None:
    from deriva_upload.engine.ermrest import ErmrestClient
    from deriva_upload.engine.transport import Transport
    import asyncio

    async def lease() -> list[str]:
        async with Transport(Destination.from_model(env.model)) as t:
            return await ErmrestClient(t).lease_rids(1)

    [leased] = asyncio.run(lease())
    flat = layout.flat_asset_dir(env.prefix, env.exe, "Image")
    (flat / "a.jpg").write_bytes(b"jpeg-a")
    (flat / "b.jpg").write_bytes(b"jpeg-bb")
    manifest = {"version": 1, "execution_rid": env.exe, "assets": {
        "Image/a.jpg": {"asset_table": "Image", "schema": DOM, "asset_types": ["Image"],
                        "metadata": {"Subject": env.s1, "Acquisition_Date": "2026-02-01"},
                        "description": "first", "status": "pending", "rid": leased},
        "Image/b.jpg": {"asset_table": "Image", "schema": DOM, "asset_types": ["Image"],
                        "metadata": {"Subject": None}, "status": "pending", "rid": None}}}
    layout.manifest_path(env.prefix, env.exe).write_text(json.dumps(manifest))
    layout.feature_value_path(env.prefix, env.exe, DOM, "Image", "Quality").write_text(
        json.dumps({"Image": str(flat / "a.jpg"), "ImageQuality": "Good", "Feature_Name": "Quality",
                    "Execution": env.exe, "RCT": None}) + "\n"
        + json.dumps({"Image": str(flat / "b.jpg"), "ImageQuality": "Bad"}) + "\n")
    report = env.upload()
    assert report.ok, report.to_json()
    assert report.assets["assets/Image/a.jpg"] == leased
    rid_b = report.assets["assets/Image/b.jpg"]
    images = {r["RID"]: r for r in env.rows(f"{DOM}:Image")}
    assert set(images) == {leased, rid_b}
    assert (images[leased]["Description"], images[leased]["Subject"], images[leased]["Acquisition_Date"]) == (
        "first", env.s1, "2026-02-01")
    assert (images[rid_b]["Description"], images[rid_b]["Subject"]) == (None, None)
    assert {(r["Image"], r["Asset_Type"]) for r in env.rows(f"{DOM}:Image_Asset_Type")} == {
        (leased, "Image"), (rid_b, "Image")}
    assert {(r["Image"], r["ImageQuality"]) for r in env.rows(f"{DOM}:Execution_Image_Quality")} == {
        (leased, "Good"), (rid_b, "Bad")}
    assert not (env.prefix / "deriva-ml" / "execution" / env.exe / "upload-staging").exists()
    before = env.snapshot()
    assert env.upload().ok and env.snapshot() == before


def test_feature_pointing_to_missing_file_writes_nothing(env: Env) -> None:
    files = stage_regex_execution(env)
    csv_path = layout.feature_dir(env.prefix, env.exe, DOM, "Image", "Quality") / "Quality.csv"
    csv_path.write_text(f"Image,ImageQuality\n{files['img1']},Good\n{env.prefix / 'lost.png'},Bad\n")
    before = env.snapshot()
    with pytest.raises(ExecutionValidationError) as info:
        env.upload()
    [problem] = info.value.problems
    assert problem.file == csv_path.relative_to(env.prefix).as_posix() and problem.line == 3
    assert "lost.png" in problem.message and "lost.png" in str(info.value)
    assert env.snapshot() == before


def test_unknown_terms_named_before_anything_is_written(env: Env) -> None:
    files = stage_regex_execution(env)
    img = env.model.name_to_table("Image")
    with layout.asset_type_path(env.prefix, env.exe, img).open("a") as f:
        f.write(json.dumps({"scan3.png": ["Nope"]}) + "\n")
    csv_path = layout.feature_dir(env.prefix, env.exe, DOM, "Image", "Quality") / "Quality.csv"
    csv_path.write_text(f"Image,ImageQuality\n{files['img1']},Great\n")
    before = env.snapshot()
    with pytest.raises(ExecutionValidationError) as info:
        env.upload()
    text = str(info.value)
    assert "'Nope'" in text and f"{ML}:Asset_Type" in text
    assert "'Great'" in text and f"{DOM}:ImageQuality" in text
    assert env.snapshot() == before


def test_failed_asset_is_never_referenced(env: Env) -> None:
    files = stage_regex_execution(env)
    img = env.model.name_to_table("Image")
    bad = layout.asset_file_path(env.prefix, env.exe, img, "bad.png", {"Acquisition_Date": "not-a-date"})
    bad.write_bytes(b"bad")
    csv_path = layout.feature_dir(env.prefix, env.exe, DOM, "Image", "Quality") / "Quality.csv"
    csv_path.write_text(f"Image,ImageQuality\n{files['img1']},Good\n{bad},Bad\n")
    report = env.upload()
    assert not report.ok
    bad_rel = bad.relative_to(env.prefix / "deriva-ml" / "execution" / env.exe).as_posix()
    assert bad_rel not in report.assets
    feature_failures = [p for p in report.failures if p.file == csv_path.relative_to(env.prefix).as_posix()]
    assert [p.line for p in feature_failures] == [3]
    assert report.tables[f"{DOM}:Image"].failed == 1
    assert report.tables[f"{DOM}:Execution_Image_Quality"].failed == 1
    assert {r["Filename"] for r in env.rows(f"{DOM}:Image")} == {"scan1.png", "scan 2.png", "scan3.png"}
    image_rids = {r["RID"] for r in env.rows(f"{DOM}:Image")}
    for table, col in ((f"{DOM}:Image_Asset_Type", "Image"), (f"{DOM}:Image_Execution", "Image"),
                       (f"{DOM}:Execution_Image_Quality", "Image")):
        assert {r[col] for r in env.rows(table)} <= image_rids
    assert [r["ImageQuality"] for r in env.rows(f"{DOM}:Execution_Image_Quality")] == ["Good"]


def test_crash_after_links_then_rerun_completes_without_duplicates(env: Env, monkeypatch) -> None:
    stage_regex_execution(env)

    async def crash(*a: Any, **k: Any) -> None:
        raise RuntimeError("simulated crash before features")

    monkeypatch.setattr(execution_mod, "_write_features", crash)
    with pytest.raises(RuntimeError):
        env.upload()
    assert len(env.rows(f"{DOM}:Image_Execution")) == 3
    assert env.rows(f"{DOM}:Execution_Image_Quality") == []
    monkeypatch.undo()
    report = env.upload()
    assert report.ok
    assert report.tables[f"{DOM}:Image_Execution"].inserted == 0
    assert report.tables[f"{DOM}:Execution_Image_Quality"].inserted == 2
    counts = {t: len(env.rows(t)) for t in TABLES}
    assert counts == {f"{DOM}:Image": 3, f"{DOM}:Image_Asset_Type": 3, f"{DOM}:Image_Execution": 3,
                      f"{DOM}:Execution_Image_Quality": 2, f"{DOM}:Subject": 4, f"{ML}:Execution_Asset": 1,
                      f"{ML}:Execution_Asset_Asset_Type": 2, f"{ML}:Execution_Asset_Execution": 1}


def test_crash_after_rids_recorded_does_not_duplicate_table_rows(env: Env, monkeypatch) -> None:
    stage_regex_execution(env)
    real = execution_mod.Writer._insert_with_rids
    state = {"crashed": False}

    async def crash_once(self, schema, name, rows, tally):
        if name == "Subject" and not state["crashed"]:
            state["crashed"] = True
            raise RuntimeError("simulated crash between RID ledger and insert")
        return await real(self, schema, name, rows, tally)

    monkeypatch.setattr(execution_mod.Writer, "_insert_with_rids", crash_once)
    with pytest.raises(RuntimeError):
        env.upload()
    assert sorted(r["Name"] for r in env.rows(f"{DOM}:Subject")) == ["S1", "S2"]
    report = env.upload()
    assert report.ok and report.tables[f"{DOM}:Subject"].inserted == 2
    assert sorted(r["Name"] for r in env.rows(f"{DOM}:Subject")) == ["S1", "S2", "carol", "dave"]
    assert env.upload().tables[f"{DOM}:Subject"].inserted == 0
    assert len(env.rows(f"{DOM}:Subject")) == 4


def test_upload_executions_handles_each_rid(env: Env) -> None:
    stage_regex_execution(env)
    other = env.post(f"{ML}:Execution", [{"Description": "second"}])[0]["RID"]
    ea = env.model.name_to_table("Execution_Asset")
    path = layout.asset_file_path(env.prefix, other, ea, "metrics.json", {})
    path.write_text('{"acc": 1}')
    layout.execution_root(env.prefix, "9-NOPE")  # staged directory of an execution the catalog lacks
    reports = upload_executions(env.model, env.prefix, journal_dir=env.journal, **FAST)
    assert set(reports) == {env.exe, other, "9-NOPE"}
    assert reports[env.exe].ok and reports[other].ok
    assert not reports["9-NOPE"].ok and "9-NOPE" in reports["9-NOPE"].error
    links = {(r["Execution_Asset"], r["Execution"]) for r in env.rows(f"{ML}:Execution_Asset_Execution")}
    assert (reports[other].assets["asset/deriva-ml/Execution_Asset/metrics.json"], other) in links


def test_bad_table_row_isolated_and_reported_with_line(env: Env) -> None:
    layout.execution_root(env.prefix, env.exe)
    path = layout.table_path(env.prefix, ML, "Dataset")
    path.write_text("Description,Deleted\nok one,true\nbroken,maybe\nok two,false\n")
    report = env.upload()
    assert not report.ok
    [problem] = report.failures
    assert (problem.file, problem.line) == ("deriva-ml/table/deriva-ml/Dataset/Dataset.csv", 3)
    assert "Dataset" in problem.message
    tally = report.tables[f"{ML}:Dataset"]
    assert (tally.inserted, tally.present, tally.failed) == (2, 0, 1)
    rows = env.rows(f"{ML}:Dataset")
    assert sorted((r["Description"], r["Deleted"]) for r in rows) == [("ok one", True), ("ok two", False)]
    again = env.upload()
    t2 = again.tables[f"{ML}:Dataset"]
    assert (t2.inserted, t2.present, t2.failed) == (0, 2, 1)
    assert len(env.rows(f"{ML}:Dataset")) == 2


def test_sync_api_works_inside_a_running_event_loop(env: Env) -> None:
    """Notebooks run an event loop; the seed-style sync call must still work there."""
    import asyncio

    ea = env.model.name_to_table("Execution_Asset")
    layout.asset_file_path(env.prefix, env.exe, ea, "notes.txt", {}).write_text("hello")

    async def inside_loop():
        return env.upload()

    report = asyncio.run(inside_loop())
    assert report.ok and report.tables[f"{ML}:Execution_Asset"].inserted == 1
    assert report.requests > 0 and report.to_dict()["requests"] == report.requests
