"""deriva-py's unchanged GenericUploader against the embedded catalog (ERMrest + Hatrac).

The directory is laid out with ``deriva_upload.layout`` and uploaded with the spec from
``deriva_upload.spec.bulk_upload_configuration``, exactly as the seed's upload_directory
does it; then every row and every stored object is checked.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

import pytest
from deriva.transfer.upload.deriva_upload import GenericUploader

from deriva_upload import layout
from deriva_upload.model import DerivaModel
from deriva_upload.spec import bulk_upload_configuration


def _post(cat, path: str, rows: list[dict]) -> list[dict]:  # type: ignore[no-untyped-def]
    r = cat.post(path, json=rows)
    r.raise_for_status()
    return r.json()


def _run_uploader(fresh_catalog, root: Path, config: dict, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    uploader = GenericUploader(
        server={"host": fresh_catalog.hostname, "protocol": fresh_catalog.scheme, "catalog_id": fresh_catalog.catalog_id},
        config_file=str(config_file),
        credential_file=str(fresh_catalog.credential_file),
    )
    try:
        uploader.getUpdatedConfig()
        uploader.scanDirectory(str(root), purge_state=True)
        results = uploader.uploadFiles()
        # cleanup() clears the returned dict; keep what the assertions need
        return {p: {"State": r["State"], "Status": r["Status"], "Result": copy.copy(r["Result"])} for p, r in results.items()}
    finally:
        uploader.cleanup()


@pytest.fixture
def home(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """GenericUploader writes under ~/.deriva; keep that inside the test's tmp dir."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    return h


def test_upload_execution_tree(fresh_catalog, tmp_path, home) -> None:  # type: ignore[no-untyped-def]
    cat = fresh_catalog.ermrest_catalog()
    model = DerivaModel.from_catalog(cat)
    image_table = model.name_to_table("Image")
    assert model.asset_metadata("Image") == ["Acquisition_Date", "Acquisition_Time", "Subject"]

    execution = _post(cat, "/entity/deriva-ml:Execution?defaults=RID,RCT,RMT,RCB,RMB", [{"Description": "conformance run"}])[0]
    subject = _post(cat, "/entity/demo-schema:Subject?defaults=RID,RCT,RMT,RCB,RMB", [{"Name": "subject-1"}])[0]
    leases = _post(cat, "/entity/public:ERMrest_RID_Lease", [{"ID": None}, {"ID": None}])

    prefix = tmp_path / "work"
    files = {
        "scan_a.png": (b"\x89PNG image a" * 50, {"Acquisition_Date": "2024-01-02", "Acquisition_Time": "2024-01-02T03:04:05", "Subject": subject["RID"]}, leases[0]["RID"]),
        "scan_b.png": (b"image b bytes", {"Acquisition_Date": None, "Acquisition_Time": None, "Subject": None}, leases[1]["RID"]),
    }
    for name, (content, metadata, rid) in files.items():
        path = layout.asset_file_path(prefix, execution["RID"], image_table, name, metadata, rid=rid)
        path.write_bytes(content)
    assert "__NULL__" in str(layout.asset_file_path(prefix, execution["RID"], image_table, "scan_b.png", files["scan_b.png"][1], rid=leases[1]["RID"]))

    # a table file, where the table mapping's regex expects it
    table_csv = layout.execution_root(prefix, execution["RID"]) / "table" / "demo-schema" / "Subject" / "Subject.csv"
    table_csv.parent.mkdir(parents=True)
    table_csv.write_text("Name\nfrom-csv-1\nfrom-csv-2\n")

    config = bulk_upload_configuration(model)
    results = _run_uploader(fresh_catalog, layout.upload_root(prefix), config, tmp_path)

    failed = {p: r for p, r in results.items() if r["State"] != 0 or r["Result"] is None}
    assert not failed, failed
    assert len(results) == 3

    # rows: one Image row per file, metadata as placed, NULLs as NULL
    rows = {r["Filename"]: r for r in cat.get("/entity/demo-schema:Image").json()}
    assert set(rows) == set(files)
    for name, (content, metadata, _rid) in files.items():
        row = rows[name]
        md5 = hashlib.md5(content).hexdigest()
        assert row["MD5"] == md5
        assert row["Length"] == len(content)
        assert row["URL"].startswith(f"/hatrac/Image/{md5}.{name}:")
        for col, value in metadata.items():
            assert row[col] == value, (name, col)
        assert row["RCB"] == "local:user"

    # objects: the bytes behind each URL, with the digests Hatrac reports
    store = fresh_catalog.hatrac_store()
    for name, (content, _m, _r) in files.items():
        url = rows[name]["URL"]
        r = store.get(url)
        assert r.content == content
        assert r.headers["Content-MD5"] == base64.b64encode(hashlib.md5(content).digest()).decode()

    # the table file's rows
    subjects = sorted(r["Name"] for r in cat.get("/entity/demo-schema:Subject").json())
    assert subjects == ["from-csv-1", "from-csv-2", "subject-1"]

    # deriva-py 1.7.12 sends the pre-leased RID from the path in the row but without
    # ``nondefaults=RID``; ERMrest defaults RID implicitly (protocol §3.7), so the server
    # assigns its own; a client that wants the leased RID must send nondefaults=RID.
    leased = {r["RID"] for r in leases}
    assert not leased & {r["RID"] for r in rows.values()}
