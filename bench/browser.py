"""Chrome's microphone processing and live accuracy (``python -m bench.browser``; root, netns).

A stock ``livekit-client`` page in Debian's Chromium publishes a recording as its microphone
(Chromium's fake capture from a WAV) with the browser's default processing (auto gain, noise
suppression, echo cancellation: what ``setMicrophoneEnabled(true)`` gives a meeting app) and with
it off; a second page reads the captions. The bot's stored finals are scored against the
reference (WER, and whether the first reference word came through). Runs alternate on/off, clip
by clip, so a drift of the shared machine hits both alike.

Writes ``bench/results/browser.json`` and prints a table. Uses ``DATABASE_URL`` when set, else
the embedded PostgreSQL; the official LiveKit server unless ``--server dev``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bot import bench_worker_env
from bot.evaluation import normalize, wer
from store.enums import JobStatus
from tests.e2e.bot.helpers import WorkerProcess
from tests.e2e.devserver.helpers import room_name, token
from tests.support.browser import microphone_wav, problems, run_browsers
from tests.support.livekit import start_server
from tests.support.netns import veth_namespace

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / "assets" / "eval"
RESULTS = REPO / "bench" / "results"
CLIPS = ["en_jfk_inaugural", "en_librispeech_1272-128104-0000", "en_ljspeech_LJ050-0131"]


async def one_run(url: str, repo: Any, clip: str, processing: bool, folder: Path) -> dict[str, Any]:
    room = room_name("br")
    session = await repo.sessions.create_session(space_id="bench", created_by="bench", slug=room)
    await repo.jobs.request_transcription(session.id)
    deadline = time.monotonic() + 60
    while (job := await repo.jobs.get_job(session.id)) is None or job.status != JobStatus.RUNNING:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker never took the job")
        await asyncio.sleep(0.3)
    wav, seconds = microphone_wav(EVAL / f"{clip}.wav", folder)
    report = await run_browsers(
        {
            "url": url,
            "seconds": seconds + 6.0,
            "listeners": [{"identity": "listener", "token": token("listener", room)}],
            "speakers": [
                {
                    "identity": "speaker",
                    "token": token("speaker", room),
                    "wav": str(wav),
                    "audioProcessing": processing,
                }
            ],
        }
    )
    seen = {c["segmentId"] for c in report["listeners"][0]["captions"] if c["final"]}
    deadline = time.monotonic() + 30.0
    while True:  # every final the listener saw is stored (a loaded machine may trail)
        page = await repo.transcripts.transcript_page(session.id, limit=500)
        if {s.utterance_id for s in page.items} >= seen or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    text = " ".join(s.text for s in page.items)
    await repo.jobs.stop_transcription(session.id, reason="bench")
    ref = (EVAL / f"{clip}.txt").read_text(encoding="utf-8")
    first_ref = normalize(ref)[0]
    hyp_words = normalize(text)
    return {
        "clip": clip,
        "processing": processing,
        "wer": round(wer(ref, text), 4),
        "first_word_ok": bool(hyp_words) and hyp_words[0] == first_ref,
        "text": text,
        "finals_seen_live": len(seen),
        "captions_live": len(report["listeners"][0]["captions"]),
        **levels(report["speakers"][0]),
        "problems": problems(report["speakers"][0]) + problems(report["listeners"][0]),
    }


def levels(speaker: dict[str, Any]) -> dict[str, Any]:
    """What the speaker's browser sent, after its processing: the loudest 100 ms (RMS, full
    scale 1.0), how long after publishing the sent level first reached speech (0.01), and the
    share of 100 ms windows at or above it."""
    published = next((e["at"] for e in speaker["events"] if e["kind"] == "published"), None)
    samples = speaker.get("levels") or []
    if published is None or not samples:
        return {"sent_rms_max": None, "sent_speech_after_ms": None, "sent_speech_share": None}
    loud = [at for at, rms in samples if rms >= 0.01]
    return {
        "sent_rms_max": round(max(rms for _, rms in samples), 4),
        "sent_speech_after_ms": (loud[0] - published) if loud else None,
        "sent_speech_share": round(len(loud) / len(samples), 3),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from store.database import open_database
    from store.settings import DatabaseSettings

    runs: list[dict[str, Any]] = []
    with (
        veth_namespace("lbb") as ns,
        tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp,
    ):
        server = start_server(args.server, ns, departure_timeout_s=2)
        async with open_database(DatabaseSettings()) as db:
            # The empty-room timeouts stay at their defaults: the bot joins as soon as the
            # job is claimed, before the two browsers are up, and a 3 s timeout made it leave
            # the still-empty room (under load, browsers took > 3 s to join: the runs
            # "without captions" of earlier versions of this bench, processing on or off).
            # Each run stops its own transcription, so the bot leaves when a run ends.
            env = bench_worker_env(
                db.url, server.url, args.model, SPOOL_DIR=str(Path(tmp) / "spool")
            )
            # the worker's log stays beside the results (a run without captions is explained there)
            worker = WorkerProcess("bench-browser-worker", env, RESULTS)
            try:
                await worker.wait_ready(180)
                for r in range(args.runs):
                    for clip in CLIPS:
                        order = (True, False) if r % 2 == 0 else (False, True)
                        for processing in order:
                            run = await one_run(server.url, db.store, clip, processing, Path(tmp))
                            run["round"] = r
                            runs.append(run)
                            print(f"  {json.dumps({k: v for k, v in run.items() if k != 'text'})}",
                                  file=sys.stderr)  # fmt: skip
            finally:
                worker.stop()
                server.cleanup()
    return {"model": args.model, "server": args.server, "load": os.getloadavg(), "runs": runs}


def summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for clip in [*CLIPS, "all"]:
        for processing in (True, False):
            mine = [
                r for r in report["runs"]
                if r["processing"] is processing and clip in (r["clip"], "all")
            ]  # fmt: skip
            if not mine:
                continue
            wers = [r["wer"] for r in mine]
            rows.append({
                "clip": clip,
                "processing": "default (on)" if processing else "off",
                "runs": len(mine),
                "wer_median": round(statistics.median(wers), 3),
                "wer_mean": round(statistics.fmean(wers), 3),
                "wer_min_max": (min(wers), max(wers)),
                "first_word_ok": f"{sum(r['first_word_ok'] for r in mine)}/{len(mine)}",
                "runs_with_problems": sum(bool(r["problems"]) for r in mine),
                "runs_without_captions": sum(r["captions_live"] == 0 for r in mine),
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__)
    parser.add_argument("--model", default=os.environ.get("ASR_MODEL", "base"))
    parser.add_argument("--runs", type=int, default=3, help="rounds over every clip, on and off")
    parser.add_argument("--server", choices=("official", "dev"), default="official")
    parser.add_argument("--output", type=Path, default=RESULTS / "browser.json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.browser: needs root (it creates a network namespace)", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(bench(args))
    report["summary"] = summary(report)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nChrome's microphone processing, model {report['model']}, {args.server} server")
    head = ["clip", "processing", "runs", "WER med", "WER mean", "min-max", "1st word", "issues",
            "no captions"]  # fmt: skip
    print("  " + "".join(f"{h:>14}" for h in head))
    for row in report["summary"]:
        cells = [row["clip"][:13], row["processing"], row["runs"], row["wer_median"],
                 row["wer_mean"], "{}-{}".format(*row["wer_min_max"]), row["first_word_ok"],
                 row["runs_with_problems"], row["runs_without_captions"]]  # fmt: skip
        print("  " + "".join(f"{c!s:>14}" for c in cells))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
