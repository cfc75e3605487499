"""deriva-upload: fast, resumable, verifiable uploads of ML outputs into DERIVA.

Every public name of deriva-ml's ``deriva_ml.dataset.upload`` is importable from
here with the same signature, so ``from deriva_upload import upload_directory``
replaces ``from deriva_ml.dataset.upload import upload_directory``.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    AuthError,
    ConfigError,
    DerivaMLException,
    DerivaUploadError,
    IntegrityError,
    JournalError,
    LayoutError,
    ServerError,
    TransientError,
)
from .layout import (
    NULL_SENTINEL,
    asset_file_path,
    asset_root,
    asset_type_path,
    execution_rids,
    execution_root,
    feature_dir,
    feature_root,
    feature_value_path,
    flat_asset_dir,
    is_feature_dir,
    manifest_path,
    normalize_asset_dir,
    table_path,
    upload_root,
    upload_staging_root,
)
from .model import DerivaModel
from .processors import NullSentinelProcessor
from .progress import FileUploadState, UploadCallback, UploadProgress, UploadState
from .spec import asset_table_upload_spec, bulk_upload_configuration

__version__ = "0.1.0"

# Upload entry points import the engine (httpx, asyncio machinery); load them on first use.
_LAZY = {
    "upload_directory": "api",
    "upload_asset": "api",
    "upload_execution": "execution",
    "upload_executions": "execution",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NULL_SENTINEL",
    "AuthError",
    "ConfigError",
    "DerivaMLException",
    "DerivaModel",
    "DerivaUploadError",
    "FileUploadState",
    "IntegrityError",
    "JournalError",
    "LayoutError",
    "NullSentinelProcessor",
    "ServerError",
    "TransientError",
    "UploadCallback",
    "UploadProgress",
    "UploadState",
    "asset_file_path",
    "asset_root",
    "asset_table_upload_spec",
    "asset_type_path",
    "bulk_upload_configuration",
    "execution_rids",
    "execution_root",
    "feature_dir",
    "feature_root",
    "feature_value_path",
    "flat_asset_dir",
    "is_feature_dir",
    "manifest_path",
    "normalize_asset_dir",
    "table_path",
    "upload_asset",
    "upload_directory",
    "upload_execution",
    "upload_executions",
    "upload_root",
    "upload_staging_root",
]
