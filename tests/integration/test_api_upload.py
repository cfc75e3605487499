"""The seed-compatible entry points (upload_directory, upload_asset) against the embedded catalog."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from deriva_upload.api import upload_asset, upload_directory
from deriva_upload.engine.destination import Destination
from deriva_upload.engine.ermrest import ErmrestClient
from deriva_upload.engine.transport import Transport
from deriva_upload.errors import DerivaMLException
from deriva_upload.progress import FileUploadState, UploadProgress, UploadState
from tests.integration.engine_support import (
    DOMAIN,
    ML,
    Target,
    asset_rel,
    make_target,
    md5,
    write,
)


@pytest.fixture(scope="module")
def server(embedded_catalog):
    """The shared session catalog (tests/conftest.py); each test makes its own catalog id."""
    return embedded_catalog


@pytest.fixture
def target(server) -> Target:
    return make_target(server)


def test_model_gives_the_destination(target: Target) -> None:
    dest = Destination.from_model(target.model)
    assert (dest.scheme, dest.host, dest.catalog_id) == (target.dest.scheme, target.dest.host, target.catalog_id)


def test_upload_directory_results_and_progress(tmp_path: Path, target: Target) -> None:
    exec_dir = tmp_path / "deriva-ml" / "execution" / "1-EXE"
    write(tmp_path, asset_rel("Image", "2024-05-06", "__NULL__", "__NULL__", "a.png"), b"aaa")
    write(tmp_path, asset_rel("Execution_Metadata", "config.yaml", schema=ML), b"x: 1\n")
    seen: list[UploadProgress] = []
    results = upload_directory(target.model, exec_dir / "asset", progress_callback=seen.append, retry_delay=0.05)
    assert results is not None and len(results) == 2
    key = str(exec_dir / "asset" / DOMAIN / "Image" / "2024-05-06" / "__NULL__" / "__NULL__" / "a.png")
    state = results[key]
    assert isinstance(state, FileUploadState) and state.state == UploadState.success
    [row] = target.rows(DOMAIN, "Image")
    assert state.rid == row["RID"] and state.result["MD5"] == md5(b"aaa")
    assert row["Acquisition_Date"] == "2024-05-06"
    assert seen and all(isinstance(p, UploadProgress) for p in seen)
    assert any(p.phase == "uploading" for p in seen)
    assert seen[-1].phase == "complete" and seen[-1].percent_complete == 100.0


def test_upload_directory_raises_naming_failed_files(tmp_path: Path, target: Target) -> None:
    write(tmp_path, asset_rel("Image", "__NULL__", "__NULL__", "NO-SUCH-SUBJECT", "bad.png"), b"bad")
    write(tmp_path, asset_rel("Image", "__NULL__", "__NULL__", "__NULL__", "ok.png"), b"ok")
    with pytest.raises(DerivaMLException, match=r"Failed to upload 1 file\(s\).*bad\.png"):
        upload_directory(target.model, tmp_path, max_retries=0, retry_delay=0.01)
    assert [r["Filename"] for r in target.rows(DOMAIN, "Image")] == ["ok.png"]


def test_upload_directory_missing_directory(tmp_path: Path, target: Target) -> None:
    with pytest.raises(DerivaMLException, match="Directory does not exist"):
        upload_directory(target.model, tmp_path / "nope")


def test_upload_asset_seed_naming_and_columns(tmp_path: Path, target: Target) -> None:
    f = tmp_path / "report.txt"
    f.write_bytes(b"hello asset")
    table = target.model.name_to_table("Image")
    row = upload_asset(target.model, f, table, Acquisition_Date="2024-02-03")
    assert row["URL"].startswith(f"/hatrac/Image/{md5(b'hello asset')}.report.txt:")
    assert (row["Filename"], row["Length"], row["MD5"]) == ("report.txt", 11, md5(b"hello asset"))
    assert row["Acquisition_Date"] == "2024-02-03"
    again = upload_asset(target.model, f, table, Acquisition_Date="2024-02-03")
    assert again["RID"] == row["RID"] and len(target.rows(DOMAIN, "Image")) == 1
    with pytest.raises(DerivaMLException, match="not an asset table"):
        upload_asset(target.model, f, target.model.name_to_table("Subject"))
    with pytest.raises(DerivaMLException, match="Nope"):
        upload_asset(target.model, f, table, Nope="x")


def test_deriva_py_engine_gives_the_same_rows(tmp_path: Path, server) -> None:
    """GenericUploader (engine="deriva-py") and our engine leave the same rows behind."""
    a, b = make_target(server), make_target(server)

    def tree(root: Path, t: Target) -> None:
        async def lease() -> list[str]:
            async with Transport(t.dest) as tr:
                return await ErmrestClient(tr).lease_rids(2)

        r1, r2 = asyncio.run(lease())
        # the seed's spec requires the RID directory for GenericUploader to see a file at all
        write(root, asset_rel("Image", "2024-01-01", "2024-01-01T10:00:00", "__NULL__", r1, "img1.png"), b"one")
        write(root, asset_rel("Execution_Metadata", r2, "env.txt", schema=ML), b"env")

    cred = tmp_path / "credential.json"
    cred.write_text(json.dumps({server.hostname: {"cookie": "webauthn=test"}}))
    tree(tmp_path / "gu", a)
    tree(tmp_path / "ours", b)
    gu = upload_directory(a.model, tmp_path / "gu", engine="deriva-py", credential_file=str(cred))
    ours = upload_directory(b.model, tmp_path / "ours")
    assert gu is not None and ours is not None and len(gu) == len(ours) == 2

    def shape(t: Target, schema: str, table: str) -> list[dict]:
        keep = ("Filename", "Length", "MD5", "Acquisition_Date", "Acquisition_Time", "Subject")
        out = []
        for r in t.rows(schema, table):
            d = {k: r[k] for k in keep if k in r}
            d["URL"] = r["URL"].split(":", 1)[0]  # versions differ; the object name must not
            out.append(d)
        return out

    for schema, table in ((DOMAIN, "Image"), (ML, "Execution_Metadata")):
        assert shape(a, schema, table) == shape(b, schema, table)
    for t in (a, b):
        [row] = t.rows(DOMAIN, "Image")
        head = t.head(row["URL"])
        assert head.headers["Content-Type"] == "image/png"
        assert head.headers.get("Content-Disposition") == "filename*=UTF-8''img1.png"
