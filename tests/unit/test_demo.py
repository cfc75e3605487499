"""The demo generator: valid images, the seed's layout, metadata (with NULLs) the engine reads back."""

from __future__ import annotations

import csv
import json
import struct
import zlib

import pytest

from deriva_upload import demo
from deriva_upload.engine.scan import scan_tree
from deriva_upload.spec import bulk_upload_configuration
from tests.support.models import derivaml_model


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        out.append((kind, body))
        pos += 12 + n
    return out


def test_tiny_png_is_a_valid_distinct_png():
    a, b = demo.tiny_png(0), demo.tiny_png(1)
    assert a != b
    chunks = _png_chunks(a)
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    w, h, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (w, h, depth, colour) == (demo.IMAGE_SIDE, demo.IMAGE_SIDE, 8, 2)
    raw = zlib.decompress(chunks[1][1])
    assert len(raw) == h * (1 + 3 * w)
    assert demo.tiny_png(7) == demo.tiny_png(7)


def test_model_file_has_exact_size_and_is_deterministic(tmp_path):
    p1, p2 = tmp_path / "a.bin", tmp_path / "b.bin"
    demo.write_model_file(p1, 3 * demo.MiB + 17, seed=1)
    demo.write_model_file(p2, 3 * demo.MiB + 17, seed=1)
    assert p1.stat().st_size == 3 * demo.MiB + 17
    assert p1.read_bytes() == p2.read_bytes()
    # not one repeated block: each MiB carries its own counter
    data = p1.read_bytes()
    assert data[: demo.MiB] != data[demo.MiB : 2 * demo.MiB]


def test_image_metadata_has_some_nulls():
    subjects = ["1-AAAA", "1-BBBB"]
    metas = [demo.image_metadata(i, subjects) for i in range(30)]
    nulls = [m for m in metas if None in m.values()]
    assert nulls and len(nulls) < len(metas)
    # every column is NULL in some image
    assert {c for m in nulls for c, v in m.items() if v is None} == {"Acquisition_Date", "Acquisition_Time",
                                                                      "Subject"}
    assert {m["Subject"] for m in metas} - {None} == set(subjects)


@pytest.mark.parametrize("with_rids", [True, False])
def test_staged_tree_is_read_back_by_the_engine(tmp_path, with_rids):
    model = derivaml_model(domain="demo-schema")
    subjects = ["1-S001", "1-S002", "1-S003"]
    n = 15
    rids = [f"9-R{k:03d}" for k in range(demo.rids_needed(n))] if with_rids else None
    staging = demo.stage_execution(tmp_path, "1-EXEC", model, subjects, n_images=n, large_bytes=100_000,
                                   rids=rids)
    assert staging.assets == {demo.IMAGE_TABLE: n, demo.EXECUTION_ASSET_TABLE: 1,
                              demo.EXECUTION_METADATA_TABLE: 2}
    assert staging.files == n + 3
    assert staging.null_values == 2  # images 6 and 13

    result = scan_tree(tmp_path / "deriva-ml" / "execution" / "1-EXEC" / "asset",
                       bulk_upload_configuration(model))
    assert result.unmatched == []
    assert len(result.items) == n + 3
    assert sum(i.size for i in result.items) == staging.bytes
    images = {i.file_name: i for i in result.items if i.table == "Image"}
    assert images["scan_00000.png"].metadata == demo.image_metadata(0, subjects)
    assert images["scan_00006.png"].metadata == demo.image_metadata(6, subjects)
    assert None in images["scan_00006.png"].metadata.values()
    if with_rids:
        assert {i.rid for i in result.items} <= set(rids)
        assert len({i.rid for i in result.items}) == n + 3

    root = tmp_path / "deriva-ml" / "execution" / "1-EXEC"
    with open(root / "feature" / "demo-schema" / "Image" / "Quality" / "Quality.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and {r["ImageQuality"] for r in rows} == {"Good", "Bad"}
    assert all(r["Image"].endswith(".png") and (tmp_path / r["Image"]).exists() for r in rows)

    types = [json.loads(line) for line in (root / "asset-type" / "demo-schema" / "Image.jsonl").read_text().splitlines()]
    assert len(types) == n and types[0] == {"scan_00000.png": ["Image"]}

    with open(root / "table" / "demo-schema" / "Subject" / "Subject.csv") as f:
        table_rows = list(csv.DictReader(f))
    assert len(table_rows) == demo.TABLE_CSV_SUBJECTS
    assert ("RID" in table_rows[0]) == with_rids


def test_staging_round_trips_through_json(tmp_path):
    s = demo.DemoStaging(prefix="p", execution_rid="1-X", files=3, assets={"a:b": 3}, subject_rids=["1-S"])
    s.save(tmp_path / "demo.json")
    assert demo.DemoStaging.load(tmp_path / "demo.json") == s


def test_too_few_rids_is_a_clear_error(tmp_path):
    from deriva_upload.errors import ConfigError

    with pytest.raises(ConfigError, match="not enough leased RIDs"):
        demo.stage_execution(tmp_path, "1-EXEC", derivaml_model(domain="demo-schema"), ["1-S"], n_images=3,
                             large_bytes=10, rids=["1-A"])
