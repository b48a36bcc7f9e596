"""Simulated meeting participants: real recordings spoken into a LiveKit room.

Used by ``make demo``, the end-to-end tests and the benchmarks. A ``SimulatedSpeaker`` joins
with a token, publishes a microphone track and sends audio in real time (10 ms frames at
48 kHz, the rate LiveKit clients use), recording when each clip's speech went out.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc

from bot.pipeline.audio import read_file_audio
from bot.pipeline.types import SAMPLE_RATE_HZ

RATE_HZ = 48_000
FRAME = RATE_HZ // 100  # 10 ms
_SILENCE = np.zeros(FRAME, dtype=np.int16)
QUEUE_MS = 500


def to_pcm48k(audio: np.ndarray) -> np.ndarray:
    """16 kHz float32 -> 48 kHz int16 (linear interpolation; plenty for speech)."""
    factor = RATE_HZ // SAMPLE_RATE_HZ
    up = np.interp(np.arange(len(audio) * factor) / factor, np.arange(len(audio)), audio)
    pcm: np.ndarray = (np.clip(up, -1.0, 1.0) * 32767).astype(np.int16)
    return pcm


@dataclass
class Turn:
    """A clip to say after ``pause_s`` of silence; the times are filled in as it is spoken."""

    clip: Path
    pause_s: float = 0.0
    # Monotonic times at which the clip's first and last audio leave the microphone's queue
    # for WebRTC: what a real microphone would capture then, so latencies count from there.
    started_at: float = 0.0
    ended_at: float = 0.0


@dataclass
class SimulatedSpeaker:
    identity: str
    room: rtc.Room = field(default_factory=rtc.Room)
    # The SDK's queue between this client's Python loop and WebRTC. A real microphone is read
    # by a real-time thread; this one is fed by a Python loop that a loaded machine stalls.
    # When the queue runs dry, LiveKit's AudioSource sends nothing for 100 ms, then silence:
    # at load 11 on 2 cores a 100 ms queue ran dry inside "Americans" and the room received
    # the word with holes in it (python -m bench.room_audio on the bot's AUDIO_DUMP_DIR).
    # 500 ms rides out such stalls; speech times below count the queued audio.
    source: rtc.AudioSource = field(
        default_factory=lambda: rtc.AudioSource(RATE_HZ, 1, queue_size_ms=QUEUE_MS)
    )
    # Opus DTX, on by default in LiveKit clients: silence is sent as a packet per 400 ms.
    dtx: bool = True
    publication: rtc.LocalTrackPublication | None = None
    sent_s: float = 0.0  # audio frames captured by this client
    # Frames captured after the queue had run dry: the room got a hole (or silence) there.
    underruns: int = 0
    _primed: bool = False
    published_at: float = 0.0
    unpublished_at: float = 0.0
    muted_s: float = 0.0
    _muted_at: float | None = None

    @property
    def published_s(self) -> float:
        """How long the track was published and unmuted: what the bot should meter (WebRTC
        keeps sending frames, silence if nothing is captured, while a track is live)."""
        end = self.unpublished_at or time.monotonic()
        muted = self.muted_s + (end - self._muted_at if self._muted_at is not None else 0.0)
        return end - self.published_at - muted

    @property
    def track_sid(self) -> str:
        assert self.publication is not None
        return str(self.publication.sid)

    async def join(self, url: str, token: str) -> None:
        # a microphone, not a listener: no remote track objects to outlive the room (the native
        # side closes their handles with the room, and a late Python-side drop then fails)
        await self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=False))
        track = rtc.LocalAudioTrack.create_audio_track(f"{self.identity}-mic", self.source)
        self.publication = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, dtx=self.dtx)
        )
        self.published_at = time.monotonic()

    async def send(self, pcm: np.ndarray, *, stop_after_s: float | None = None) -> None:
        """Send 48 kHz int16 audio in real time (optionally only its first ``stop_after_s``)."""
        n = len(pcm) if stop_after_s is None else min(len(pcm), int(stop_after_s * RATE_HZ))
        for i in range(0, n - FRAME + 1, FRAME):
            frame = rtc.AudioFrame(pcm[i : i + FRAME].tobytes(), RATE_HZ, 1, FRAME)
            if self._primed and self.source.queued_duration <= 0:
                self.underruns += 1
            await self.source.capture_frame(frame)
            self._primed = self._primed or self.source.queued_duration >= QUEUE_MS / 2000
            self.sent_s += FRAME / RATE_HZ

    async def pause(self, seconds: float) -> None:
        """A live microphone with nobody speaking: silence frames, in real time."""
        await self.send(np.tile(_SILENCE, max(1, int(seconds * 100))))

    async def say(self, turn: Turn, *, stop_after_s: float | None = None) -> None:
        if turn.pause_s > 0:
            await self.pause(turn.pause_s)
        pcm = to_pcm48k(read_file_audio(turn.clip))
        # Audio already queued (the pause's silence) goes out first.
        turn.started_at = time.monotonic() + self.source.queued_duration
        await self.send(pcm, stop_after_s=stop_after_s)
        turn.ended_at = time.monotonic() + self.source.queued_duration

    async def set_muted(self, muted: bool) -> None:
        assert self.publication is not None
        track = self.publication.track
        assert isinstance(track, rtc.LocalAudioTrack)
        if muted and self._muted_at is None:
            track.mute()
            self._muted_at = time.monotonic()
        elif not muted and self._muted_at is not None:
            track.unmute()
            self.muted_s += time.monotonic() - self._muted_at
            self._muted_at = None

    async def leave(self) -> None:
        await self.source.wait_for_playout()
        self.unpublished_at = time.monotonic()
        await self.room.disconnect()


async def speak(
    url: str, token: str, identity: str, turns: list[Turn], tail_s: float = 2.0
) -> SimulatedSpeaker:
    """Join, say each turn, keep the microphone open ``tail_s`` more, leave."""
    speaker = SimulatedSpeaker(identity)
    await speaker.join(url, token)
    for turn in turns:
        await speaker.say(turn)
    await speaker.pause(tail_s)
    await speaker.leave()
    await asyncio.sleep(0)
    return speaker
