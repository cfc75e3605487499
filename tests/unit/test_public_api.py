"""Pin the public API: every name of deriva_ml.dataset.upload, with the seed's signatures."""

from __future__ import annotations

import inspect

import deriva_upload

SEED_NAMES = {
    "NULL_SENTINEL", "upload_root", "execution_rids", "execution_root", "asset_root", "feature_root",
    "flat_asset_dir", "upload_staging_root", "manifest_path", "feature_dir", "feature_value_path",
    "table_path", "asset_file_path", "asset_type_path", "is_feature_dir", "normalize_asset_dir",
    "asset_table_upload_spec", "bulk_upload_configuration", "upload_asset", "upload_directory",
    "UploadProgress", "FileUploadState", "UploadState", "DerivaMLException",
}

SEED_PARAMS = {
    "upload_root": ["prefix"],
    "execution_rids": ["prefix"],
    "execution_root": ["prefix", "exec_rid"],
    "asset_root": ["prefix", "exec_rid"],
    "feature_root": ["prefix", "exec_rid"],
    "flat_asset_dir": ["prefix", "exec_rid", "asset_table_name"],
    "upload_staging_root": ["prefix", "exec_rid"],
    "manifest_path": ["prefix", "exec_rid"],
    "feature_dir": ["prefix", "exec_rid", "schema", "target_table", "feature_name"],
    "feature_value_path": ["prefix", "exec_rid", "schema", "target_table", "feature_name"],
    "table_path": ["prefix", "schema", "table"],
    "asset_file_path": ["prefix", "exec_rid", "asset_table", "file_name", "metadata"],
    "asset_type_path": ["prefix", "exec_rid", "asset_table"],
    "is_feature_dir": ["path"],
    "normalize_asset_dir": ["path"],
    "asset_table_upload_spec": ["model", "asset_table", "chunk_size"],
    "bulk_upload_configuration": ["model", "chunk_size"],
    "upload_asset": ["model", "file", "table", "kwargs"],
    "upload_directory": ["model", "directory", "progress_callback", "max_retries", "retry_delay", "timeout",
                         "chunk_size"],
}


def test_every_seed_name_is_exported() -> None:
    missing = {n for n in SEED_NAMES if not hasattr(deriva_upload, n)}
    assert not missing
    assert SEED_NAMES <= set(deriva_upload.__all__)


def test_seed_signatures_are_kept() -> None:
    for name, params in SEED_PARAMS.items():
        sig = inspect.signature(getattr(deriva_upload, name))
        assert list(sig.parameters)[: len(params)] == params, name
        extra = list(sig.parameters)[len(params):]
        # anything we add must be keyword-only or defaulted, so seed calls still bind
        for p in extra:
            assert sig.parameters[p].default is not inspect.Parameter.empty or \
                sig.parameters[p].kind is inspect.Parameter.VAR_KEYWORD, (name, p)


def test_seed_defaults() -> None:
    sig = inspect.signature(deriva_upload.upload_directory)
    assert sig.parameters["max_retries"].default == 3
    assert sig.parameters["retry_delay"].default == 5.0
    assert sig.parameters["timeout"].default is None
    assert deriva_upload.NULL_SENTINEL == "__NULL__"


def test_progress_types_have_the_seed_shape() -> None:
    from deriva_upload import FileUploadState, UploadProgress, UploadState

    assert [s.name for s in UploadState] == ["success", "failed", "pending", "running", "paused", "aborted",
                                             "cancelled", "timeout"]
    st = FileUploadState(state=UploadState.success, status="ok", result={"RID": "1-X"})
    assert st.rid == "1-X"
    assert FileUploadState(state=UploadState.failed, status="x", result=None).rid is None
    p = UploadProgress(file_name="a", phase="uploading")
    assert (p.bytes_completed, p.percent_complete, p.message) == (0, 0.0, "")


def test_seed_exception_is_rooted_in_the_project_error() -> None:
    assert issubclass(deriva_upload.DerivaMLException, deriva_upload.DerivaUploadError)
    assert issubclass(deriva_upload.LayoutError, deriva_upload.DerivaMLException)
