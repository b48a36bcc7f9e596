"""Helpers for driving the real LiveKit SDK against the dev server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import api, rtc

from tests.support.livekit import API_KEY, API_SECRET

SAMPLE_RATE_HZ = 48_000
FRAME_SAMPLES = 480  # 10 ms
EVENT_TIMEOUT_S = 30.0  # generous: the machine is shared and may be loaded


def room_name(prefix: str = "room") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def token(
    identity: str,
    room: str,
    *,
    kind: str | None = None,
    name: str | None = None,
    ttl: datetime.timedelta = datetime.timedelta(hours=1),
    secret: str = API_SECRET,
    **grants: Any,
) -> str:
    access = api.AccessToken(API_KEY, secret).with_identity(identity).with_ttl(ttl)
    access = access.with_grants(api.VideoGrants(room_join=True, room=room, **grants))
    if kind is not None:
        access = access.with_kind(kind)  # type: ignore[arg-type]
    if name is not None:
        access = access.with_name(name)
    return access.to_jwt()


def admin_token(room: str = "", **grants: Any) -> str:
    access = api.AccessToken(API_KEY, API_SECRET).with_identity("admin")
    return access.with_grants(api.VideoGrants(room=room, **grants)).to_jwt()


class Events:
    """Records a room's events so a test can await them (each recorded event is returned once)."""

    def __init__(self, room: rtc.Room, names: Iterable[str]) -> None:
        self._log: list[tuple[str, tuple[Any, ...]]] = []
        self._used: set[int] = set()
        self._changed = asyncio.Event()
        for name in names:
            room.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self._log.append((name, args))
            self._changed.set()

        return record

    def unreturned(self, name: str) -> int:
        """How many ``name`` events arrived that no :meth:`wait` has returned yet."""
        return sum(1 for i, (n, _) in enumerate(self._log) if n == name and i not in self._used)

    def seen(self, name: str, predicate: Callable[..., bool] = lambda *a: True) -> bool:
        return any(n == name and predicate(*args) for n, args in self._log)

    async def wait(
        self,
        name: str,
        predicate: Callable[..., bool] = lambda *a: True,
        timeout_s: float = EVENT_TIMEOUT_S,
    ) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout_s
        while True:
            for index, (event, args) in enumerate(self._log):
                if index not in self._used and event == name and predicate(*args):
                    self._used.add(index)
                    return args
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {name!r} event within {timeout_s:.0f} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


@contextlib.asynccontextmanager
async def connected(
    url: str, jwt: str, *, options: rtc.RoomOptions | None = None, events: Sequence[str] = ()
) -> AsyncIterator[tuple[rtc.Room, Events]]:
    """A connected SDK room (with its recorded events), disconnected afterwards."""
    room = rtc.Room()
    recorder = Events(room, events)
    await asyncio.wait_for(room.connect(url, jwt, options or rtc.RoomOptions()), EVENT_TIMEOUT_S)
    try:
        yield room, recorder
    finally:
        await room.disconnect()


def tone(frequency_hz: float, seconds: float, *, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (np.sin(2 * np.pi * frequency_hz * t) * amplitude * 32767).astype(np.int16)


async def publish_audio(
    room: rtc.Room, name: str = "mic", *, dtx: bool | None = None
) -> tuple[rtc.AudioSource, rtc.LocalAudioTrack, rtc.LocalTrackPublication]:
    source = rtc.AudioSource(SAMPLE_RATE_HZ, 1)
    track = rtc.LocalAudioTrack.create_audio_track(name, source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    if dtx is not None:  # unset: the SDK's default (on)
        options.dtx = dtx
    publication = await asyncio.wait_for(
        room.local_participant.publish_track(track, options), EVENT_TIMEOUT_S
    )
    return source, track, publication


async def play(source: rtc.AudioSource, pcm: np.ndarray) -> None:
    """Feed mono 48 kHz int16 samples in real time (capture_frame paces itself)."""
    usable = len(pcm) - len(pcm) % FRAME_SAMPLES
    for start in range(0, usable, FRAME_SAMPLES):
        chunk = pcm[start : start + FRAME_SAMPLES]
        await source.capture_frame(
            rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE_HZ, 1, FRAME_SAMPLES)
        )


async def play_forever(source: rtc.AudioSource, frequency_hz: float = 440.0) -> None:
    one_second = tone(frequency_hz, 1.0)
    while True:
        await play(source, one_second)


class Recorder:
    """Collects a remote audio track as mono 48 kHz int16 samples."""

    def __init__(self, track: rtc.Track) -> None:
        self._stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE_HZ, num_channels=1)
        self._chunks: list[np.ndarray] = []
        self._grew = asyncio.Event()
        self._task = asyncio.create_task(self._collect(), name="recorder")

    async def _collect(self) -> None:
        async for event in self._stream:
            self._chunks.append(np.frombuffer(event.frame.data, dtype=np.int16).copy())
            self._grew.set()

    @property
    def seconds(self) -> float:
        return sum(len(c) for c in self._chunks) / SAMPLE_RATE_HZ

    def samples(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    async def wait_for_seconds(self, seconds: float, timeout_s: float = EVENT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.seconds < seconds:
            self._grew.clear()
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._grew.wait(), max(0.0, remaining))
            except TimeoutError:
                raise TimeoutError(f"only {self.seconds:.1f} s of audio arrived") from None

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._stream.aclose()


@dataclass(frozen=True, slots=True)
class RtpCounts:
    packets: int
    lost: int = 0
    concealed_samples: int = 0
    total_samples: int = 0


async def sent_packets(track: rtc.LocalAudioTrack) -> int:
    for stat in await track.get_stats():
        if stat.HasField("outbound_rtp"):
            return int(stat.outbound_rtp.sent.packets_sent)
    return 0


async def received_counts(track: rtc.Track) -> RtpCounts:
    for stat in await track.get_stats():
        if stat.HasField("inbound_rtp"):
            inbound = stat.inbound_rtp
            return RtpCounts(
                packets=int(inbound.received.packets_received),
                lost=int(inbound.received.packets_lost),
                concealed_samples=int(inbound.inbound.concealed_samples),
                total_samples=int(inbound.inbound.total_samples_received),
            )
    return RtpCounts(packets=0)


async def forwarding_stopped(
    track: rtc.Track, quiet_s: float = 0.5, timeout_s: float = EVENT_TIMEOUT_S
) -> None:
    """Wait until the server has stopped sending ``track``: no packet of it arrived for
    ``quiet_s`` (its receiver's stats outlive the subscription; a tone sends 50 a second)."""
    deadline = time.monotonic() + timeout_s
    packets = (await received_counts(track)).packets
    changed_at = time.monotonic()
    while time.monotonic() - changed_at < quiet_s:
        if time.monotonic() > deadline:
            raise TimeoutError(f"packets of the track still arrive after {timeout_s:.0f} s")
        await asyncio.sleep(0.05)
        now = (await received_counts(track)).packets
        if now != packets:
            packets, changed_at = now, time.monotonic()


def dominant_frequency_hz(samples: np.ndarray) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE_HZ)[int(np.argmax(spectrum))])
