"""Benchmark of the streaming engine (``make bench`` / ``python -m bench.engine``).

Measures, on the shipped eval recordings and on generated hard cases:

* WER of the streaming finals vs an offline ``WhisperModel.transcribe()`` of the same file with
  the same model (beam 1, like the engine, and faster-whisper's default beam 5);
* first-partial latency (speech onset -> first caption of the utterance with a word in it) and
  final latency (end of the utterance's last word -> final emitted), audio fed in real time in
  20 ms frames. Onset and end come from an offline decode's word timings of the same audio,
  not from the VAD or the streaming decode, so the VAD's hangover counts against us;
* real-time factor and CPU use (cores busy) of the default model, fed as fast as possible;
* words emitted on 60 s of silence, 60 s of noise and on speech after 60 s of silence;
* phrase finals on the long sonnet items (continuous reading), with ``phrase_finals`` off and
  on in turn: phrases split at the offline decode's pauses >= 0.5 s; a phrase's final latency is
  when final text first covers its last word (a final whose span reaches the word's midpoint),
  from when that word's audio was fed; first display likewise with any caption; WER of finals;
* capacity: concurrent real-time streams (each a different stretch of a real recording) one
  process sustains before final-latency p95 exceeds 2 s.

Writes ``bench/results/engine.json`` and prints a table. The machine is shared: quote medians
of one run, and compare ratios within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bot.config import EngineSettings
from bot.evaluation import wer
from bot.pipeline.asr import WhisperRecognizer
from bot.pipeline.audio import read_file_audio
from bot.pipeline.engine import SpeechEngine, StreamStats
from bot.pipeline.models import resolve_model
from bot.pipeline.types import SAMPLE_RATE_HZ, Caption
from bot.pipeline.vad import SileroVad

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / "assets" / "eval"
RESULTS = REPO / "bench" / "results"
FRAME = SAMPLE_RATE_HZ // 50  # 20 ms

WER_ITEMS = [
    "en_librispeech_1272-128104-0000",
    "en_ljspeech_LJ050-0131",
    "en_jfk_inaugural",
    "en_librivox_sonnet001",
    "en_librivox_sonnets001-003_long",
    "ru_deepspeech_sample",
]
LATENCY_ITEMS = [
    "en_librispeech_1272-128104-0000",
    "en_ljspeech_LJ050-0131",
    "en_jfk_inaugural",
    "en_librivox_sonnet001",
    "ru_deepspeech_sample",
]
CAPACITY_ITEM = "en_librivox_sonnets001-003_long"
PHRASE_ITEMS = ["en_librivox_sonnet001", "en_librivox_sonnets001-003_long"]
PHRASE_PAUSE_S = 0.5
SECTIONS = ("wer", "hard", "latency", "phrase", "capacity")
_ROMAN = {"I": "one", "II": "two", "III": "three"}


def reference_text(item: str) -> str:
    lines = (EVAL / f"{item}.txt").read_text(encoding="utf-8").splitlines()
    # Sonnet numbers stand alone on a line ("1", "I", "II"): the reader says them as words.
    return " ".join(_ROMAN.get(line.strip(), line) for line in lines)


@dataclass
class StreamRun:
    captions: list[tuple[float, Caption]] = field(
        default_factory=list
    )  # (seconds since t0, caption)
    t0: float = 0.0
    audio_s: float = 0.0
    stats: StreamStats = field(default_factory=StreamStats)


async def feed_stream(
    engine: SpeechEngine, audio: np.ndarray, *, realtime: bool, name: str = "bench"
) -> StreamRun:
    stream = engine.open_stream(name)
    run = StreamRun(audio_s=len(audio) / SAMPLE_RATE_HZ, stats=stream.stats)

    async def consume() -> None:
        async for c in stream.captions():
            run.captions.append((time.monotonic() - run.t0, c))

    run.t0 = time.monotonic()
    consumer = asyncio.create_task(consume())
    for i in range(0, len(audio), FRAME):
        await stream.push_audio(audio[i : i + FRAME])
        if realtime:
            delay = run.t0 + (i + FRAME) / SAMPLE_RATE_HZ - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        elif i % (FRAME * 50) == 0:
            await asyncio.sleep(0)
    await stream.end_input()
    await consumer
    return run


def latencies(
    run: StreamRun, reference_words: list[tuple[float, float]], offset_s: float = 0.0
) -> tuple[list[float], list[float]]:
    """(first-partial latencies, final latencies) in seconds, one per utterance with words.

    Speech onset and end come from an offline decode's word timings (``reference_words``: start
    and end in seconds of the fed audio, shifted by ``offset_s``): the words whose midpoint lies
    inside the final's span. The streaming decode's own timings end where the VAD cut the
    audio, so they would hide the VAD's hangover.
    """
    first: list[float] = []
    final: list[float] = []
    by_utt: dict[str, list[tuple[float, Caption]]] = {}
    for t, c in run.captions:
        by_utt.setdefault(c.utterance_id, []).append((t, c))
    for items in by_utt.values():
        t_final, fin = items[-1]
        if not fin.is_final or not fin.text:
            continue
        lo, hi = fin.start_ms / 1000, fin.end_ms / 1000
        words = [
            (a + offset_s, b + offset_s)
            for a, b in reference_words
            if lo <= (a + b) / 2 + offset_s <= hi
        ]
        if not words:
            continue
        final.append(t_final - max(b for _, b in words))
        t_first = next(t for t, c in items if c.text.strip())
        first.append(t_first - min(a for a, _ in words))
    return first, final


def offline_words(model: Any, audio: np.ndarray) -> list[tuple[float, float]]:
    segments, _ = model.transcribe(audio, beam_size=5, word_timestamps=True)
    return [(w.start, w.end) for s in segments for w in (s.words or [])]


def phrases(words: list[tuple[float, float]], pause_s: float = PHRASE_PAUSE_S) -> list[int]:
    """Indices of the words that end a phrase: followed by a pause >= ``pause_s``, or last."""
    ends = [i for i in range(len(words) - 1) if words[i + 1][0] - words[i][1] >= pause_s]
    return [*ends, len(words) - 1] if words else []


def phrase_latencies(
    run: StreamRun, words: list[tuple[float, float]], offset_s: float = 0.0
) -> tuple[list[float], list[float]]:
    """(first display, final) latency of each phrase's last word, from when its audio was fed:
    the first caption (any / final) with text whose span reaches the word's midpoint."""
    first: list[float] = []
    final: list[float] = []
    shown = [(t, c) for t, c in run.captions if c.text.strip()]
    for i in phrases(words):
        start, end = words[i]
        mid = (start + end) / 2 + offset_s
        fed = end + offset_s
        t_any = next((t for t, c in shown if c.start_ms / 1000 <= mid <= c.end_ms / 1000), None)
        t_fin = next(
            (t for t, c in shown if c.is_final and c.start_ms / 1000 <= mid <= c.end_ms / 1000),
            None,
        )
        if t_fin is None:  # in a gap between finals: the next final after it
            t_fin = next((t for t, c in shown if c.is_final and c.start_ms / 1000 > mid), None)
        if t_any is not None:
            first.append(t_any - fed)
        if t_fin is not None:
            final.append(t_fin - fed)
    return first, final


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def finals_text(run: StreamRun) -> str:
    return " ".join(c.text for _, c in run.captions if c.is_final and c.text)


def words_emitted(run: StreamRun) -> int:
    return sum(len(c.text.split()) for _, c in run.captions)


def parse_variant(text: str) -> dict[str, str]:
    """``ASR_DECODE_WORKERS=2+ASR_MAX_PARTIAL_BATCH=4`` -> engine settings overrides."""
    pairs = [item.split("=", 1) for item in text.split("+") if item]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError("a variant is NAME=VALUE[+NAME=VALUE...]")
    fields = {name.upper() for name in EngineSettings.model_fields}
    unknown = [name for name, _ in pairs if name.upper() not in fields]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown engine setting(s): {unknown}")
    return {name.lower(): value for name, value in pairs}


def variant_label(overrides: dict[str, str]) -> str:
    return "+".join(f"{k.upper()}={v}" for k, v in overrides.items()) or "defaults"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    settings = EngineSettings(asr_model=args.model)
    resolved = resolve_model(settings.asr_model, cache_dir=settings.model_cache_dir)
    recognizers: dict[Any, WhisperRecognizer] = {}
    vad = SileroVad()

    def engine(
        partials: bool = True,
        speculative: bool | None = None,
        overrides: dict[str, str] | None = None,
    ) -> SpeechEngine:
        """An engine with the default settings, or these ``overrides`` (a variant's)."""
        s = EngineSettings.model_validate({"asr_model": args.model, **(overrides or {})})
        options = s.stream_options(emit_partials=partials)
        if speculative is not None:
            options = replace(options, speculative_finals=speculative)
        asr = s.asr_options()
        if asr not in recognizers:  # one model load per distinct recognizer setting
            recognizers[asr] = WhisperRecognizer(resolved, asr)
        return SpeechEngine(
            recognizers[asr],
            vad,
            stream_options=options,
            max_batch=s.asr_max_batch,
            max_partial_batch=s.asr_max_partial_batch,
            decode_workers=s.asr_decode_workers,
        )

    audio = {item: read_file_audio(EVAL / f"{item}.wav") for item in WER_ITEMS}
    report: dict[str, Any] = {
        "model": settings.asr_model,
        "settings": settings.model_dump(mode="json"),
    }
    from faster_whisper import WhisperModel

    offline = WhisperModel(
        resolved.path_or_hub_name,
        device="cpu",
        compute_type="int8",
        cpu_threads=settings.asr_cpu_threads,
    )
    words = {item: offline_words(offline, audio[item]) for item in LATENCY_ITEMS}
    for item in {CAPACITY_ITEM, *PHRASE_ITEMS} - set(words):
        words[item] = offline_words(offline, audio[item])
    if "wer" in args.sections:
        full_window = WhisperRecognizer(resolved, settings.asr_options())
        report["wer"] = await wer_rows(offline, full_window, settings, vad, engine, audio)
    del offline
    if "hard" in args.sections:
        report["hard_cases"] = await hard_cases(engine, audio)
    if "latency" in args.sections:
        report.update(await latency_one_stream(engine, audio, words, args.variant))
    if "phrase" in args.sections:
        report["phrase_finals"] = await phrase_finals(
            engine, audio, words, args.phrase_runs, args.variant
        )
    if "capacity" in args.sections:
        report["capacity"] = await capacity(
            engine,
            audio,
            words,
            args.capacity_max,
            args.capacity_seconds,
            [{}, *args.variant],
            args.capacity_streams,
        )
    return report


Engine = Callable[..., SpeechEngine]


async def wer_rows(
    offline: Any,
    recognizer: WhisperRecognizer,
    settings: EngineSettings,
    vad: SileroVad,
    engine: Engine,
    audio: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """WER of the streaming finals vs offline ``transcribe()``, and with the full window."""
    proc = psutil.Process()
    rows = []
    for item in WER_ITEMS:
        ref = reference_text(item)
        eng = engine(partials=False)
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        run = await feed_stream(eng, audio[item], realtime=False)
        wall = time.monotonic() - t0
        cpu1 = proc.cpu_times()
        await eng.aclose()
        row: dict[str, Any] = {
            "item": item,
            "audio_s": round(run.audio_s, 2),
            "streaming_wer": round(wer(ref, finals_text(run)), 4),
            "rtf": round(wall / run.audio_s, 4),
            "cores_busy": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 2),
        }
        for beam in (1, 5):
            segments, _ = offline.transcribe(audio[item], beam_size=beam)
            row[f"offline_wer_beam{beam}"] = round(wer(ref, " ".join(s.text for s in segments)), 4)
        # The same stream with Whisper's full 30 s window: what trimming costs in accuracy.
        recognizer.options = replace(recognizer.options, encoder_window="full")
        eng = SpeechEngine(
            recognizer, vad, stream_options=settings.stream_options(emit_partials=False)
        )
        full_run = await feed_stream(eng, audio[item], realtime=False)
        await eng.aclose()
        row["streaming_wer_full_window"] = round(wer(ref, finals_text(full_run)), 4)
        rows.append(row)
        print(f"  wer {item}: {row}", file=sys.stderr)
    return rows


async def hard_cases(engine: Engine, audio: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Words emitted on silence and noise; speech after a long silence."""
    rng = np.random.default_rng(1)
    n60 = 60 * SAMPLE_RATE_HZ
    hard = {
        "silence_60s": np.zeros(n60, dtype=np.float32),
        "white_noise_60s": rng.normal(0, 0.1, n60).astype(np.float32),
        "babble_like_noise_60s": (
            np.convolve(rng.normal(0, 0.3, n60), np.hanning(64) / 32, mode="same")
        ).astype(np.float32),
    }
    rows: list[dict[str, Any]] = []
    for name, signal in hard.items():
        eng = engine(partials=True)
        run = await feed_stream(eng, signal, realtime=False)
        await eng.aclose()
        rows.append(
            {"case": name, "words_emitted": words_emitted(run), "captions": len(run.captions)}
        )
    speech = audio["en_librispeech_1272-128104-0000"]
    eng = engine(partials=False)
    run = await feed_stream(
        eng, np.concatenate([np.zeros(n60, dtype=np.float32), speech]), realtime=False
    )
    await eng.aclose()
    rows.append(
        {
            "case": "speech_after_60s_silence",
            "wer": round(
                wer(reference_text("en_librispeech_1272-128104-0000"), finals_text(run)), 4
            ),
            "first_final_start_s": min(
                (c.start_ms / 1000 for _, c in run.captions if c.is_final), default=None
            ),
        }
    )
    print(f"  hard cases: {rows}", file=sys.stderr)
    return rows


async def latency_one_stream(
    engine: Engine,
    audio: dict[str, np.ndarray],
    words: dict[str, list[tuple[float, float]]],
    variants: list[dict[str, str]],
) -> dict[str, dict[str, Any]]:
    """One real-time stream per item: the defaults, without speculative finals, and each
    variant's settings, in turn per item (so the machine's load hits all alike)."""
    proc = psutil.Process()
    configs: dict[str, dict[str, Any]] = {
        "latency_one_stream": {},
        "latency_without_speculation": {"speculative": False},
    }
    for overrides in variants:
        configs[f"latency_one_stream {variant_label(overrides)}"] = {"overrides": overrides}
    runs: dict[str, list[tuple[StreamRun, str]]] = {key: [] for key in configs}
    cpu_s = dict.fromkeys(runs, 0.0)
    wall_s = dict.fromkeys(runs, 0.0)
    pad = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
    for item in LATENCY_ITEMS:
        for key, kwargs in configs.items():
            eng = engine(partials=True, **kwargs)
            cpu0, t0 = proc.cpu_times(), time.monotonic()
            run = await feed_stream(eng, np.concatenate([pad, audio[item], pad]), realtime=True)
            wall_s[key] += time.monotonic() - t0
            cpu1 = proc.cpu_times()
            cpu_s[key] += cpu1.user + cpu1.system - cpu0.user - cpu0.system
            await eng.aclose()
            runs[key].append((run, item))
    out: dict[str, dict[str, Any]] = {}
    for key, item_runs in runs.items():
        first_all: list[float] = []
        final_all: list[float] = []
        for run, item in item_runs:
            first, final = latencies(run, words[item], offset_s=1.0)
            first_all += first
            final_all += final
        out[key] = {
            "utterances": len(final_all),
            "first_partial_p50_s": round(pct(first_all, 50), 3),
            "first_partial_p95_s": round(pct(first_all, 95), 3),
            "final_p50_s": round(pct(final_all, 50), 3),
            "final_p95_s": round(pct(final_all, 95), 3),
            "speculative_finals": sum(r.stats.speculative_finals for r, _ in item_runs),
            "speculative_finals_used": sum(r.stats.speculative_finals_used for r, _ in item_runs),
            "cores_busy_realtime": round(cpu_s[key] / wall_s[key], 2),
            "load_avg_1m": psutil.getloadavg()[0],
        }
        print(f"  {key}: {out[key]}", file=sys.stderr)
    return out


async def phrase_finals(
    engine: Engine,
    audio: dict[str, np.ndarray],
    words: dict[str, list[tuple[float, float]]],
    runs: int,
    variants: list[dict[str, str]],
) -> list[dict[str, Any]]:
    """Phrase-level latency and WER on the long sonnet items: ``phrase_finals`` off, the
    defaults and each variant in turn per item (so the machine's load hits all alike),
    ``runs`` times."""
    rows: list[dict[str, Any]] = []
    pad = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
    configs = {"PHRASE_FINALS=false": {"phrase_finals": "false"}, "defaults": {}}
    configs.update({variant_label(v): v for v in variants})
    for k in range(runs):
        got: dict[str, tuple[list[float], list[float], list[float]]] = {
            label: ([], [], []) for label in configs
        }
        counts = dict.fromkeys(got, 0)
        cut_counts = dict.fromkeys(got, 0)
        for item in PHRASE_ITEMS:
            for label, overrides in configs.items():
                eng = engine(partials=True, overrides=overrides)
                run = await feed_stream(eng, np.concatenate([pad, audio[item], pad]), realtime=True)
                await eng.aclose()
                first, final = phrase_latencies(run, words[item], offset_s=1.0)
                got[label][0].extend(first)
                got[label][1].extend(final)
                got[label][2].append(wer(reference_text(item), finals_text(run)))
                counts[label] += run.stats.phrase_finals
                cut_counts[label] += run.stats.word_cut_finals
        for label, (first, final, wers) in got.items():
            row = {
                "run": k + 1,
                "variant": label,
                "phrases": len(final),
                "phrase_finals_committed": counts[label],
                "at_word_cuts": cut_counts[label],
                "final_p50_s": round(pct(final, 50), 3),
                "final_p95_s": round(pct(final, 95), 3),
                "final_max_s": round(float(max(final, default=float("nan"))), 3),
                "first_display_p50_s": round(pct(first, 50), 3),
                "first_display_p95_s": round(pct(first, 95), 3),
                "wer": [round(w, 4) for w in wers],
                "load_avg_1m": psutil.getloadavg()[0],
            }
            rows.append(row)
            print(f"  phrase {row}", file=sys.stderr)
    return rows


async def capacity(
    engine: Engine,
    audio: dict[str, np.ndarray],
    words: dict[str, list[tuple[float, float]]],
    max_streams: int,
    seconds: int,
    variants: list[dict[str, str]],
    counts: list[int] | None,
) -> dict[str, Any]:
    """Concurrent real-time streams sustained before final p95 exceeds 2 s, per variant of the
    settings (``{}``: the defaults). Without ``counts``, 1, 2, ... streams until p95 exceeds 2 s;
    with them, exactly those counts, the variants in turn per count (so the machine's load hits
    all alike). CPU per speaking track is the process's CPU time over the wall time and the
    stream count (every stream speaks throughout: a stretch of a continuous reading)."""
    long_audio = audio[CAPACITY_ITEM]
    rows: list[dict[str, Any]] = []
    sustained: dict[str, int] = {}
    stopped: set[str] = set()
    for n in counts or range(1, max_streams + 1):
        for overrides in variants:
            label = variant_label(overrides)
            if label in stopped:
                continue
            row = await capacity_row(engine, overrides, long_audio, words, n, seconds)
            row["variant"] = label
            rows.append(row)
            print(f"  capacity {row}", file=sys.stderr)
            if row["final_p95_s"] <= 2.0:
                sustained[label] = max(sustained.get(label, 0), n)
            elif not counts:
                stopped.add(label)
        if not counts and len(stopped) == len(variants):
            break
    return {
        "rows": rows,
        "sustained_streams": {
            variant_label(v): sustained.get(variant_label(v), 0) for v in variants
        },
        "seconds_per_stream": seconds,
    }


async def capacity_row(
    engine: Engine,
    overrides: dict[str, str],
    long_audio: np.ndarray,
    words: dict[str, list[tuple[float, float]]],
    n: int,
    seconds: int,
) -> dict[str, Any]:
    proc = psutil.Process()
    eng = engine(partials=True, overrides=overrides)
    starts = [int((k * 157 / max(n, 1)) % 100 * SAMPLE_RATE_HZ) for k in range(n)]
    clips = [long_audio[s : s + seconds * SAMPLE_RATE_HZ] for s in starts]
    cpu0, t0 = proc.cpu_times(), time.monotonic()
    runs = await asyncio.gather(
        *(feed_stream(eng, clip, realtime=True, name=f"s{k}") for k, clip in enumerate(clips))
    )
    wall = time.monotonic() - t0
    cpu1 = proc.cpu_times()
    stats = eng.scheduler.stats
    await eng.aclose()
    lats = [
        latencies(r, words[CAPACITY_ITEM], offset_s=-s / SAMPLE_RATE_HZ)
        for r, s in zip(runs, starts, strict=True)
    ]
    finals = [x for _, fin in lats for x in fin]
    firsts = [x for fst, _ in lats for x in fst]
    cores = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
    return {
        "streams": n,
        "final_p50_s": round(pct(finals, 50), 3),
        "final_p95_s": round(pct(finals, 95), 3),
        "first_partial_p50_s": round(pct(firsts, 50), 3),
        "partials_dropped": stats.partials_dropped,
        "partials_decoded": stats.partials_decoded,
        "cores_busy": round(cores, 2),
        "cpu_per_track_pct": round(cores / n * 100, 1),
        "load_avg_1m": psutil.getloadavg()[0],
    }


def _row(cells: list[tuple[object, str]]) -> str:
    return " ".join(format(value, spec) for value, spec in cells)


def print_table(report: dict[str, Any]) -> None:
    print(f"\nStreaming engine benchmark, model {report['model']}")
    if "wer" in report:
        print_wer(report["wer"])
    if "hard_cases" in report:
        print("\nHard cases:")
        for r in report["hard_cases"]:
            print("  " + ", ".join(f"{k}={v}" for k, v in r.items()))
    titles = {
        "latency_one_stream": "speculative finals",
        "latency_without_speculation": "finals decoded at the end",
    }
    for key in [k for k in report if k.startswith("latency_")]:
        title = titles.get(key, key.removeprefix("latency_one_stream "))
        lat = report[key]
        print(f"\nOne real-time stream, {title}, {lat['utterances']} utterances:")
        print(
            f"  first partial p50 {lat['first_partial_p50_s']} s, "
            f"p95 {lat['first_partial_p95_s']} s"
        )
        print(f"  final p50 {lat['final_p50_s']} s, p95 {lat['final_p95_s']} s")
        print(
            f"  speculative decodes {lat['speculative_finals']}, "
            f"became finals {lat['speculative_finals_used']}; "
            f"cores busy {lat['cores_busy_realtime']}"
        )
    if "phrase_finals" in report:
        print_phrases(report["phrase_finals"])
    if "capacity" in report:
        print_capacity(report["capacity"])


def print_phrases(rows: list[dict[str, Any]]) -> None:
    print("\nPhrase finals, long sonnet items (latency from a phrase's last word, in s):")
    head = ["run", "final p50", "final p95", "max", "first p50", "phrases", "cuts", "WER"]
    head += ["load", "variant"]
    specs = [">3", ">9", ">9", ">6", ">9", ">7", ">4", ">13", ">5", "<"]
    print("  " + _row(list(zip(head, specs, strict=True))))
    for r in rows:
        values = [r["run"], r["final_p50_s"], r["final_p95_s"], r["final_max_s"]]
        values += [r["first_display_p50_s"], r["phrase_finals_committed"], r["at_word_cuts"]]
        values += ["/".join(f"{w:.3f}" for w in r["wer"]), r["load_avg_1m"], r["variant"]]
        value_specs = ["3d", "9.3f", "9.3f", "6.2f", "9.3f", "7d", "4d", "13", "5.1f", ""]
        print("  " + _row(list(zip(values, value_specs, strict=True))))


def print_wer(rows: list[dict[str, Any]]) -> None:
    head = ["item", "audio s", "stream WER", "offl b1", "offl b5", "full win", "RTF", "cores"]
    specs = ["36", ">8", ">10", ">8", ">8", ">8", ">6", ">6"]
    print(_row(list(zip(head, specs, strict=True))))
    keys = ["item", "audio_s", "streaming_wer", "offline_wer_beam1", "offline_wer_beam5"]
    keys += ["streaming_wer_full_window", "rtf"]
    value_specs = ["36", "8.1f", "10.3f", "8.3f", "8.3f", "8.3f", "6.3f", "6.2f"]
    for r in rows:
        values = [r[k] for k in keys] + [r["cores_busy"]]
        print(_row(list(zip(values, value_specs, strict=True))))
    en = [r for r in rows if r["item"].startswith("en_")]
    if en:
        total = sum(r["audio_s"] for r in en)

        def weighted(key: str) -> float:
            return float(sum(r[key] * r["audio_s"] for r in en) / total)

        values = ["English, duration-weighted", total] + [weighted(k) for k in keys[2:6]]
        print(_row(list(zip(values, value_specs[:6], strict=True))))


def print_capacity(capacity: dict[str, Any]) -> None:
    print("\nCapacity (concurrent real-time streams; CPU per speaking track in % of a core):")
    head = ["streams", "final p50", "final p95", "first p50", "dropped", "decoded", "cores"]
    head += ["cpu/track", "load", "variant"]
    specs = [">7", ">9", ">9", ">9", ">8", ">8", ">6", ">9", ">5", "<"]
    print("  " + _row(list(zip(head, specs, strict=True))))
    keys = ["streams", "final_p50_s", "final_p95_s", "first_partial_p50_s"]
    keys += ["partials_dropped", "partials_decoded", "cores_busy", "cpu_per_track_pct"]
    keys += ["load_avg_1m", "variant"]
    value_specs = ["7d", "9.3f", "9.3f", "9.3f", "8d", "8d", "6.2f", "9.1f", "5.1f", ""]
    for r in capacity["rows"]:
        print("  " + _row(list(zip([r[k] for k in keys], value_specs, strict=True))))
    for label, n in capacity["sustained_streams"].items():
        print(f"  sustained with final p95 <= 2 s: {n} streams ({label})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--model", default=EngineSettings().asr_model)
    parser.add_argument("--capacity-max", type=int, default=6)
    parser.add_argument("--capacity-seconds", type=int, default=45)
    parser.add_argument(
        "--capacity-streams",
        type=lambda v: [int(x) for x in v.split(",")],
        default=None,
        help="comma-separated stream counts to run (e.g. 4,8); default: 1, 2, ... until p95 > 2 s",
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="NAME=VALUE[+NAME=VALUE]",
        help="engine settings to compare with the defaults in the latency, phrase and capacity "
        "sections, "
        "e.g. ASR_DECODE_WORKERS=2+ASR_MAX_PARTIAL_BATCH=4 (repeatable)",
    )
    parser.add_argument("--phrase-runs", type=int, default=1)
    parser.add_argument(
        "--sections",
        type=lambda v: set(v.split(",")),
        default=set(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "engine.json")
    args = parser.parse_args(argv)
    if args.sections - set(SECTIONS):
        parser.error(f"--sections: unknown {sorted(args.sections - set(SECTIONS))}")
    report = asyncio.run(bench(args))
    report["machine"] = {"cpus": psutil.cpu_count(), "load_avg_1m_at_end": psutil.getloadavg()[0]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_table(report)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
