"""Problems found in a staged execution, and the error that lists them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deriva_upload.errors import ConfigError

# Most problems quoted in a validation error message (all are on the exception).
MAX_PROBLEMS_IN_MESSAGE = 20


@dataclass(frozen=True)
class Problem:
    """Something wrong with one staged file (and line), found before or during the upload."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class ExecutionValidationError(ConfigError):
    """The staged execution cannot be uploaded as is; nothing was written."""

    def __init__(self, exec_rid: str, problems: Sequence[Problem]) -> None:
        self.exec_rid = exec_rid
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:MAX_PROBLEMS_IN_MESSAGE])
        more = len(self.problems) - MAX_PROBLEMS_IN_MESSAGE
        suffix = f"; and {more} more" if more > 0 else ""
        super().__init__(f"execution {exec_rid}: {len(self.problems)} problem(s), nothing uploaded: {shown}{suffix}")
