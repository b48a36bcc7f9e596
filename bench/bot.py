"""Benchmark of the bot through LiveKit (``python -m bench.bot``; root, for a netns).

A real worker process (``python -m bot``, the default model unless ``--model``) transcribes a
room on the official LiveKit server and on our dev server, one after the other in one run
(``--servers``), each in a network namespace joined by a veth pair. Simulated
participants speak real recordings in real time; a listener measures what a meeting client sees:

* first-partial latency: the clip's first word (offline word timings) -> first caption received;
* final latency: the clip's last word -> its last final received;
* concurrency: N participants speaking at once, N = 1, 2, ... until final p95 exceeds 2 s (one
  speaker says ``--single-rounds`` clips, for a steadier median);
* CPU of a connected silent track: the worker's CPU with one silent microphone subscribed,
  minus the same worker idle in the room just before, ``--silent-repeats`` times (medians);
  with Opus DTX (LiveKit clients' default) and without. Beside it, the SDK's own cost of the
  same track in a bare process (``bench.sdk_audio_cost``): received only, and read through an
  ``AudioStream`` like the bot's, so what our pipeline adds shows.

Speech times are when the simulated microphone's audio leaves its queue for WebRTC (see
``bot.simulate.Turn``), as a real microphone captures it.

Writes ``bench/results/bot.json`` and prints a table. Uses ``DATABASE_URL`` when set, else the
embedded PostgreSQL. The machine is shared: quote medians of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bot.config import BotSettings
from bot.simulate import SimulatedSpeaker, Turn
from tests.e2e.bot.helpers import CaptionListener, WorkerProcess
from tests.e2e.devserver.helpers import room_name, token
from tests.support.livekit import API_KEY, API_SECRET, start_server
from tests.support.netns import VethNamespace, veth_namespace

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / "assets" / "eval"
RESULTS = REPO / "bench" / "results"
CLIPS = ["en_librispeech_1272-128104-0000", "en_ljspeech_LJ050-0131", "en_jfk_inaugural"]


def word_times(model: str) -> dict[str, tuple[float, float]]:
    """(first word start, last word end) of each clip, from an offline decode with word timings."""
    from faster_whisper import WhisperModel

    from bot.pipeline.audio import read_file_audio
    from bot.pipeline.models import resolve_model

    resolved = resolve_model(model)
    whisper = WhisperModel(resolved.path_or_hub_name, device="cpu", compute_type="int8")
    out = {}
    for clip in CLIPS:
        segments, _ = whisper.transcribe(
            read_file_audio(EVAL / f"{clip}.wav"), word_timestamps=True
        )
        words = [w for s in segments for w in (s.words or [])]
        out[clip] = (words[0].start, words[-1].end)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench_worker_env(db_url: str, url: str, model: str, **settings: str) -> dict[str, str]:
    """The environment of a benchmark's worker process: this database and server, the
    model, a fast job poll, a spool under bench/results, then ``settings``."""
    return {
        "DATABASE_URL": db_url,
        "LIVEKIT_URL": url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "ASR_MODEL": model,
        "JOB_POLL_S": "1",
        "SPOOL_DIR": str(RESULTS / "spool"),
        **settings,
    }


async def measure_turns(
    url: str,
    room: str,
    listener: CaptionListener,
    n_speakers: int,
    rounds: int,
    times: dict[str, tuple[float, float]],
) -> tuple[list[float], list[float]]:
    """N speakers say clips at once, ``rounds`` times; returns (first-partial, final) latencies."""
    speakers = [SimulatedSpeaker(f"s{n_speakers}-{k}") for k in range(n_speakers)]
    for sp in speakers:
        await sp.join(url, token(sp.identity, room, name=sp.identity))
    await asyncio.sleep(3.0)  # subscriptions settle
    turns: list[tuple[SimulatedSpeaker, str, Turn]] = []

    async def talk(k: int, sp: SimulatedSpeaker) -> None:
        await sp.pause(0.3 * k)  # staggered, as people are
        for r in range(rounds):
            clip = CLIPS[(k + r) % len(CLIPS)]
            turn = Turn(EVAL / f"{clip}.wav", pause_s=1.0)
            turns.append((sp, clip, turn))
            await sp.say(turn)
            await sp.pause(2.5)

    await asyncio.gather(*(talk(k, sp) for k, sp in enumerate(speakers)))
    await asyncio.sleep(3.0)
    firsts: list[float] = []
    finals: list[float] = []
    for sp, clip, turn in turns:
        onset, end = times[clip]
        mine = [c for c in listener.captions if c.sender == sp.identity and c.text]
        window = [c for c in mine if turn.started_at <= c.at <= turn.ended_at + 5.0]
        if not window:
            continue
        firsts.append(window[0].at - (turn.started_at + onset))
        last_final = [c for c in window if c.final]
        if last_final:
            finals.append(last_final[-1].at - (turn.started_at + end))
    for sp in speakers:
        await sp.leave()
    return firsts, finals


async def silent_track_cpu(
    url: str, room: str, proc: psutil.Process, seconds: float, repeats: int, *, dtx: bool
) -> dict[str, Any]:
    def cpu_during(s: float) -> float:
        t0 = proc.cpu_times()
        time.sleep(s)
        t1 = proc.cpu_times()
        return (t1.user + t1.system - t0.user - t0.system) / s * 100

    idle: list[float] = []
    busy: list[float] = []
    for k in range(repeats):
        await asyncio.sleep(3.0)  # the previous silent participant is gone
        idle.append(await asyncio.to_thread(cpu_during, seconds))
        silent = SimulatedSpeaker(f"silent-{'dtx' if dtx else 'nodtx'}-{k}", dtx=dtx)
        await silent.join(url, token(silent.identity, room))
        feeder = asyncio.create_task(silent.pause(seconds + 6))
        await asyncio.sleep(3.0)
        busy.append(await asyncio.to_thread(cpu_during, seconds))
        await feeder
        await silent.leave()
    costs = [b - i for b, i in zip(busy, idle, strict=True)]
    return {
        "dtx": dtx,
        "idle_in_room_pct": round(float(np.median(idle)), 2),
        "one_silent_track_pct": round(float(np.median(busy)), 2),
        "silent_track_cost_pct_of_core": round(float(np.median(costs)), 2),
        "silent_track_cost_runs_pct": [round(c, 2) for c in costs],
    }


async def sdk_audio_cost(url: str, seconds: float, repeats: int, frame_ms: int) -> dict[str, Any]:
    """The SDK's own cost of one silent (DTX) track in a bare process: medians of runs."""
    out: dict[str, Any] = {}
    for mode in ("subscribed", f"stream:{frame_ms}"):
        costs: list[float] = []
        for k in range(repeats):
            room = room_name("sdk")
            probe = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.sdk_audio_cost",
                url,
                token("probe", room),
                mode,
                str(seconds),
                stdout=asyncio.subprocess.PIPE,
                cwd=REPO,
            )
            assert probe.stdout is not None
            if (await probe.stdout.readline()).strip() != b"ready":
                raise RuntimeError("bench.sdk_audio_cost did not start")
            silent = SimulatedSpeaker(f"silent-sdk-{k}")
            await silent.join(url, token(silent.identity, room))
            feeder = asyncio.create_task(silent.pause(seconds + 10))
            result = json.loads(await probe.stdout.readline())
            await probe.wait()
            feeder.cancel()
            await silent.room.disconnect()
            costs.append(float(result["track_cost_pct"]))
        out[mode] = {
            "track_cost_pct_of_core": round(float(np.median(costs)), 2),
            "runs_pct": costs,
        }
    print(f"  SDK alone: {out}", file=sys.stderr)
    return out


async def measure_server(
    kind: str,
    ns: VethNamespace,
    db: Any,
    args: argparse.Namespace,
    times: dict[str, tuple[float, float]],
    worker_env: dict[str, str],
) -> dict[str, Any]:
    """Every measurement through one server (``dev`` or ``official``), with a fresh worker."""
    report: dict[str, Any] = {"server": kind}
    server = start_server(kind, ns, departure_timeout_s=30)
    repo = db.store
    room = room_name("bench")
    session = await repo.sessions.create_session(space_id="bench", created_by="bench", slug=room)
    await repo.jobs.request_transcription(session.id)
    env = bench_worker_env(db.url, server.url, args.model, ROOM_EMPTY_TIMEOUT_S="600", **worker_env)
    worker = WorkerProcess(f"bench-worker-{kind}", env, RESULTS)
    try:
        await worker.wait_ready(180)
        listener = CaptionListener()
        await listener.join(server.url, room, identity="listener")
        await asyncio.sleep(3.0)
        proc = psutil.Process(worker.process.pid)
        for dtx in (True, False):
            key = "silent_track" if dtx else "silent_track_without_dtx"
            report[key] = await silent_track_cpu(
                server.url, room, proc, args.silent_seconds, args.silent_repeats, dtx=dtx
            )
            print(f"  [{kind}] {key}: {report[key]}", file=sys.stderr)
        frame_ms = int(
            worker_env.get("AUDIO_FRAME_MS", BotSettings.model_fields["audio_frame_ms"].default)
        )
        report["sdk_alone"] = await sdk_audio_cost(
            server.url, args.silent_seconds, args.silent_repeats, frame_ms
        )
        rows = []
        sustained = 0
        for n in range(1, args.max_speakers + 1):
            listener.captions.clear()
            t0, c0 = time.monotonic(), proc.cpu_times()
            rounds = args.single_rounds if n == 1 else args.rounds
            firsts, finals = await measure_turns(server.url, room, listener, n, rounds, times)
            c1, wall = proc.cpu_times(), time.monotonic() - t0
            cores = (c1.user + c1.system - c0.user - c0.system) / wall
            row = {
                "speakers": n,
                "turns": len(finals),
                "first_partial_p50_s": round(pct(firsts, 50), 3),
                "first_partial_p95_s": round(pct(firsts, 95), 3),
                "final_p50_s": round(pct(finals, 50), 3),
                "final_p95_s": round(pct(finals, 95), 3),
                "worker_cores_busy": round(cores, 2),
                # speakers talk ~80% of a round (clip, then 2.5 s of pause): an upper bound
                "worker_cpu_per_speaker_pct": round(cores / n * 100, 1),
                "load_avg_1m": os.getloadavg()[0],
            }
            rows.append(row)
            print(f"  [{kind}] {row}", file=sys.stderr)
            if not finals or row["final_p95_s"] > 2.0:
                break
            sustained = n
        report["concurrency"] = rows
        report["sustained_speakers"] = sustained
        await listener.leave()
    finally:
        worker.stop()
        server.cleanup()
        with contextlib.suppress(Exception):
            await repo.sessions.delete_session(session.id)
    return report


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from store.database import open_database
    from store.settings import DatabaseSettings

    times = word_times(args.model)
    worker_env = dict(item.split("=", 1) for item in args.env)
    report: dict[str, Any] = {
        "model": args.model,
        "worker_env": args.env,
        "clip_word_times": times,
        "load_before": os.getloadavg(),
        "servers": {},
    }
    with veth_namespace("lbn") as ns:
        async with open_database(DatabaseSettings()) as db:
            for kind in args.servers:
                report["servers"][kind] = await measure_server(
                    kind, ns, db, args, times, worker_env
                )
    report["load_after"] = os.getloadavg()
    return report


def print_report(report: dict[str, Any]) -> None:
    servers = report["servers"]
    kinds = list(servers)
    load = ", ".join(f"{x:.2f}" for x in report["load_before"])
    print(f"\nBot through LiveKit, model {report['model']} (load average before: {load})")
    width = 24
    print("  " + " " * 42 + "".join(f"{k + ' server':>{width}}" for k in kinds))

    def line(title: str, cells: list[str]) -> None:
        print(f"  {title:<42}" + "".join(f"{c:>{width}}" for c in cells))

    for key, title in (
        ("silent_track", "silent track, DTX"),
        ("silent_track_without_dtx", "silent track, no DTX"),
    ):
        line(
            f"{title} (% of a core)",
            [str(servers[k][key]["silent_track_cost_pct_of_core"]) for k in kinds],
        )
        line("  runs", [str(servers[k][key]["silent_track_cost_runs_pct"]) for k in kinds])
    for mode in servers[kinds[0]]["sdk_alone"]:
        line(
            f"SDK alone, {mode} (%)",
            [
                str(servers[k]["sdk_alone"].get(mode, {}).get("track_cost_pct_of_core", "-"))
                for k in kinds
            ],
        )
    n_max = max(len(servers[k]["concurrency"]) for k in kinds)
    for i in range(n_max):
        rows = [
            servers[k]["concurrency"][i] if i < len(servers[k]["concurrency"]) else None
            for k in kinds
        ]
        n = next(r for r in rows if r is not None)["speakers"]
        for key, title in (
            ("first_partial_p50_s", "first partial p50 / p95 (s)"),
            ("final_p50_s", "final p50 / p95 (s)"),
        ):
            p95 = key.replace("p50", "p95")
            line(f"{n} speaker(s): {title}", [f"{r[key]} / {r[p95]}" if r else "-" for r in rows])
        line(
            f"{n} speaker(s): turns, cores, % per speaker",
            [
                f"{r['turns']}, {r['worker_cores_busy']}, {r.get('worker_cpu_per_speaker_pct')}"
                if r
                else "-"
                for r in rows
            ],
        )
    line(
        "sustained speakers (final p95 <= 2 s)",
        [str(servers[k]["sustained_speakers"]) for k in kinds],
    )
    if len(kinds) == 2:
        a, b = kinds
        r1a, r1b = servers[a]["concurrency"][0], servers[b]["concurrency"][0]
        for key in ("first_partial_p50_s", "final_p50_s"):
            print(f"  1 speaker {key}: {b}/{a} = {r1b[key] / r1a[key]:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bot", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--model", default=os.environ.get("ASR_MODEL", "base"))
    parser.add_argument("--max-speakers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single-rounds", type=int, default=9)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the worker, e.g. SPECULATIVE_FINALS=false (repeatable)",
    )
    parser.add_argument("--silent-seconds", type=float, default=15.0)
    parser.add_argument("--silent-repeats", type=int, default=3)
    parser.add_argument(
        "--servers",
        default="dev,official",
        help="comma-separated: dev (our dev server), official (the official LiveKit server)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "bot.json")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")
    if os.geteuid() != 0:
        print(
            "bench.bot: needs root (it creates a network namespace for the dev server)",
            file=sys.stderr,
        )
        return 2
    args.servers = [k.strip() for k in args.servers.split(",") if k.strip()]
    if not args.servers or set(args.servers) - {"dev", "official"}:
        parser.error("--servers takes dev, official or both")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(bench(args))
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
