"""Log lines of every process (API, bot): static message, details from ``extra=``; readable text
by default (``LOG_FORMAT=text``: details as ``key=value``, as the dev server writes them), or
one JSON object a line (``LOG_FORMAT=json``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import traceback
from typing import Any

# attributes every LogRecord has; anything else came from ``extra=``
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and k[:1] != "_"}
        base = super().format(record)
        if not extra:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in sorted(extra.items()))


def _not_sdk_bookkeeping(record: logging.LogRecord) -> bool:
    """The LiveKit SDK warns "Attempted to drop unknown FFI handle" when a room, stream or track
    is released twice on disconnect (Python and Rust both let go): nothing is wrong, and in the
    logs of every leave it reads like a fault."""
    return "Attempted to drop unknown FFI handle" not in record.getMessage()


def without_exception_messages(record: logging.LogRecord) -> bool:
    """A logger filter for third-party loggers that log exceptions with ``exc_info`` (aiohttp's
    server logs a malformed request's error, whose message quotes the request line, query and
    all): the traceback becomes :func:`error_fields`, and the message is dropped."""
    if record.exc_info and record.exc_info[1] is not None:
        record.__dict__.update(error_fields(record.exc_info[1]))
        record.exc_info = None
        record.exc_text = None
    return True


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    handler.addFilter(_not_sdk_bookkeeping)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def error_fields(exc: BaseException) -> dict[str, str]:
    """An exception as log details without its message, which may quote transcript text,
    identities or SQL parameters (asyncpg's "invalid input for query argument $5: '...'"
    does, whatever the engine's ``hide_parameters``): its type, the types of its causes, and
    the innermost frames where it was raised. For ``logger.error(..., extra=error_fields(e))``
    where ``logger.exception`` would print the messages."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = _leaves(exc)
        fields = error_fields(leaves[0])
        fields["error"] = f"{type(exc).__name__}({', '.join(type(e).__name__ for e in leaves)})"
        return fields
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    fields = {"error": type(exc).__name__}
    if len(chain) > 1:
        fields["error_causes"] = " <- ".join(type(e).__name__ for e in chain[1:])
    frames = traceback.extract_tb(chain[-1].__traceback__)[-3:]
    if frames:
        fields["error_at"] = " > ".join(
            f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in frames
        )
    return fields


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out
