"""Run the dev server as a child process and wait until it listens.

For tests, benchmarks and the demo. ``command_prefix`` wraps the command, e.g.
``["ip", "netns", "exec", "ns1"]`` to run it inside a network namespace::

    with DevServerProcess(["--bind", "10.213.0.2", "--port", "0"]) as server:
        connect(server.url)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from .errors import DevServerError


class DevServerProcess:
    kind = "dev"

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        command_prefix: Sequence[str] = (),
        python: str = sys.executable,
        cwd: str | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self._args = list(args)
        self._env = dict(os.environ if env is None else env)
        self._prefix = list(command_prefix)
        self._python = python
        self._cwd = cwd
        self._startup_timeout_s = startup_timeout_s
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""
        self.http_url = ""

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.pid

    @property
    def log_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("not started")
        return Path(self._dir.name) / "devserver.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, RuntimeError):
            return ""

    def start(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="devserver-")
        ready = Path(self._dir.name) / "ready.json"
        command = [
            *self._prefix,
            self._python,
            "-m",
            "devserver",
            *self._args,
            "--ready-file",
            str(ready),
            "--exit-with-parent",  # no orphan server when the test process dies
        ]
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=self._env, cwd=self._cwd
        )
        deadline = time.monotonic() + self._startup_timeout_s
        while not ready.exists():
            if self._process.poll() is not None:
                raise DevServerError(f"dev server exited during startup:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DevServerError(f"dev server did not start in time:\n{self.log_tail()}")
            time.sleep(0.05)
        addresses = json.loads(ready.read_text())
        self.url, self.http_url = addresses["url"], addresses["http_url"]

    def terminate(self) -> None:
        """Send SIGTERM without waiting (see :meth:`wait`)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.wait(timeout_s)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit status."""
        process, self._process = self._process, None
        status: int | None = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            status = process.returncode
            self._process = process  # keep pid/log available to the caller
        if self._log is not None:
            self._log.close()
            self._log = None
        return status

    def cleanup(self) -> None:
        self.stop()
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> DevServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
