"""The ``python -m devserver`` / ``transcriber devserver`` entry point."""

from __future__ import annotations

import socket

import pytest

from bot.cli import main as transcriber
from devserver.__main__ import main


def test_help_through_the_transcriber_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        transcriber(["devserver", "--help"])
    assert exited.value.code == 0
    assert "--webhook-url" in capsys.readouterr().out


def test_invalid_environment_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEVSERVER_PORT", "not-a-port")
    assert main([]) == 2
    assert "DEVSERVER_PORT must be an integer" in capsys.readouterr().err


def test_busy_port_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--bind", "127.0.0.1", "--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err
