"""Storage errors.

Foreign exceptions (SQLAlchemy, asyncpg, OS) are translated once, in the repository:

    StorageError                base; ``retryable`` tells the caller whether to try again later
    +-- StorageUnavailable      the database cannot be reached or the connection broke (retryable)
    +-- ConflictError           a uniqueness or foreign-key rule refused the write
    |   +-- SlugTaken           a session with this slug exists
    +-- NotFound                a row the operation needs does not exist
    +-- InvalidState            the row exists but its status forbids the operation
    +-- LimitExceeded           a concurrency limit or the monthly quota refuses a new track
    +-- EmbeddedPostgresError   the embedded server could not be prepared, started or stopped
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.db.records import LimitCheck

__all__ = [
    "ConflictError",
    "EmbeddedPostgresError",
    "InvalidState",
    "LimitExceeded",
    "NotFound",
    "SlugTaken",
    "StorageError",
    "StorageUnavailable",
]


class StorageError(Exception):
    """Base of every error the storage layer raises on purpose."""

    retryable: bool = False


class StorageUnavailable(StorageError):
    """The database is unreachable or the connection broke mid-operation."""

    retryable = True


class ConflictError(StorageError):
    """A constraint refused the write (unique key, foreign key, check)."""


class SlugTaken(ConflictError):
    """Another session already uses this slug."""


class NotFound(StorageError):
    """A row the operation depends on does not exist."""


class InvalidState(StorageError):
    """The row's status forbids the operation (e.g. transcribing an ended session)."""


class LimitExceeded(StorageError):
    """One more transcribed track would break a limit; ``check`` says which and by how much."""

    def __init__(self, check: LimitCheck) -> None:
        reason = check.reason.value if check.reason is not None else "unknown"
        super().__init__(f"transcription limit exceeded: {reason}")
        self.check = check


class EmbeddedPostgresError(StorageError):
    """The embedded PostgreSQL server could not be prepared, started or stopped."""
