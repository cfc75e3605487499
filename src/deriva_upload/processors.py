"""deriva-py upload processors that our upload spec names.

The seed's spec names ``deriva_ml.asset.null_sentinel_processor.NullSentinelProcessor``,
which no installable package provides (quirk 14). Ours lives here so GenericUploader
can import it wherever deriva-upload is installed.
"""

from __future__ import annotations

from typing import Any

from deriva.transfer.upload.processors.base_processor import BaseProcessor

from .layout import NULL_SENTINEL


class NullSentinelProcessor(BaseProcessor):
    """Turn ``__NULL__`` path captures into None, so the column is omitted and stored as NULL.

    GenericUploader runs it after copying regex groups into its metadata and before
    rendering ``column_map``; ``interpolateDict`` drops the None-valued templates.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metadata = kwargs.get("metadata")
        if self.metadata is None:
            self.metadata = {}

    def process(self) -> dict:
        for key, value in list(self.metadata.items()):
            if value == NULL_SENTINEL:
                self.metadata[key] = None
        return self.metadata
