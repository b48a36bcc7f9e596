"""One log format for every process: readable text by default, JSON by flag, no SDK noise."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from core import logs


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_by_default_with_details_as_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    logging.getLogger("bot.worker").info("joined room", extra={"room": "m-1", "attempt": 2})
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO bot.worker: joined room attempt=2 room=m-1"), line


def test_json_by_flag(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    logging.getLogger("api").info("livekit webhook", extra={"event": "room_finished"})
    record = json.loads(capsys.readouterr().err)
    assert (record["message"], record["event"], record["level"]) == (
        "livekit webhook",
        "room_finished",
        "info",
    )


def test_the_sdks_handle_bookkeeping_is_not_logged(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    sdk = logging.getLogger("livekit")
    sdk.warning("livekit_ffi::server - Attempted to drop unknown FFI handle: 75")
    sdk.warning("signal connection failed")
    err = capsys.readouterr().err
    assert "FFI handle" not in err and "signal connection failed" in err


def test_error_fields_name_the_error_and_its_place_but_never_its_message() -> None:
    def fail() -> None:
        try:
            raise ValueError("invalid input for query argument $6: 'private words'")
        except ValueError as exc:
            raise RuntimeError("[parameters: ('private words',)]") from exc

    try:
        fail()
    except RuntimeError as exc:
        fields = logs.error_fields(exc)
    assert fields["error"] == "RuntimeError" and fields["error_causes"] == "ValueError"
    assert re.fullmatch(r"test_logs\.py:\d+:fail", fields["error_at"]), fields
    assert "private" not in json.dumps(fields)

    group = ExceptionGroup("tasks", [KeyError("private words"), OSError("private words")])
    fields = logs.error_fields(group)
    assert fields["error"] == "ExceptionGroup(KeyError, OSError)"
    assert "private" not in json.dumps(fields)
