"""Bad input to ``transcriber transcribe``: one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "transcribe", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.wav", "no such file"),
        (lambda tmp: write(tmp / "empty.wav", b""), "empty"),
        (lambda tmp: write(tmp / "text.mp3", b"not audio at all\n" * 50), "not a readable audio"),
        (lambda tmp: tmp, "not a regular file"),
        (lambda tmp: write(tmp / "trunc.wav", b"RIFF\x00\x00"), "not a readable"),
    ],
    ids=["missing", "empty", "not-audio", "directory", "truncated-header"],
)
def test_bad_file_exits_2_with_one_line(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    result = run(str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "Errno" not in lines[0], "the cause in words, not a raw error code"
    assert result.stdout == ""


def test_help_is_plain_text_for_a_terminal() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and "transcribe" in result.stdout.lower()


def test_unknown_format_and_missing_argument_exit_2(tmp_path: Path) -> None:
    bad_format = run(str(tmp_path / "x.wav"), "--format", "pdf")
    assert bad_format.returncode == 2 and "invalid choice" in bad_format.stderr
    assert "Traceback" not in bad_format.stderr
    no_file = run()
    assert no_file.returncode == 2 and "Traceback" not in no_file.stderr


def test_unavailable_model_exits_2(tmp_path: Path) -> None:
    wav = REPO / "assets" / "eval" / "en_librispeech_1272-128104-0000.wav"
    result = run(str(wav), "--model", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "not available" in result.stderr and "Traceback" not in result.stderr
