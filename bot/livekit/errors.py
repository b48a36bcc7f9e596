"""LiveKit failures, translated once at the SDK edge (``raise X from exc``)."""

from __future__ import annotations

from core.errors import TranscriberError


class LiveKitUnavailable(TranscriberError):
    """The room could not be joined: the server refused or was unreachable (retryable)."""

    retryable = True
