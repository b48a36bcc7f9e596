"""Benchmark the dev server: CPU per forwarded audio stream and frame loss, 1 listener + N speakers.

    .venv/bin/python -m bench.devserver [--speakers 1,2,4,8] [--seconds 15] [--repeats 3]

The server runs as its own process inside a network namespace (root needed), the SDK clients
run here and reach it over a veth pair. For each N, one listener subscribes to N speakers that
each publish a tone; over a steady window the benchmark reads

- the server process's CPU time (psutil: user + system, all threads), as % of one core,
  in total and per forwarded stream (N streams reach the listener);
- frame loss: 1 - (RTP packets the listener received) / (packets the speakers sent);
- concealment: the share of the listener's played samples its jitter buffer had to invent
  (audible gaps, whatever their cause).

Results (every run and the medians) go to ``bench/results/devserver.json``. The machine may be
shared: the load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
from livekit import api, rtc

from devserver.launcher import DevServerProcess
from tests.support.netns import unavailable_reason, veth_namespace

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "devserver.json"
API_KEY = "devkey"
API_SECRET = "devserver-bench-secret-0123456789abcdef"
SAMPLE_RATE_HZ = 48_000
CHUNK_SAMPLES = 4_800  # 100 ms per capture call keeps the clients' Python overhead low
TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class RunResult:
    speakers: int
    seconds: float
    server_cpu_percent: float
    server_cpu_percent_per_stream: float
    packets_sent: int
    packets_received: int
    frame_loss_percent: float
    worst_stream_loss_percent: float
    concealed_percent: float
    client_cpu_percent: float
    load_average_1m: float


def _token(identity: str, room: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    access = api.AccessToken(API_KEY, API_SECRET).with_identity(identity).with_grants(grants)
    return access.to_jwt()


async def _play_tone(source: rtc.AudioSource, frequency_hz: float) -> None:
    t = np.arange(SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    second = (np.sin(2 * np.pi * frequency_hz * t) * 0.3 * 32767).astype(np.int16)
    while True:
        for start in range(0, SAMPLE_RATE_HZ, CHUNK_SAMPLES):
            chunk = second[start : start + CHUNK_SAMPLES]
            frame = rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE_HZ, 1, CHUNK_SAMPLES)
            await source.capture_frame(frame)


async def _drain(track: rtc.Track) -> None:
    """Play the track out (the jitter buffer only runs, and counts gaps, when pulled)."""
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE_HZ, num_channels=1, frame_size_ms=100)
    try:
        async for _ in stream:
            pass
    finally:
        await stream.aclose()


async def _packets_sent(track: rtc.LocalAudioTrack) -> int:
    for stat in await track.get_stats():
        if stat.HasField("outbound_rtp"):
            return int(stat.outbound_rtp.sent.packets_sent)
    return 0


async def _received(track: rtc.Track) -> tuple[int, int, int]:
    for stat in await track.get_stats():
        if stat.HasField("inbound_rtp"):
            inbound = stat.inbound_rtp
            return (
                int(inbound.received.packets_received),
                int(inbound.inbound.concealed_samples),
                int(inbound.inbound.total_samples_received),
            )
    return (0, 0, 0)


async def run_once(
    server: DevServerProcess, speakers: int, seconds: float, warmup_s: float
) -> RunResult:
    room = f"bench-{uuid.uuid4().hex[:8]}"
    server_process = psutil.Process(server.pid)
    this_process = psutil.Process()
    async with contextlib.AsyncExitStack() as stack:
        listener = rtc.Room()
        subscribed: dict[str, rtc.Track] = {}
        all_subscribed = asyncio.Event()

        @listener.on("track_subscribed")
        def on_track(track: rtc.Track, _: object, participant: rtc.RemoteParticipant) -> None:
            subscribed[participant.identity] = track
            if len(subscribed) == speakers:
                all_subscribed.set()

        await asyncio.wait_for(listener.connect(server.url, _token("listener", room)), TIMEOUT_S)
        stack.push_async_callback(listener.disconnect)
        tasks: list[asyncio.Task[None]] = []
        stack.callback(lambda: [task.cancel() for task in tasks])
        local_tracks: list[rtc.LocalAudioTrack] = []
        for index in range(speakers):
            speaker = rtc.Room()
            await asyncio.wait_for(
                speaker.connect(server.url, _token(f"speaker{index}", room)), TIMEOUT_S
            )
            stack.push_async_callback(speaker.disconnect)
            source = rtc.AudioSource(SAMPLE_RATE_HZ, 1)
            track = rtc.LocalAudioTrack.create_audio_track("mic", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            await asyncio.wait_for(
                speaker.local_participant.publish_track(track, options), TIMEOUT_S
            )
            local_tracks.append(track)
            tasks.append(asyncio.create_task(_play_tone(source, 300.0 + 60.0 * index)))
        await asyncio.wait_for(all_subscribed.wait(), TIMEOUT_S)
        remote_tracks = list(subscribed.values())
        tasks += [asyncio.create_task(_drain(track)) for track in remote_tracks]
        await asyncio.sleep(warmup_s)  # a benchmark window: waiting is the measurement

        cpu_before = server_process.cpu_times()
        client_before = this_process.cpu_times()
        wall_before = time.monotonic()
        sent_before = [await _packets_sent(t) for t in local_tracks]
        received_before = [await _received(t) for t in remote_tracks]
        await asyncio.sleep(seconds)
        sent_after = [await _packets_sent(t) for t in local_tracks]
        received_after = [await _received(t) for t in remote_tracks]
        wall = time.monotonic() - wall_before
        cpu_after = server_process.cpu_times()
        client_after = this_process.cpu_times()

    server_cpu = (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system) / wall
    client_cpu = (
        client_after.user + client_after.system - client_before.user - client_before.system
    ) / wall
    sent = [after - before for before, after in zip(sent_before, sent_after, strict=True)]
    received = [
        after[0] - before[0] for before, after in zip(received_before, received_after, strict=True)
    ]
    concealed = sum(a[1] - b[1] for b, a in zip(received_before, received_after, strict=True))
    samples = sum(a[2] - b[2] for b, a in zip(received_before, received_after, strict=True))
    # tracks are matched by count, not identity: losses are summed over all streams
    total_sent, total_received = sum(sent), sum(received)
    per_stream_loss = [
        max(0.0, 1 - r / s) for s, r in zip(sorted(sent), sorted(received), strict=True) if s
    ]
    return RunResult(
        speakers=speakers,
        seconds=round(wall, 2),
        server_cpu_percent=round(server_cpu * 100, 2),
        server_cpu_percent_per_stream=round(server_cpu * 100 / speakers, 2),
        packets_sent=total_sent,
        packets_received=total_received,
        frame_loss_percent=round(max(0.0, 1 - total_received / max(1, total_sent)) * 100, 3),
        worst_stream_loss_percent=round(max(per_stream_loss, default=0.0) * 100, 3),
        concealed_percent=round(concealed / max(1, samples) * 100, 3),
        client_cpu_percent=round(client_cpu * 100, 2),
        load_average_1m=round(os.getloadavg()[0], 2),
    )


async def idle_cpu_percent(server: DevServerProcess, seconds: float) -> float:
    process = psutil.Process(server.pid)
    before, start = process.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds)
    after = process.cpu_times()
    used = after.user + after.system - before.user - before.system
    return round(max(0.0, used) / (time.monotonic() - start) * 100, 2)


def _median(runs: list[RunResult], field: str) -> float:
    return round(statistics.median(getattr(r, field) for r in runs), 3)


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    counts = [int(n) for n in args.speakers.split(",")]
    with veth_namespace("lkb") as netns:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET,
        }
        server = DevServerProcess(
            ["--bind", netns.namespace_address, "--port", "0", "--log-level", "WARNING"],
            env=env,
            command_prefix=netns.command([]),
            cwd=str(REPO_ROOT),
        )
        server.start()
        try:
            idle = await idle_cpu_percent(server, 3.0)
            runs: list[RunResult] = []
            for repeat in range(args.repeats):
                for count in counts:
                    result = await run_once(server, count, args.seconds, args.warmup)
                    runs.append(result)
                    print(
                        f"run {repeat + 1}/{args.repeats} speakers={count}: "
                        f"server {result.server_cpu_percent:.1f}% CPU, "
                        f"loss {result.frame_loss_percent:.2f}%, "
                        f"concealed {result.concealed_percent:.2f}%, "
                        f"load {result.load_average_1m}",
                        flush=True,
                    )
        finally:
            server.cleanup()
    medians = [
        {
            "speakers": count,
            **{
                field: _median([r for r in runs if r.speakers == count], field)
                for field in (
                    "server_cpu_percent",
                    "server_cpu_percent_per_stream",
                    "frame_loss_percent",
                    "worst_stream_loss_percent",
                    "concealed_percent",
                    "client_cpu_percent",
                    "load_average_1m",
                )
            },
        }
        for count in counts
    ]
    return {
        "benchmark": "devserver audio forwarding, 1 listener + N speakers",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {"seconds": args.seconds, "warmup_s": args.warmup, "repeats": args.repeats},
        "server_idle_cpu_percent": idle,
        "medians": medians,
        "runs": [asdict(r) for r in runs],
    }


def print_table(report: dict[str, object]) -> None:
    print()
    print(f"dev server idle: {report['server_idle_cpu_percent']}% CPU (of one core)")
    header = (
        f"{'speakers':>8}  {'server CPU %':>12}  {'CPU %/stream':>12}  "
        f"{'frame loss %':>12}  {'worst loss %':>12}  {'concealed %':>11}  {'load 1m':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in report["medians"]:  # type: ignore[attr-defined]
        print(
            f"{row['speakers']:>8}  {row['server_cpu_percent']:>12.1f}  "
            f"{row['server_cpu_percent_per_stream']:>12.2f}  {row['frame_loss_percent']:>12.2f}  "
            f"{row['worst_stream_loss_percent']:>12.2f}  {row['concealed_percent']:>11.2f}  "
            f"{row['load_average_1m']:>7.2f}"
        )
    print(f"(medians of {report['settings']['repeats']} runs; results in {RESULTS})")  # type: ignore[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.devserver", description=__doc__)
    parser.add_argument("--speakers", default="1,2,4,8", help="comma-separated N values")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--repeats", type=int, default=3, help="runs per N (medians reported)")
    args = parser.parse_args(argv)
    if (reason := unavailable_reason()) is not None:
        print(f"bench.devserver: {reason}", file=sys.stderr)
        return 2
    report = asyncio.run(main_async(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
