"""A throw-away Redis server (Debian's ``redis-server``) for tests: no persistence, own port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest


class RedisProcess:
    def __init__(self, host: str, port: int, command_prefix: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: run `make test-deps` (Debian: redis-server)")
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self._dir = tempfile.TemporaryDirectory(prefix="redis-")
        self.log_path = Path(self._dir.name) / "redis.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *command_prefix,
                binary,
                "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
                "--dir", self._dir.name, "--protected-mode", "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"redis-server did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._dir.cleanup()
