"""Bad-input corpus, part 1: cases decided before anything is sent (layout, spec, scan).

Each case asserts the exact message naming the file or field, and that nothing was
written (no directory created, no file placed). Cases that need a catalog are in
``test_corpus_catalog.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from deriva_upload import layout
from deriva_upload.engine.items import Digests, content_disposition, hatrac_path
from deriva_upload.engine.scan import scan_tree
from deriva_upload.errors import DerivaMLException, LayoutError
from deriva_upload.spec import bulk_upload_configuration
from tests.support.models import derivaml_model
from tests.reliability.helpers import AWKWARD_NAMES
from tests.support.trees import write_asset

MODEL = derivaml_model()
IMAGE = MODEL.name_to_table("Image")
SPEC = bulk_upload_configuration(MODEL)
EXEC = "1-ABC"
IMAGE_DIR_PARTS = ("deriva-ml", "execution", EXEC, "asset", "test-schema", "Image")
# Hatrac's reference server accepts only these characters in a path (protocol §4.1).
HATRAC_PATH = re.compile(r"^(/[-._~A-Za-z0-9%]+)+$")
# ... and only this Content-Disposition form (protocol §4.2).
DISPOSITION = re.compile(r"^filename\*=UTF-8''[-_.~A-Za-z0-9%]+$")
D = Digests("0" * 32, "1" * 64)


def _nothing_under_image(root: Path) -> bool:
    image = root.joinpath(*IMAGE_DIR_PARTS)
    return not image.exists() or not any(p.is_file() for p in image.rglob("*"))


# -- metadata values the layout cannot encode (one case each) ------------------------------


@pytest.mark.parametrize("value,message", [
    ("a/b", "metadata column 'Subject': value 'a/b' contains a path separator or NUL; the layout cannot store it"),
    ("", "metadata column 'Subject': value '' is empty; the layout cannot store it"),
    ("..", "metadata column 'Subject': value '..' is '..', which a directory cannot be named; "
           "the layout cannot store it"),
    ("nul\x00byte", "metadata column 'Subject': value 'nul\\x00byte' contains a path separator or NUL; "
                    "the layout cannot store it"),
    ("x" * 300, f"metadata column 'Subject': value {'x' * 60!r} is longer than 255 bytes; "
                "the layout cannot store it"),
], ids=["slash", "empty", "dotdot", "nul", "too-long"])
def test_metadata_value_the_layout_cannot_encode_is_refused_naming_the_column(tmp_path: Path, value: str,
                                                                            message: str) -> None:
    with pytest.raises(LayoutError) as exc:
        layout.asset_file_path(tmp_path, EXEC, IMAGE, "a.png", {"Subject": value})
    assert str(exc.value) == message
    assert _nothing_under_image(tmp_path)


def test_null_sentinel_as_a_real_value_is_refused_not_turned_into_null(tmp_path: Path) -> None:
    with pytest.raises(LayoutError) as exc:
        layout.asset_file_path(tmp_path, EXEC, IMAGE, "a.png", {"Subject": layout.NULL_SENTINEL})
    assert str(exc.value) == ("metadata column 'Subject': value '__NULL__' is the NULL marker '__NULL__'; "
                              "pass None for NULL; the layout cannot store it")
    assert _nothing_under_image(tmp_path)


def test_unknown_metadata_column_names_the_column_and_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(DerivaMLException) as exc:
        layout.asset_file_path(tmp_path, EXEC, IMAGE, "a.png", {"Colour": "red"})
    assert str(exc.value) == ("Metadata {'Colour': 'red'} does not match asset metadata of Image: unknown column(s) "
                              "['Colour']; allowed columns are ['Acquisition_Date', 'Acquisition_Time', 'Subject']")
    assert _nothing_under_image(tmp_path)


@pytest.mark.parametrize("name", ["", "..", "sub/dir.png"])
def test_file_name_that_is_not_one_path_segment_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(LayoutError) as exc:
        layout.asset_file_path(tmp_path, EXEC, IMAGE, name, {})
    assert str(exc.value) == f"file name {name!r} must be a single, non-empty path segment"
    assert _nothing_under_image(tmp_path)


def test_pre_allocated_rid_that_is_not_a_rid_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LayoutError) as exc:
        layout.asset_file_path(tmp_path, EXEC, IMAGE, "a.png", {}, rid="1-ABC/../x")
    assert str(exc.value) == "RID '1-ABC/../x' is not a valid ERMrest RID"
    assert _nothing_under_image(tmp_path)


# -- awkward file names: placed, named verbatim, encoded legally for Hatrac ---------------



@pytest.mark.parametrize("case", sorted(AWKWARD_NAMES))
def test_awkward_file_names_are_placed_and_encoded_for_hatrac(tmp_path: Path, case: str) -> None:
    name = AWKWARD_NAMES[case]
    f = write_asset(tmp_path, IMAGE, EXEC, name, b"data")
    result = scan_tree(tmp_path, SPEC)
    assert result.unmatched == []
    [item] = result.items
    assert item.file_name == name and item.path == f.path
    assert (item.schema, item.table, item.execution_rid) == ("test-schema", "Image", EXEC)
    path = hatrac_path(item, D)
    assert HATRAC_PATH.match(path), path
    assert unquote(path) == f"/hatrac/Image/{D.md5}.{name}"  # nothing lost or changed by the encoding
    disp = content_disposition(item)
    assert disp is not None and DISPOSITION.match(disp), disp
    assert unquote(disp.split("''", 1)[1]) == name


# -- directories that do not match the spec: reported with the reason, never dropped ---------


def test_file_above_the_metadata_directories_is_reported_with_the_expected_layout(tmp_path: Path) -> None:
    d = tmp_path.joinpath(*IMAGE_DIR_PARTS, "2024-01-01")
    d.mkdir(parents=True)
    (d / "stray.png").write_bytes(b"x")
    result = scan_tree(tmp_path, SPEC)
    assert result.items == []
    assert result.unmatched == [(
        "deriva-ml/execution/1-ABC/asset/test-schema/Image/2024-01-01/stray.png",
        "test-schema:Image expects 3 metadata directories (Acquisition_Date, Acquisition_Time, Subject) plus an "
        "optional RID directory before the file name; found 1")]


def test_unknown_asset_table_directory_is_reported(tmp_path: Path) -> None:
    d = tmp_path / "deriva-ml/execution/1-ABC/asset/test-schema/Nope/x"
    d.mkdir(parents=True)
    (d / "a.png").write_bytes(b"x")
    result = scan_tree(tmp_path, SPEC)
    assert result.items == []
    assert result.unmatched == [("deriva-ml/execution/1-ABC/asset/test-schema/Nope/x/a.png",
                                 "the upload spec has no asset mapping for table test-schema:Nope")]


def test_non_rid_directory_in_the_rid_position_is_reported(tmp_path: Path) -> None:
    d = tmp_path.joinpath(*IMAGE_DIR_PARTS, "__NULL__", "__NULL__", "__NULL__", "not a rid")
    d.mkdir(parents=True)
    (d / "a.png").write_bytes(b"x")
    result = scan_tree(tmp_path, SPEC)
    assert result.items == []
    assert result.unmatched == [(f"{'/'.join(IMAGE_DIR_PARTS)}/__NULL__/__NULL__/__NULL__/not a rid/a.png",
                                 "directory 'not a rid' in the RID position is not a RID")]


def test_table_directory_with_a_wrongly_named_file_is_reported(tmp_path: Path) -> None:
    d = tmp_path / "deriva-ml/execution/1-ABC/table/test-schema/Subject"
    d.mkdir(parents=True)
    (d / "subjects-v2.csv").write_text("Name\nx\n")
    result = scan_tree(tmp_path, SPEC)
    assert result.items == []
    assert result.unmatched == [("deriva-ml/execution/1-ABC/table/test-schema/Subject/subjects-v2.csv",
                                 "a table directory holds only Subject.csv or Subject.json")]


def test_file_outside_the_layout_is_reported(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = scan_tree(tmp_path, SPEC)
    assert result.items == []
    assert result.unmatched == [("notes.txt", "not in an asset or table directory of the upload layout, and no "
                                              "asset mapping of the upload spec matches it")]


# -- symlinks --------------------------------------------------------------------------------


def test_symlinked_directory_inside_the_tree_is_followed_once(tmp_path: Path) -> None:
    # A staging directory elsewhere in the tree, linked into the layout (a seed-style symlink farm).
    staging = tmp_path / "staging" / "imgs"
    staging.mkdir(parents=True)
    (staging / "a.png").write_bytes(b"a")
    (staging / "b.png").write_bytes(b"b")
    meta = tmp_path.joinpath(*IMAGE_DIR_PARTS, "__NULL__", "__NULL__")
    meta.mkdir(parents=True)
    os.symlink(staging, meta / "__NULL__")
    result = scan_tree(tmp_path, SPEC)
    assert sorted(i.file_name for i in result.items) == ["a.png", "b.png"]
    assert all(i.metadata == {"Acquisition_Date": None, "Acquisition_Time": None, "Subject": None}
               for i in result.items)
    # each file is placed once (through the link); its real directory is outside the layout
    assert [u for u in result.unmatched if not u[0].startswith("staging/imgs/")] == []


def test_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    f = write_asset(tmp_path, IMAGE, EXEC, "real.png", b"real")
    os.symlink(f.path.parent.parent.parent, f.path.parent / "loop")
    result = scan_tree(tmp_path, SPEC)
    assert [i.file_name for i in result.items] == ["real.png"]


def test_symlink_loop_is_refused_with_a_message(tmp_path: Path) -> None:
    f = write_asset(tmp_path, IMAGE, EXEC, "real.png", b"real")
    loop = f.path.parent / "loop"
    os.symlink(f.path.parent.parent.parent.parent, loop)
    result = scan_tree(tmp_path, SPEC)
    assert [i.file_name for i in result.items] == ["real.png"]
    rel = loop.relative_to(tmp_path).as_posix()
    reasons = [r for p, r in result.unmatched if p == rel or p.startswith(rel + "/")]
    assert reasons and "loop" in reasons[0], (
        f"a symlink that loops back into the tree must be reported, not skipped silently; "
        f"unmatched={result.unmatched}")


def test_symlink_escaping_the_tree_is_refused_with_a_message(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside" / "secret.png"
    outside.parent.mkdir()
    outside.write_bytes(b"not for upload")
    f = write_asset(root, IMAGE, EXEC, "real.png", b"real")
    link = f.path.parent / "escape.png"
    os.symlink(outside, link)
    result = scan_tree(root, SPEC)
    assert [i.file_name for i in result.items] == ["real.png"]
    rel = link.relative_to(root).as_posix()
    assert [u for u in result.unmatched if u[0] == rel], (
        f"a symlink pointing outside the upload directory must be refused and reported; got "
        f"items={[i.rel for i in result.items]} unmatched={result.unmatched}")
    reason = dict(result.unmatched)[rel]
    assert "outside" in reason and "symlink" in reason
