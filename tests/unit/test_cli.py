from __future__ import annotations

import pytest

from bot import cli


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("transcribe", "bot", "api", "migrate", "devserver"):
        assert name in out


def test_unknown_command_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_no_command_is_exit_2() -> None:
    assert cli.main([]) == 2


def test_demo_refuses_an_unknown_livekit_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.demo import livekit_choice

    monkeypatch.setenv("DEMO_LIVEKIT", "cloud")
    with pytest.raises(SystemExit, match="DEMO_LIVEKIT must be auto, dev or official"):
        livekit_choice()
    monkeypatch.setenv("DEMO_LIVEKIT", "dev")
    assert livekit_choice() == "dev"
