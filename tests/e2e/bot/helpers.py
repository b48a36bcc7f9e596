"""Helpers for the bot's end-to-end tests: worker processes, a caption listener, a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from livekit import rtc

from tests.e2e.devserver.helpers import token

REPO_ROOT = Path(__file__).resolve().parents[3]
EVAL = REPO_ROOT / "assets" / "eval"
WAIT_S = 60.0  # generous: the machine is shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """``python -m bot`` in a subprocess, with its log in a file."""

    def __init__(self, worker_id: str, env: dict[str, str], log_dir: Path) -> None:
        self.worker_id = worker_id
        self.port = free_port()
        self.log_path = log_dir / f"{worker_id}.log"
        full_env = {
            **os.environ,
            **env,
            "WORKER_ID": worker_id,
            "BOT_HTTP_HOST": "127.0.0.1",
            "BOT_HTTP_PORT": str(self.port),
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"worker exited: {self.log()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"http://127.0.0.1:{self.port}/ready") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise AssertionError(f"worker not ready: {self.log()[-3000:]}")

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.port}/metrics") as r,
        ):
            return await r.text()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return int(self.process.returncode)


@dataclass
class Received:
    at: float
    sender: str
    segment_id: str
    track_id: str
    final: bool
    text: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class CaptionListener:
    """An ordinary participant reading captions the way stock LiveKit clients do."""

    room: rtc.Room = field(default_factory=rtc.Room)
    captions: list[Received] = field(default_factory=list)
    legacy: list[rtc.Transcription] = field(default_factory=list)
    packets: list[dict[str, Any]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def join(self, url: str, room_name: str, identity: str = "carol") -> None:
        def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
            attrs = dict(reader.info.attributes or {})

            async def read() -> None:
                text = await reader.read_all()
                self.captions.append(
                    Received(
                        time.monotonic(),
                        sender,
                        attrs.get("lk.segment_id", ""),
                        attrs.get("lk.transcribed_track_id", ""),
                        attrs.get("lk.transcription_final") == "true",
                        text,
                        attrs,
                    )
                )
                self._changed.set()

            task = asyncio.get_running_loop().create_task(read())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self.room.register_text_stream_handler("lk.transcription", on_text)

        @self.room.on("transcription_received")
        def _legacy(
            segments: list[rtc.TranscriptionSegment], participant: Any, publication: Any
        ) -> None:
            self.legacy.append(
                rtc.Transcription(participant.identity if participant else "", "", segments)
            )

        @self.room.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            if packet.topic == "transcript":
                self.packets.append(json.loads(packet.data))

        # captions need no audio: no remote track objects to outlive the room (see bot.simulate)
        await self.room.connect(
            url,
            token(identity, room_name, name=identity.title()),
            rtc.RoomOptions(auto_subscribe=False),
        )

    def finals(self, sender: str | None = None) -> list[Received]:
        return [
            c
            for c in self.captions
            if c.final and c.text and (sender is None or c.sender == sender)
        ]

    async def wait_for(
        self, predicate: Callable[[CaptionListener], bool], timeout_s: float = WAIT_S
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(c.sender, c.final, c.text) for c in self.captions]
                raise AssertionError(f"captions never matched; got {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))

    async def leave(self) -> None:
        await self.room.disconnect()


class TcpProxy:
    """A loopback TCP proxy whose link can be cut, to take the database away from the bot."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.cut_active = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_active:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._pipes.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes.discard(writer)
        self._pipes.discard(up_writer)

    def cut(self) -> None:
        """Refuse new connections and break the open ones (like a dead database host)."""
        self.cut_active = True
        for w in list(self._pipes):
            w.close()

    def restore(self) -> None:
        self.cut_active = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
