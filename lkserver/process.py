"""Run the official LiveKit server as a child process with a generated config.

For tests, benchmarks and the demo::

    config = ServerConfig.on(address, api_key="devkey", api_secret="...", webhook_urls=[url])
    with OfficialServerProcess(config, command_prefix=netns.command([])) as server:
        connect(server.url)

The config binds the signalling port to one address and advertises only that address for media
(``rtc.node_ip`` + ``rtc.ips``, ``use_external_ip: false``: no STUN look-up, no other interface).
The file is JSON, which the server's YAML reader takes as it is.

Stopping: the server drains on SIGTERM (it waits for participants to leave) and stops at once on
a second one; :meth:`OfficialServerProcess.stop` sends both, then SIGKILL if it is still there.
:meth:`OfficialServerProcess.kill` is the outage: SIGKILL, and :meth:`start` brings the same
server back (same config, same ports). The child dies with the thread that started it
(``PR_SET_PDEATHSIG``), so a crashed test run leaves no server behind: start it from a thread
that outlives it (the main thread, in tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from .install import InstallError, find_binary

_PR_SET_PDEATHSIG = 1


class LiveKitServer(Protocol):
    """What tests, benchmarks and the demo need of a LiveKit server, ours or the official one."""

    kind: str  # "dev" or "official"
    url: str  # ws://host:port, for the SDKs
    http_url: str  # http://host:port, for the server API (Twirp) and validate

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 15.0) -> int | None: ...

    def cleanup(self) -> None: ...

    def log_tail(self, lines: int = 40) -> str: ...


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class ServerConfig:
    bind_address: str
    port: int
    rtc_tcp_port: int
    rtc_udp_start: int
    rtc_udp_end: int
    api_key: str
    api_secret: str
    webhook_urls: tuple[str, ...] = ()
    redis_address: str | None = None
    empty_timeout_s: int = 300
    departure_timeout_s: int = 20
    log_level: str = "info"
    extra: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def on(
        cls,
        bind_address: str,
        *,
        api_key: str,
        api_secret: str,
        node: int = 0,
        webhook_urls: Sequence[str] = (),
        redis_address: str | None = None,
        empty_timeout_s: int = 300,
        departure_timeout_s: int = 20,
        extra: Mapping[str, object] | None = None,
    ) -> ServerConfig:
        """A config on ``bind_address``; ``node`` keeps several servers' ports apart; ``extra``
        adds top-level settings (``region``, ``node_selector``, ...)."""
        return cls(
            bind_address=bind_address,
            port=free_port(),
            rtc_tcp_port=free_port(),
            rtc_udp_start=50_000 + node * 1_000,
            rtc_udp_end=50_000 + node * 1_000 + 999,
            api_key=api_key,
            api_secret=api_secret,
            webhook_urls=tuple(webhook_urls),
            redis_address=redis_address,
            empty_timeout_s=empty_timeout_s,
            departure_timeout_s=departure_timeout_s,
            extra=dict(extra or {}),
        )

    def document(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "port": self.port,
            "bind_addresses": [self.bind_address],
            "rtc": {
                "tcp_port": self.rtc_tcp_port,
                "port_range_start": self.rtc_udp_start,
                "port_range_end": self.rtc_udp_end,
                "use_external_ip": False,
                "node_ip": self.bind_address,
                "ips": {"includes": [f"{self.bind_address}/32"]},
            },
            "keys": {self.api_key: self.api_secret},
            "room": {
                "empty_timeout": self.empty_timeout_s,
                "departure_timeout": self.departure_timeout_s,
            },
            "logging": {"level": self.log_level, "pion_level": "error"},
        }
        if self.webhook_urls:
            doc["webhook"] = {"api_key": self.api_key, "urls": list(self.webhook_urls)}
        if self.redis_address:
            doc["redis"] = {"address": self.redis_address}
        doc.update(self.extra)
        return doc


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class OfficialServerProcess:
    kind = "official"

    def __init__(
        self,
        config: ServerConfig,
        *,
        binary: Path | None = None,
        command_prefix: Sequence[str] = (),
        startup_timeout_s: float = 60.0,
        name: str = "livekit",
    ) -> None:
        found = binary or find_binary()
        if found is None:
            raise InstallError(
                "the official LiveKit server is not installed: run `make livekit-server`"
            )
        self.binary = found
        self.config = config
        self.name = name
        self._prefix = list(command_prefix)
        self._startup_timeout_s = startup_timeout_s
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = f"ws://{config.bind_address}:{config.port}"
        self.http_url = f"http://{config.bind_address}:{config.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("not started")
        return Path(self._dir.name) / f"{self.name}.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, RuntimeError):
            return ""

    def start(self) -> None:
        """Start (or, after :meth:`kill`, restart) and wait until the HTTP port answers."""
        if self.running:
            return
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="livekit-server-")
        config_path = Path(self._dir.name) / f"{self.name}.json"
        config_path.write_text(json.dumps(self.config.document(), indent=2))
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [*self._prefix, str(self.binary), "--config", str(config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._answers():
            if self._process.poll() is not None:
                raise InstallError(f"livekit-server exited during startup:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise InstallError(f"livekit-server did not start in time:\n{self.log_tail()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.http_url + "/", timeout=1.0) as reply:
                return int(reply.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """The outage: SIGKILL, no goodbye to anyone. :meth:`start` brings it back."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_log()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (drain), a second SIGTERM (stop now), then SIGKILL; returns the exit status."""
        process = self._process
        status: int | None = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(min(2.0, timeout_s))
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            status = process.returncode
        self._close_log()
        return status

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> OfficialServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
