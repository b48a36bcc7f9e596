"""The product's exception tree.

``TranscriberError`` is the root of everything the product raises on purpose. Each error says
whether retrying the same operation may succeed (``retryable``)::

    TranscriberError            base; ``retryable`` tells the caller whether to try again later
    +-- ConfigError             a setting is invalid
    +-- ModelUnavailableError   the configured model cannot be found or loaded
    +-- AudioInputError         an input file is missing, empty, corrupt or not audio
    +-- AsrError                recognition failed at run time (retryable: the next utterance
    |                           may decode)
    +-- DiarizationError        the speaker diarizer failed at run time (retryable; captions go
    |                           on with the participant's label)
    +-- LiveKitUnavailable      the room could not be joined: the LiveKit server refused or
    |                           was unreachable (retryable)
    +-- StorageError            the database refused the operation or could not be reached
        +-- StorageUnavailable      the database cannot be reached or the connection broke
        |                           (retryable)
        +-- StatementTimeout        the server cancelled a statement that ran past the
        |                           connection's ``statement_timeout`` (retryable)
        +-- ConflictError           a uniqueness or foreign-key rule refused the write
        |   +-- SlugTaken           a session with this slug exists
        +-- NotFound                a row the operation needs does not exist
        +-- InvalidState            the row exists but its status forbids the operation
        +-- LimitExceeded           a concurrency limit or the monthly quota refuses a new track
        +-- EmbeddedPostgresError   the embedded server could not be prepared, started or stopped

Foreign exceptions are translated once, at the edge that calls them, with ``raise X from exc``:
CTranslate2, PyAV and pyannote/torch in ``bot.pipeline``, the LiveKit SDK's ``ConnectError`` in
``bot.livekit.room``, SQLAlchemy, asyncpg and OS errors in the storage
package's base (``store.base``). The API maps this tree to HTTP errors in ``api.errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.records import LimitCheck

__all__ = [
    "AsrError",
    "AudioInputError",
    "ConfigError",
    "ConflictError",
    "DiarizationError",
    "EmbeddedPostgresError",
    "InvalidState",
    "LimitExceeded",
    "LiveKitUnavailable",
    "ModelUnavailableError",
    "NotFound",
    "SlugTaken",
    "StatementTimeout",
    "StorageError",
    "StorageUnavailable",
    "TranscriberError",
]


class TranscriberError(Exception):
    """Base of every error the product raises on purpose."""

    retryable: bool = False


class ConfigError(TranscriberError):
    """A setting is invalid (never retryable)."""


class ModelUnavailableError(TranscriberError):
    """The configured model cannot be found or loaded (never retryable)."""


class AudioInputError(TranscriberError):
    """An input file is missing, empty, corrupt or not audio (never retryable)."""


class AsrError(TranscriberError):
    """Recognition failed at run time; the next utterance may decode."""

    retryable = True


class DiarizationError(TranscriberError):
    """The speaker diarizer failed at run time; captions keep the participant's label."""

    retryable = True


class LiveKitUnavailable(TranscriberError):
    """The room could not be joined: the server refused or was unreachable."""

    retryable = True


class StorageError(TranscriberError):
    """Base of every error the storage layer raises on purpose."""


class StorageUnavailable(StorageError):
    """The database is unreachable or the connection broke mid-operation."""

    retryable = True


class StatementTimeout(StorageError):
    """The server cancelled a statement that ran longer than ``statement_timeout`` allows."""

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
