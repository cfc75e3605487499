"""The seed's path builders, and the seed bugs they fix (seed-quirks.md items 1-5, 7, 9-12)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from deriva_upload import layout as L
from deriva_upload.errors import DerivaMLException, LayoutError
from deriva_upload.spec import asset_table_upload_spec, bulk_upload_configuration
from tests.support.models import derivaml_model
from tests.support import seed

MODEL = derivaml_model()
IMAGE = MODEL.name_to_table("Image")
EXEC_META = MODEL.name_to_table("Execution_Metadata")


def test_upload_root_and_execution_dirs_are_created(tmp_path: Path) -> None:
    assert L.upload_root(tmp_path) == tmp_path / "deriva-ml"
    assert (tmp_path / "deriva-ml").is_dir()
    root = L.execution_root(tmp_path, "1-ABC")
    assert root == tmp_path / "deriva-ml" / "execution" / "1-ABC" and root.is_dir()
    for fn, sub in [(L.asset_root, "asset"), (L.feature_root, "feature"), (L.upload_staging_root, "upload-staging")]:
        p = fn(tmp_path, "1-ABC")
        assert p == root / sub and p.is_dir()
    assert L.flat_asset_dir(tmp_path, "1-ABC", "Image") == root / "assets" / "Image"
    assert (root / "assets" / "Image").is_dir()


def test_manifest_path_creates_no_file(tmp_path: Path) -> None:
    p = L.manifest_path(tmp_path, "R")
    assert p == tmp_path / "deriva-ml/execution/R/asset-manifest.json"
    assert not p.exists() and p.parent.is_dir()


def test_feature_paths(tmp_path: Path) -> None:
    d = L.feature_dir(tmp_path, "R", "s", "Image", "Quality")
    assert d == tmp_path / "deriva-ml/execution/R/feature/s/Image/Quality" and d.is_dir()
    assert L.feature_value_path(tmp_path, "R", "s", "Image", "Quality") == d / "Quality.jsonl"


def test_table_path_is_the_seed_location(tmp_path: Path) -> None:
    p = L.table_path(tmp_path, "s", "Subject")
    assert p == tmp_path / "deriva-ml/table/s/Subject/Subject.csv"
    assert p.parent.is_dir() and not p.exists()


def test_asset_type_path(tmp_path: Path) -> None:
    p = L.asset_type_path(tmp_path, "R", IMAGE)
    assert p == tmp_path / "deriva-ml/execution/R/asset-type/test-schema/Image.jsonl"
    assert p.parent.is_dir()


def test_execution_rids_lists_directories_only_and_sorted(tmp_path: Path) -> None:
    # quirk 12: the seed raised FileNotFoundError here ...
    assert L.execution_rids(tmp_path) == []
    for rid in ["2-B", "1-A"]:
        L.execution_root(tmp_path, rid)
    (tmp_path / "deriva-ml/execution/stray.txt").write_text("x")  # ... and returned this as a RID
    assert L.execution_rids(tmp_path) == ["1-A", "2-B"]


def test_asset_file_path_uses_sorted_metadata_order(tmp_path: Path) -> None:
    # quirk 1: the seed walked a set; any other order puts values in the wrong columns.
    md = {"Subject": "1-S", "Acquisition_Date": "2026-01-15", "Acquisition_Time": "10:00"}
    p = L.asset_file_path(tmp_path, "R", IMAGE, "a.png", dict(reversed(list(md.items()))), rid="1-X")
    rel = p.relative_to(tmp_path / "deriva-ml/execution/R/asset/test-schema/Image")
    assert rel.parts == ("2026-01-15", "10:00", "1-S", "1-X", "a.png")
    spec = asset_table_upload_spec(MODEL, "Image")
    m = re.search(spec["file_pattern"], p.as_posix())
    assert m and m["Acquisition_Date"] == "2026-01-15" and m["Subject"] == "1-S" and m["RID"] == "1-X"
    # the seed with another set order builds a path whose captures land in the wrong columns
    bad = seed.seed_asset_file_path(tmp_path, "R", IMAGE, "a.png", md,
                                    column_order=["Subject", "Acquisition_Time", "Acquisition_Date"])
    mb = re.search(spec["file_pattern"], (bad.parent / "1-X" / bad.name).as_posix())
    assert mb and mb["Acquisition_Date"] == "1-S"


def test_none_and_missing_metadata_become_the_null_sentinel(tmp_path: Path) -> None:
    # quirk 2: the seed wrote an explicit None as a directory called "None".
    seed_path = seed.seed_asset_file_path(tmp_path, "R", IMAGE, "a.png", {"Subject": None},
                                          column_order=["Acquisition_Date", "Acquisition_Time", "Subject"])
    assert seed_path.parts[-4:] == ("__NULL__", "__NULL__", "None", "a.png")
    p = L.asset_file_path(tmp_path, "R", IMAGE, "a.png", {"Subject": None, "Acquisition_Date": "2026-01-01"})
    assert p.parts[-4:] == ("2026-01-01", L.NULL_SENTINEL, L.NULL_SENTINEL, "a.png")


def test_rid_segment_makes_the_seed_spec_match(tmp_path: Path) -> None:
    # quirk 3: without the RID segment the spec's own file_pattern never matches.
    spec = asset_table_upload_spec(MODEL, "Execution_Metadata")
    no_rid = L.asset_file_path(tmp_path, "R", EXEC_META, "config.json", {})
    assert re.search(spec["file_pattern"], no_rid.as_posix()) is None
    with_rid = L.asset_file_path(tmp_path, "R", EXEC_META, "config.json", {}, rid="1-ABCD")
    m = re.search(spec["file_pattern"], with_rid.as_posix())
    assert m and m["RID"] == "1-ABCD" and m["execution_rid"] == "R"


def test_unknown_metadata_key_raises_naming_allowed_columns_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DerivaMLException) as err:
        L.asset_file_path(tmp_path, "R", IMAGE, "a.png", {"Colour": "red"})
    msg = str(err.value)
    assert "Colour" in msg and "Acquisition_Date" in msg and "Subject" in msg
    assert not (tmp_path / "deriva-ml").exists()  # quirk 10: validate first, then create


@pytest.mark.parametrize("value, why", [
    ("a/b", "separator"), ("", "empty"), (".", "'.'"), ("..", "'..'"),
    (L.NULL_SENTINEL, "NULL marker"), ("x" * 300, "longer than"),
])
def test_values_the_layout_cannot_store_raise_before_writing(tmp_path: Path, value: str, why: str) -> None:
    with pytest.raises(LayoutError, match=why) as err:
        L.asset_file_path(tmp_path, "R", IMAGE, "a.png", {"Subject": value})
    assert "Subject" in str(err.value)
    assert not (tmp_path / "deriva-ml").exists()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_bad_file_names_raise(tmp_path: Path, name: str) -> None:
    with pytest.raises(LayoutError):
        L.asset_file_path(tmp_path, "R", IMAGE, name, {})


def test_bad_rid_raises(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="RID"):
        L.asset_file_path(tmp_path, "R", IMAGE, "a.png", {}, rid="1 2")


def test_is_feature_dir_accepts_str_and_path(tmp_path: Path) -> None:
    d = L.feature_dir(tmp_path, "1-R", "test-schema", "Image", "Quality")
    with pytest.raises(AttributeError):  # quirk 11: the seed called .as_posix() on a str
        seed.seed_is_feature_dir(str(d))
    for arg in (d, str(d)):
        m = L.is_feature_dir(arg)
        assert m and (m["execution_rid"], m["schema"], m["target_table"], m["feature_name"]) == (
            "1-R", "test-schema", "Image", "Quality")
    assert L.is_feature_dir(d / "Quality.jsonl") is None
    assert L.is_feature_dir(tmp_path / "nothing") is None


def test_execution_is_anchored_at_the_first_deriva_ml_segment(tmp_path: Path) -> None:
    # quirk 7: a feature on deriva-ml:Execution has a later "deriva-ml" segment; the seed's
    # greedy regex reads that part as an asset path with the feature name as execution RID.
    p = tmp_path / "deriva-ml/execution/1-R/feature/deriva-ml/Execution/Score/asset/Image/x.png"
    assert seed.seed_normalize_asset_dir(p) == ("Image/x", "x.png")
    assert L.normalize_asset_dir(p) is None


def test_normalize_asset_dir(tmp_path: Path) -> None:
    p = L.asset_file_path(tmp_path, "R", IMAGE, "scan 01.png", {"Subject": "S"})
    assert L.normalize_asset_dir(p) == ("test-schema/Image", "scan 01.png")
    assert L.normalize_asset_dir(str(p)) == ("test-schema/Image", "scan 01.png")
    assert L.normalize_asset_dir(tmp_path / "elsewhere/x.png") is None


def test_decode_segment_round_trips() -> None:
    assert L.decode_segment(L.encode_segment("c", None)) is None
    assert L.decode_segment(L.encode_segment("c", "2026-01-01")) == "2026-01-01"


segment_text = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 .:-_") + ["é", "ß", "漢", "Ω"]), min_size=1, max_size=20
).filter(lambda s: s not in (".", "..", L.NULL_SENTINEL) and s.strip(" ") == s and s.strip() != "")


@settings(max_examples=150, deadline=None)
@given(values=st.fixed_dictionaries({}, optional={
    "Acquisition_Date": st.one_of(st.none(), segment_text),
    "Acquisition_Time": st.one_of(st.none(), segment_text),
    "Subject": st.one_of(st.none(), segment_text),
}))
def test_every_built_path_matches_the_spec_and_gives_the_metadata_back(tmp_path_factory, values) -> None:
    prefix = tmp_path_factory.mktemp("p")
    p = L.asset_file_path(prefix, "1-EX", IMAGE, "img_1.png", values, rid="1-ABC")
    spec = asset_table_upload_spec(MODEL, "Image")
    m = re.search(spec["file_pattern"], p.as_posix())
    assert m is not None, p
    for col in MODEL.asset_metadata("Image"):
        assert L.decode_segment(m[col]) == values.get(col)
    assert m["RID"] == "1-ABC" and m["execution_rid"] == "1-EX"
    assert L.normalize_asset_dir(p) == ("test-schema/Image", "img_1.png")
    fd = L.feature_dir(prefix, "1-EX", "test-schema", "Image", "Feat_1")
    assert L.is_feature_dir(fd)["feature_name"] == "Feat_1"


def test_table_regex_matches_execution_table_files(tmp_path: Path) -> None:
    spec = bulk_upload_configuration(MODEL)
    table_mapping = spec["asset_mappings"][-1]
    p = L.execution_root(tmp_path, "1-R") / "table/test-schema/Subject/Subject.csv"
    m = re.search(table_mapping["file_pattern"], p.as_posix())
    assert m and m["schema"] == "test-schema" and m["table"] == "Subject"
    # quirk 4: the seed's table_path() is outside the pattern (our engine uploads it anyway)
    assert re.search(table_mapping["file_pattern"], L.table_path(tmp_path, "s", "T").as_posix()) is None
