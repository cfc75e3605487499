"""One exception hierarchy for the whole project.

Everything we raise derives from :class:`DerivaUploadError`. ``DerivaMLException``
keeps the seed's name so code written against ``deriva_ml.dataset.upload`` can keep
its ``except DerivaMLException`` clauses unchanged.
"""

from __future__ import annotations


class DerivaUploadError(Exception):
    """Root of every error deriva-upload raises on purpose."""


class DerivaMLException(DerivaUploadError):
    """Seed-compatible name: raised wherever deriva-ml's upload module raised it."""

    def __init__(self, msg: str = "") -> None:
        super().__init__(msg)
        self._msg = msg


class ConfigError(DerivaMLException):
    """Bad input from the user: spec, directory, metadata, options."""


class LayoutError(ConfigError):
    """A value or path cannot be represented in the upload directory layout."""


class ServerError(DerivaMLException):
    """The catalog or object store answered with an error we cannot get past."""

    def __init__(self, msg: str = "", status: int | None = None, url: str | None = None) -> None:
        super().__init__(msg)
        self.status = status
        self.url = url


class AuthError(ServerError):
    """401/403: credentials missing or refused."""


class TransientError(ServerError):
    """A failure worth retrying (connection, timeout, 5xx, 429)."""


class IntegrityError(DerivaMLException):
    """Bytes or rows do not match what we expected (checksum mismatch, changed file)."""


class JournalError(DerivaUploadError):
    """The local journal cannot be used (corrupt, unwritable, disk full)."""
