"""The bot's exception tree.

``TranscriberError`` is the root of everything the bot raises on purpose. Each error says
whether retrying the same operation may succeed (``retryable``):

* ``ConfigError``: a setting is invalid (never retryable);
* ``ModelUnavailableError``: the configured model cannot be found or loaded (never retryable);
* ``AudioInputError``: an input file is missing, empty, corrupt or not audio (never retryable);
* ``AsrError``: recognition failed at run time (retryable: the next utterance may decode);
* ``StorageError``: the database refused or was unreachable (retryable).

Foreign exceptions (CTranslate2, PyAV, asyncpg...) are translated once, at the edge that
calls them, with ``raise X from exc``.
"""

from __future__ import annotations


class TranscriberError(Exception):
    retryable: bool = False


class ConfigError(TranscriberError):
    pass


class ModelUnavailableError(TranscriberError):
    pass


class AudioInputError(TranscriberError):
    pass


class AsrError(TranscriberError):
    retryable = True


class StorageError(TranscriberError):
    retryable = True
