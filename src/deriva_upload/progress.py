"""The seed's progress and result types, unchanged in shape.

``UploadState``, ``FileUploadState`` and ``UploadProgress`` are what
``deriva_ml.dataset.upload`` hands to callers; code that reads ``.state``,
``.status``, ``.result`` or ``.rid`` keeps working with our engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict, computed_field

RID = str
"""An ERMrest resource identifier, e.g. ``1-ABCD``."""


class UploadState(Enum):
    """File upload operation states (same members and values as deriva-ml/deriva-py)."""

    success = 0
    failed = 1
    pending = 2
    running = 3
    paused = 4
    aborted = 5
    cancelled = 6
    timeout = 7


class FileUploadState(BaseModel):
    """State and result of one file's upload, as the seed returns it per path."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    state: UploadState
    status: str
    result: Any

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rid(self) -> RID | None:
        return self.result and self.result["RID"]


@dataclass
class UploadProgress:
    """Progress information handed to an upload's ``progress_callback``."""

    file_path: str = ""
    file_name: str = ""
    bytes_completed: int = 0
    bytes_total: int = 0
    percent_complete: float = 0.0
    phase: str = ""
    message: str = ""


class UploadCallback(Protocol):
    """Protocol for upload progress callbacks."""

    def __call__(self, progress: UploadProgress) -> None: ...


ProgressCallback = Callable[[UploadProgress], None]
