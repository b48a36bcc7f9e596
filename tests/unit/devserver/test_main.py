"""The ``python -m devserver`` / ``transcriber devserver`` entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bot.cli import main as transcriber
from devserver.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[3]


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


def test_a_launched_server_exits_with_its_parent(tmp_path: Path) -> None:
    """A test run that crashes must not leave its dev server behind."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from devserver.launcher import DevServerProcess\n"
        "server = DevServerProcess(['--port', '0'])\n"
        "server.start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT
    )
    try:
        assert parent.stdout is not None
        server = psutil.Process(int(parent.stdout.readline()))
        parent.kill()
        parent.wait()
        server.wait(timeout=30)  # raises if it is still running
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
