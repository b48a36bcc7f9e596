"""Side by side with the peers (``make bench-peers`` / ``python -m bench.peers``).

Our streaming engine, WhisperLive 0.10.0 and WhisperLiveKit 0.2.26, one system at a time in one
run, on the same machine, the same clips and the same local Whisper model folder (the one
``ASR_MODEL=base`` resolves to; no hub). Each peer runs as its own server, from its own venv under
``.cache/peers`` (``bench/peers_setup.sh`` installs them), and is fed over its websocket by this
process; ours runs in this process, like ``bench.engine``'s phrase section.

Audio: the English items of ``assets/eval`` (including the long sonnet items bench.engine's
phrase section uses) joined into one stream, ``GAP_S`` of silence between clips, 1 s before and
``TAIL_S`` after, fed at real-time pace as one session per system (a monologue with pauses: a
system that commits a segment only when speech follows gets that speech). Measured:

* phrase final latency (p50/p95): phrases split at the offline decode's pauses >= 0.5 s, like
  ``bench.engine``; a phrase's final latency is when committed text first covers its last word
  (a committed segment whose span reaches the word's midpoint), from when that word's audio was
  fed; first display likewise with any displayed text. Committed = our finals, WhisperLive's
  ``completed`` segments, WhisperLiveKit's ``lines`` (its LocalAgreement-confirmed text);
* word-stability time (p50/p95): for each word of the offline decode that the system's last
  transcript contains, when the displayed transcript up to and including that word last changed,
  from when the word's audio was fed (words compared normalised, as WER does);
* WER of the committed text vs the references (and per clip), and of everything shown;
* CPU seconds per audio second: psutil on the peer's server process tree (ours: this process),
  from the first audio sent until the session ends.

Prints a table, the ratios ours / peer per column (below 1: we are ahead) and the method
differences; writes ``bench/results/peers.json``. The machine is shared: the load average is
recorded with each system's figures.

Measured on 2026-12-07 (2-core machine shared with other jobs, load 7-9, two runs): ours final
p50 3.06 / 3.00 s, p95 8.18 / 7.15 s, WER 0.095 / 0.101, 0.37 / 0.49 CPU s per audio s;
WhisperLive final p50 16.7 / 14.7 s, WER 0.29 / 0.33, 0.44 / 0.48 CPU s/s (behind real time:
its CPU share is what it got, not what it needs); WhisperLiveKit fell minutes behind (final p50
~200 s, 13-14 of 53 phrases committed, WER 0.73). On a starved CPU the peers' figures say more
about the load than about them: rerun on a quiet machine before quoting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.engine import (
    EVAL,
    RESULTS,
    StreamRun,
    feed_stream,
    pct,
    phrase_latencies,
    phrases,
    reference_text,
)
from bot.evaluation import normalize, word_errors
from bot.pipeline.types import SAMPLE_RATE_HZ, Caption

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / ".cache" / "peers"
CLIENTS = Path(__file__).resolve().parent / "peers_clients"
ITEMS = [
    "en_jfk_inaugural",
    "en_librispeech_1272-128104-0000",
    "en_ljspeech_LJ050-0131",
    "en_librivox_sonnet001",
    "en_librivox_sonnets001-003_long",
]
SYSTEMS = ("ours", "whisper-live", "whisperlivekit")
LEAD_S = 1.0
GAP_S = 2.0
TAIL_S = 3.0
PEER_CHUNK_MS = 100
# After the audio, a peer is done when everything it shows is committed and nothing changed for
# QUIET_S; or when nothing changed for SETTLE_MAX_S (WhisperLive completes a last segment only
# after its text repeats 10 times); or DRAIN_MAX_S after the audio ended (a peer behind real
# time). Then it gets its end of stream: WhisperLiveKit commits what it holds, WhisperLive drops
# it.
QUIET_S = 4.0
SETTLE_MAX_S = 30.0
DRAIN_MAX_S = 180.0
START_TIMEOUT_S = 300.0

METHODS: dict[str, dict[str, str]] = {
    "ours": {
        "vad": "Silero v6 ONNX per 32 ms window, 300 ms pre-roll, utterance ends after 400 ms "
        "of silence (1.5 s for utterances under 3 s), utterances cut at 15 s",
        "commit": "a final per utterance at the VAD's end (speculative decode in the pause); "
        "phrase finals inside long utterances once two decodes agree on a phrase before a "
        ">= 192 ms pause; partials every 600 ms with LocalAgreement-2 stable prefixes",
        "model": "Whisper base int8 (local CTranslate2 folder), beam 1, language en, "
        "encoder trimmed to the audio, no conditioning on previous text",
    },
    "whisper-live": {
        "vad": "faster-whisper's Silero VAD (vad_filter, threshold 0.5) inside every decode",
        "commit": "re-decodes the buffer since the last commit (>= 1 s); a segment is "
        "'completed' when Whisper returns another after it, or after the same text repeats "
        "10 times (same_output_threshold); audio left after END_OF_AUDIO is dropped",
        "model": "same folder, int8 on CPU, its faster-whisper copy's defaults: beam 5, "
        "condition_on_previous_text, language en, one model loaded per connection (default)",
    },
    "whisperlivekit": {
        "vad": "Silero VAC (ONNX from its wheel, 40 ms chunks) gating the ASR; faster-whisper "
        "vad_filter inside decodes",
        "commit": "LocalAgreement-2 (backend policy 'localagreement'; its default "
        "'simulstreaming' needs PyTorch Whisper weights), buffer trimmed at segments past 15 s",
        "model": "same folder, compute_type auto, beam 5, word timestamps, "
        "condition_on_previous_text, language en, min chunk 0.1 s",
    },
}


# --- pure parts (unit-tested in tests/unit/bench/test_peers.py) --------------------------------


@dataclass(frozen=True, slots=True)
class TimedWord:
    text: str
    start_s: float
    end_s: float


State = tuple[Caption, ...]  # everything a reader sees at one moment, in time order


def _caption(key: str, text: str, final: bool, start_s: float, end_s: float) -> Caption:
    return Caption(key, text.strip(), final, round(start_s * 1000), round(end_s * 1000), "en", 0.0)


def engine_states(captions: Iterable[tuple[float, Caption]]) -> list[tuple[float, State]]:
    """Our captions as display states: each utterance shows its latest caption; an empty final
    (a rejected decode) removes it."""
    shown: dict[str, Caption] = {}
    out: list[tuple[float, State]] = []
    for t, c in captions:
        if c.is_final and not c.text.strip():
            shown.pop(c.utterance_id, None)
        else:
            shown[c.utterance_id] = c
        out.append((t, tuple(sorted(shown.values(), key=lambda x: (x.start_ms, x.end_ms)))))
    return out


def whisper_live_state(previous: State, segments: Sequence[dict[str, Any]]) -> State:
    """Apply one WhisperLive message (its last ``send_last_n_segments`` segments, the last one
    possibly not ``completed``) to the display: the message is authoritative from its first
    segment's start on; earlier completed segments stay."""
    if not segments:
        return previous
    first = min(float(s["start"]) for s in segments)
    kept = [c for c in previous if c.is_final and c.start_ms < round(first * 1000)]
    new = [
        _caption(
            f"wl-{s['start']}",
            str(s["text"]),
            bool(s.get("completed", False)),
            float(s["start"]),
            float(s["end"]),
        )
        for s in segments
    ]
    return tuple(kept + [c for c in new if c.text])


def parse_clock(value: str | float) -> float:
    """WhisperLiveKit's ``H:MM:SS.cc`` (or plain seconds) as seconds."""
    if isinstance(value, int | float):
        return float(value)
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def wlk_state(message: dict[str, Any], fed_s: float) -> State:
    """One WhisperLiveKit ``mode=full`` message as a display: its ``lines`` are committed; its
    ``buffer_transcription`` (not yet confirmed) spans from the last line's end to the audio it
    has processed (``fed_s`` less its ``remaining_time_transcription``)."""
    out: list[Caption] = []
    end = 0.0
    for i, line in enumerate(message.get("lines") or []):
        text = str(line.get("text") or "")
        if not text.strip() or line.get("speaker") == -2:  # a silence marker
            continue
        start_s, end_s = parse_clock(line["start"]), parse_clock(line["end"])
        out.append(_caption(f"wlk-{i}", text, True, start_s, end_s))
        end = max(end, end_s)
    buffer = str(message.get("buffer_transcription") or "")
    if buffer.strip():
        processed = fed_s - float(message.get("remaining_time_transcription") or 0.0)
        out.append(_caption("wlk-buffer", buffer, False, end, max(end, processed)))
    return tuple(out)


def display_words(state: State) -> list[str]:
    return normalize(" ".join(c.text for c in state))


def committed_text(state: State) -> str:
    return " ".join(c.text for c in state if c.is_final)


def new_captions(states: Sequence[tuple[float, State]]) -> list[tuple[float, Caption]]:
    """Each caption at the first moment it is displayed: what ``phrase_latencies`` reads."""
    out: list[tuple[float, Caption]] = []
    before: set[Caption] = set()
    for t, state in states:
        out.extend((t, c) for c in state if c not in before)
        before = set(state)
    return out


def stable_times(snapshots: Sequence[tuple[float, Sequence[str]]]) -> list[float]:
    """For each word of the last snapshot, the time from which every snapshot's words agree
    with the last one's up to and including that word (the word and all before it never
    change again)."""
    if not snapshots:
        return []
    final = list(snapshots[-1][1])
    agreed = []
    for _, words in snapshots:
        k = 0
        while k < min(len(words), len(final)) and words[k] == final[k]:
            k += 1
        agreed.append(k)
    out = [math.nan] * len(final)
    floor = len(final)  # min of agreed[s:] while walking back
    for s in range(len(snapshots) - 1, -1, -1):
        floor = min(floor, agreed[s])
        for j in range(floor):
            out[j] = snapshots[s][0]  # keeps moving earlier while the suffix agrees on j
    return out


def word_stability(
    states: Sequence[tuple[float, State]],
    words: Sequence[TimedWord],
    offset_s: float,
    groups: Sequence[tuple[float, float]] = (),
) -> list[float]:
    """Stability latency of each offline word the final transcript contains: when the display
    up to it last changed, from when its audio was fed (its end, shifted by ``offset_s``).

    Offline words map to the final transcript by a word alignment, one group at a time
    (``groups``: time spans, the clips): a group's words against the final words of the
    captions that overlap its span, after the previous group's last match. So the same text
    twice in the stream (sonnet 1 opens both sonnet items) cannot map a word to its twin a
    minute later.
    """
    if not states:
        return []
    snapshots = [(t, display_words(state)) for t, state in states]
    stable = stable_times(snapshots)
    final = snapshots[-1][1]
    ranges: list[tuple[int, int, Caption]] = []  # each final caption's words in ``final``
    at = 0
    for c in states[-1][1]:
        n = len(normalize(c.text))
        ranges.append((at, at + n, c))
        at += n
    out: list[float] = []
    cursor = 0
    for lo, hi in list(groups) or [(-math.inf, math.inf)]:
        ref: list[str] = []
        fed: list[float] = []
        for w in words:
            if lo <= (w.start_s + w.end_s) / 2 < hi:
                for token in normalize(w.text):
                    ref.append(token)
                    fed.append(w.end_s + offset_s)
        inside = [(a, b) for a, b, c in ranges if c.start_ms / 1000 < hi and c.end_ms / 1000 >= lo]
        if not inside:
            continue
        first = max(cursor, inside[0][0])
        matcher = difflib.SequenceMatcher(a=ref, b=final[first : inside[-1][1]], autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                out.append(stable[first + block.b + k] - fed[block.a + k])
                cursor = first + block.b + k + 1
    return out


def ratios(ours: dict[str, Any], peer: dict[str, Any], keys: Iterable[str]) -> dict[str, float]:
    """ours / peer per column (below 1: ours is lower, i.e. ahead)."""
    out: dict[str, float] = {}
    for key in keys:
        a, b = ours.get(key), peer.get(key)
        if isinstance(a, int | float) and isinstance(b, int | float) and b and not math.isnan(b):
            out[key] = round(a / b, 3)
        else:
            out[key] = math.nan
    return out


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Clip:
    name: str
    start_s: float  # where it starts in the stream
    end_s: float
    reference: str


@dataclass
class Stream:
    """The clips as one stream: audio, the offline decode's words and the clips' places, all in
    stream time."""

    audio: np.ndarray
    words: list[TimedWord]
    clips: list[Clip]

    @property
    def audio_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE_HZ


@dataclass
class Session:
    """The stream through one system: display states over time, CPU spent, what went wrong."""

    states: list[tuple[float, State]] = field(default_factory=list)
    cpu_s: float = 0.0
    audio_s: float = 0.0
    error: str = ""


def offline_timed_words(model: Any, audio: np.ndarray) -> list[TimedWord]:
    segments, _ = model.transcribe(audio, beam_size=5, word_timestamps=True, language="en")
    return [TimedWord(w.word, w.start, w.end) for s in segments for w in (s.words or [])]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE_HZ), dtype=np.float32)


def load_stream(model_path: str, names: Sequence[str]) -> Stream:
    """Join the clips; decode each offline (beam 5, word timings) with the same model."""
    from faster_whisper import WhisperModel

    from bot.pipeline.audio import read_file_audio

    offline = WhisperModel(model_path, device="cpu", compute_type="int8")
    parts = [silence(LEAD_S)]
    words: list[TimedWord] = []
    clips: list[Clip] = []
    at = LEAD_S
    for i, name in enumerate(names):
        clip = read_file_audio(EVAL / f"{name}.wav")
        words += [
            TimedWord(w.text, w.start_s + at, w.end_s + at)
            for w in offline_timed_words(offline, clip)
        ]
        length = len(clip) / SAMPLE_RATE_HZ
        clips.append(Clip(name, at, at + length, reference_text(name)))
        parts += [clip, silence(TAIL_S if i == len(names) - 1 else GAP_S)]
        at += length + GAP_S
    return Stream(np.concatenate(parts), words, clips)


def clip_text(state: State, clip: Clip) -> str:
    """The committed text of one clip: committed captions whose midpoint lies in it (or in the
    gap after it)."""
    lo, hi = clip.start_s - GAP_S / 2, clip.end_s + GAP_S / 2
    return " ".join(
        c.text for c in state if c.is_final and lo <= (c.start_ms + c.end_ms) / 2000 < hi
    )


def tree_cpu_s(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


async def run_ours(model: str, stream: Stream) -> Session:
    from bot.config import EngineSettings
    from bot.pipeline.asr import WhisperRecognizer
    from bot.pipeline.engine import SpeechEngine
    from bot.pipeline.models import resolve_model
    from bot.pipeline.vad import SileroVad

    settings = EngineSettings(asr_model=model, asr_language="en")
    resolved = resolve_model(settings.asr_model, cache_dir=settings.model_cache_dir)
    engine = SpeechEngine(
        WhisperRecognizer(resolved, settings.asr_options()),
        SileroVad(),
        stream_options=settings.stream_options(),
        max_batch=settings.asr_max_batch,
    )
    proc = psutil.Process()
    cpu0 = tree_cpu_s(proc)
    run = await feed_stream(engine, stream.audio, realtime=True, name="peers")
    cpu_s = tree_cpu_s(proc) - cpu0
    await engine.aclose()
    return Session(engine_states(run.captions), cpu_s, run.audio_s)


class PeerServer:
    """A peer's server in its own venv, on a free loopback port; its log beside its venv."""

    def __init__(self, name: str, argv: list[str], peers_dir: Path, port: int) -> None:
        self.name, self.port = name, port
        self.log_path = peers_dir / name / "server.log"
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        # HF_HUB_OFFLINE: a hub look-up fails at once instead of waiting on the network.
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.pop("PYTHONPATH", None)
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )

    async def __aenter__(self) -> PeerServer:
        self.proc = self.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return self
            except OSError:
                await asyncio.sleep(1.0)
        raise RuntimeError(f"{self.name} did not listen within {START_TIMEOUT_S} s: {self.tail()}")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def feed_peer(ws: Any, audio: np.ndarray, pcm: str, chunk_ms: int, t0: float) -> None:
    step = SAMPLE_RATE_HZ * chunk_ms // 1000
    for i in range(0, len(audio), step):
        chunk = audio[i : i + step]
        if pcm == "s16le":
            payload = (np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes()
        else:
            payload = chunk.astype("<f4").tobytes()
        await ws.send_bytes(payload)
        delay = t0 + (i + len(chunk)) / SAMPLE_RATE_HZ - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def peer_session(server: PeerServer, stream: Stream, chunk_ms: int) -> Session:
    import aiohttp

    session = Session(audio_s=stream.audio_s)
    state: State = ()
    last_change = [time.monotonic()]
    ended = asyncio.Event()
    wlk = server.name == "whisperlivekit"
    url = f"ws://127.0.0.1:{server.port}" + ("/asr?language=en&mode=full" if wlk else "/")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0, heartbeat=None) as ws,
    ):
        if not wlk:
            await ws.send_str(json.dumps(whisper_live_options("bench-peers")))
            while True:  # the server loads the model per connection, then says it is ready
                msg = await asyncio.wait_for(ws.receive(), START_TIMEOUT_S)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"whisper-live closed before SERVER_READY: {msg}")
                data = json.loads(msg.data)
                if data.get("message") == "SERVER_READY":
                    break
                if data.get("status") in ("ERROR", "WAIT"):
                    raise RuntimeError(f"whisper-live: {data}")
        proc = server.process
        cpu0 = tree_cpu_s(proc)
        t0 = time.monotonic()

        async def receive() -> None:
            nonlocal state
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                t = time.monotonic() - t0
                data = json.loads(msg.data)
                if wlk:
                    if data.get("type") == "ready_to_stop":
                        break
                    if "lines" not in data:
                        continue
                    new = wlk_state(data, min(t, session.audio_s))
                elif "segments" in data:
                    new = whisper_live_state(state, data["segments"])
                else:
                    continue
                if new != state:
                    state = new
                    session.states.append((t, state))
                    last_change[0] = time.monotonic()
            ended.set()

        receiver = asyncio.create_task(receive(), name=f"receive:{server.name}")
        await feed_peer(ws, stream.audio, "s16le" if wlk else "f32le", chunk_ms, t0)
        audio_end = time.monotonic()
        while not ended.is_set():  # wait until the display settles
            now = time.monotonic()
            quiet = min(now - last_change[0], now - audio_end)
            if quiet >= QUIET_S and all(c.is_final for c in state):
                break
            if quiet >= SETTLE_MAX_S:
                session.error = f"text shown but not committed {SETTLE_MAX_S:.0f} s after the end"
                break
            if now - audio_end >= DRAIN_MAX_S:
                session.error = f"still changing {DRAIN_MAX_S:.0f} s after the audio ended"
                break
            await asyncio.sleep(0.2)
        with contextlib.suppress(Exception):
            await ws.send_bytes(b"" if wlk else b"END_OF_AUDIO")
        with contextlib.suppress(TimeoutError):
            # WhisperLiveKit finishes what it holds, then says ready_to_stop; WhisperLive closes.
            await asyncio.wait_for(ended.wait(), DRAIN_MAX_S if wlk else 10)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
        session.cpu_s = tree_cpu_s(proc) - cpu0
    return session


def whisper_live_options(uid: str) -> dict[str, Any]:
    """What WhisperLive's own client sends (its defaults), language en."""
    return {
        "uid": uid,
        "language": "en",
        "task": "transcribe",
        "model": "base",
        "use_vad": True,
        "send_last_n_segments": 10,
        "no_speech_thresh": 0.45,
        "clip_audio": False,
        "same_output_threshold": 10,
    }


def peer_argv(name: str, peers_dir: Path, model_dir: str, port: int) -> list[str]:
    python = str(peers_dir / name / "bin" / "python")
    if name == "whisper-live":
        return [python, str(CLIENTS / "whisper_live_server.py"), str(port), model_dir]
    # WhisperLiveKit's own server. Its warm-up would download a JFK sample from the web: give it
    # ours. --pcm-input: raw s16le instead of a browser's WebM through ffmpeg.
    return [
        python,
        "-m",
        "whisperlivekit.basic_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-policy",
        "localagreement",
        "--backend",
        "faster-whisper",
        "--model_dir",
        model_dir,
        "--lan",
        "en",
        "--pcm-input",
        "--warmup-file",
        str(EVAL / "en_jfk_inaugural.wav"),
        "--log-level",
        "WARNING",
    ]


async def run_peer(
    name: str, peers_dir: Path, model_dir: str, stream: Stream, chunk_ms: int
) -> Session | str:
    python = peers_dir / name / "bin" / "python"
    if not (peers_dir / name / ".stamp").is_file() or not python.exists():
        return f"not installed: run `make bench-peers` (or sh bench/peers_setup.sh); {python}"
    port = free_port()
    argv = peer_argv(name, peers_dir, model_dir, port)
    try:
        async with PeerServer(name, argv, peers_dir, port) as server:
            return await peer_session(server, stream, chunk_ms)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# --- summarising -------------------------------------------------------------------------------


def clip_wer(state: State, clip: Clip) -> float:
    ref = normalize(clip.reference)
    return word_errors(ref, normalize(clip_text(state, clip))) / max(1, len(ref))


def summarize(session: Session, stream: Stream) -> dict[str, Any]:
    run = StreamRun(captions=new_captions(session.states), audio_s=session.audio_s)
    spans = [(w.start_s, w.end_s) for w in stream.words]
    first, final = phrase_latencies(run, spans)
    groups = [(c.start_s - GAP_S / 2, c.end_s + GAP_S / 2) for c in stream.clips]
    stability = word_stability(session.states, stream.words, 0.0, groups)
    last = session.states[-1][1] if session.states else ()
    ref = normalize(" ".join(c.reference for c in stream.clips))
    return {
        "phrases": len(phrases(spans)),
        "phrases_committed": len(final),
        "final_p50_s": round(pct(final, 50), 3),
        "final_p95_s": round(pct(final, 95), 3),
        "final_max_s": round(max(final, default=math.nan), 3),
        "first_display_p50_s": round(pct(first, 50), 3),
        "stable_p50_s": round(pct(stability, 50), 3),
        "stable_p95_s": round(pct(stability, 95), 3),
        "wer_committed": round(word_errors(ref, normalize(committed_text(last))) / len(ref), 4),
        "wer_shown": round(word_errors(ref, display_words(last)) / len(ref), 4),
        "wer_committed_per_clip": {c.name: round(clip_wer(last, c), 4) for c in stream.clips},
        "cpu_s_per_audio_s": round(session.cpu_s / max(session.audio_s, 1e-9), 3),
        "audio_s": round(session.audio_s, 1),
        "load_avg_1m": round(psutil.getloadavg()[0], 2),
        **({"note": session.error} if session.error else {}),
    }


COLUMNS = [
    ("final_p50_s", "final p50", "9.2f"),
    ("final_p95_s", "final p95", "9.2f"),
    ("first_display_p50_s", "first p50", "9.2f"),
    ("stable_p50_s", "stable p50", "10.2f"),
    ("stable_p95_s", "stable p95", "10.2f"),
    ("wer_committed", "WER", "6.3f"),
    ("cpu_s_per_audio_s", "CPU s/s", "7.2f"),
]


def print_report(report: dict[str, Any]) -> None:
    systems = report["systems"]
    print(f"\nSide by side, model {report['model_dir']}, {report['audio_s']} s of audio per system")
    head = f"{'system':16} {'phrases':>9}" + "".join(
        f" {title:>{spec.split('.')[0]}}" for _, title, spec in COLUMNS
    )
    print(head + "  load")
    for name in SYSTEMS:
        row = systems.get(name)
        if row is None:
            continue
        if "error" in row:
            print(f"{name:16} failed: {row['error']}")
            continue
        cells = "".join(f" {row[key]:{spec}}" for key, _, spec in COLUMNS)
        print(
            f"{name:16} {row['phrases_committed']:>4}/{row['phrases']:<4}{cells}"
            f"  {row['load_avg_1m']:.2f}"
        )
    for name, r in report.get("ratios", {}).items():
        cells = "".join(f" {r[key]:{spec.split('.')[0]}.2f}" for key, _, spec in COLUMNS)
        print(f"{'ours / ' + name:26}{cells}")
    print("\nMethod differences:")
    for name, method in METHODS.items():
        print(f"  {name}:")
        for key, text in method.items():
            print(f"    {key}: {text}")
    print(
        f"  all: the clips as one stream, {GAP_S:.0f} s of silence between them, real "
        f"time; ours in 20 ms frames in this process, peers in {report['peer_chunk_ms']} ms "
        "chunks over their websockets; CPU of ours includes feeding it"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--model", default="base", help="ASR_MODEL for all three systems")
    parser.add_argument(
        "--systems",
        type=lambda v: [s for s in v.split(",") if s],
        default=list(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)}",
    )
    parser.add_argument("--items", type=lambda v: v.split(","), default=ITEMS)
    parser.add_argument("--peers-dir", type=Path, default=PEERS_DIR)
    parser.add_argument("--chunk-ms", type=int, default=PEER_CHUNK_MS)
    parser.add_argument("--output", type=Path, default=RESULTS / "peers.json")
    args = parser.parse_args(argv)
    if set(args.systems) - set(SYSTEMS):
        parser.error(f"--systems: unknown {sorted(set(args.systems) - set(SYSTEMS))}")
    report = asyncio.run(bench(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_report(report)
    print(f"\nwrote {args.output}")
    return 0


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from bot.config import EngineSettings
    from bot.pipeline.models import resolve_model

    settings = EngineSettings(asr_model=args.model)
    resolved = resolve_model(settings.asr_model, cache_dir=settings.model_cache_dir)
    if not resolved.is_local:
        raise SystemExit(f"bench.peers needs a local model folder, got {resolved.path_or_hub_name}")
    model_dir = resolved.path_or_hub_name
    stream = load_stream(model_dir, args.items)
    report: dict[str, Any] = {
        "model_dir": model_dir,
        "items": args.items,
        "audio_s": round(stream.audio_s, 1),
        "peer_chunk_ms": args.chunk_ms,
        "machine": {"cpus": psutil.cpu_count(), "load_avg_1m_at_start": psutil.getloadavg()[0]},
        "methods": METHODS,
        "systems": {},
    }
    for name in args.systems:
        print(f"{name}: {stream.audio_s:.0f} s at real-time pace", file=sys.stderr)
        if name == "ours":
            result: Session | str = await run_ours(args.model, stream)
        else:
            result = await run_peer(name, args.peers_dir, model_dir, stream, args.chunk_ms)
        if isinstance(result, str):
            report["systems"][name] = {"error": result}
            print(f"  {name} failed: {result}", file=sys.stderr)
        else:
            report["systems"][name] = summarize(result, stream)
            print(f"  {name}: {report['systems'][name]}", file=sys.stderr)
    ours = report["systems"].get("ours", {"error": "not run"})
    if "error" not in ours:
        report["ratios"] = {
            name: ratios(ours, row, [key for key, _, _ in COLUMNS])
            for name, row in report["systems"].items()
            if name != "ours" and "error" not in row
        }
    report["machine"]["load_avg_1m_at_end"] = psutil.getloadavg()[0]
    return report


if __name__ == "__main__":
    raise SystemExit(main())
