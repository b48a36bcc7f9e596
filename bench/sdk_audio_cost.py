"""The LiveKit SDK's own CPU cost of one remote microphone track, without any of our code.

Run by ``bench.bot`` as a separate process (``python -m bench.sdk_audio_cost URL TOKEN MODE S``):
it joins the room, measures its own CPU for ``S`` seconds with nobody publishing and prints
``ready``; once a track is subscribed it measures again and prints one JSON line. ``MODE`` is
``subscribed`` (the track is received and decoded by WebRTC, nothing reads it) or
``stream:<frame_ms>`` (an ``rtc.AudioStream`` at 16 kHz mono, as the bot opens one, whose
frames are read and dropped). The difference to the bot's cost of the same track is ours.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from livekit import rtc

from bot.pipeline.types import SAMPLE_RATE_HZ


async def cpu_percent(seconds: float) -> float:
    t0 = time.process_time()
    await asyncio.sleep(seconds)
    return (time.process_time() - t0) / seconds * 100


async def measure(url: str, token: str, mode: str, seconds: float) -> dict[str, float | str]:
    room = rtc.Room()
    subscribed: asyncio.Queue[rtc.RemoteAudioTrack] = asyncio.Queue()

    def on_subscribed(track: rtc.Track, *_: object) -> None:
        if isinstance(track, rtc.RemoteAudioTrack):
            subscribed.put_nowait(track)

    room.on("track_subscribed", on_subscribed)
    await room.connect(url, token)
    await asyncio.sleep(2.0)
    idle = await cpu_percent(seconds)
    print("ready", flush=True)
    track = await asyncio.wait_for(subscribed.get(), 60)
    frames = 0
    reader: asyncio.Task[None] | None = None
    stream: rtc.AudioStream | None = None
    if mode.startswith("stream:"):
        stream = rtc.AudioStream.from_track(
            track=track,
            sample_rate=SAMPLE_RATE_HZ,
            num_channels=1,
            capacity=100,
            frame_size_ms=int(mode.split(":", 1)[1]),
        )

        async def read(audio: rtc.AudioStream) -> None:
            nonlocal frames
            async for _ in audio:
                frames += 1

        reader = asyncio.create_task(read(stream))
    await asyncio.sleep(3.0)
    frames_before = frames
    busy = await cpu_percent(seconds)
    result: dict[str, float | str] = {
        "mode": mode,
        "idle_pct": round(idle, 2),
        "with_track_pct": round(busy, 2),
        "track_cost_pct": round(busy - idle, 2),
        "frames_per_s": round((frames - frames_before) / seconds, 1),
    }
    if stream is not None and reader is not None:
        await stream.aclose()  # before leaving: the SDK panics on a stream open at disconnect
        await reader
    await room.disconnect()
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m bench.sdk_audio_cost URL TOKEN MODE SECONDS", file=sys.stderr)
        return 2
    url, token, mode, seconds = argv
    print(json.dumps(asyncio.run(measure(url, token, mode, float(seconds)))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
