"""Compare what a track received through a room with the clip that was spoken.

    python -m bench.room_audio DUMP.wav [--clip assets/eval/en_jfk_inaugural.wav]

``DUMP.wav`` (and its ``.jsonl``) come from ``AUDIO_DUMP_DIR`` (bot/pipeline/dump.py). Prints:

* frame timing: the largest gaps between frames reaching the pipeline (wall clock);
* the clip's position in the received audio, then per 100 ms of the clip's speech the lag
  against that position and the correlation with the clip. A lag that grows is audio inserted
  (a sender that under-ran its queue sends silence; NetEq conceals late packets); one that
  shrinks is audio removed (NetEq accelerating); a low correlation at a steady lag is distorted
  or concealed audio; a received level far below the clip's is a dropout;
* the pauses between utterances as the segmenter sees them (VAD speech end -> next onset).

Used for issue 16: the received audio equalled the sent audio in 7 of 8 loaded e2e runs (the
words were lost by segmentation); in the eighth the sender under-ran mid-word.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from bot.pipeline.audio import read_file_audio
from bot.pipeline.types import SAMPLE_RATE_HZ
from bot.pipeline.vad import (
    Float32Array,
    Segmenter,
    SegmenterOptions,
    SileroVad,
    UtteranceEnded,
    UtteranceStarted,
)

REPO = Path(__file__).resolve().parent.parent
STEP = SAMPLE_RATE_HZ // 10  # 100 ms
SEARCH = SAMPLE_RATE_HZ * 3 // 20  # +-150 ms


def _db(x: Float32Array) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-9))


def clip_offset(received: Float32Array, clip: Float32Array) -> int:
    """Where the clip starts in the received audio (envelope cross-correlation, 10 ms)."""

    def envelope(x: Float32Array) -> Float32Array:
        n = len(x) // 160
        return np.asarray(np.abs(x[: n * 160]).reshape(n, 160).mean(axis=1), dtype=np.float32)

    er, ec = envelope(received), envelope(clip[: 3 * SAMPLE_RATE_HZ])
    corr = np.correlate(er - er.mean(), ec - ec.mean(), "valid")
    return int(np.argmax(corr)) * 160


def lag_rows(received: Float32Array, clip: Float32Array, offset: int) -> list[tuple[float, ...]]:
    """(clip time s, lag ms vs ``offset``, correlation, clip dB, received dB) per 100 ms."""
    rows = []
    for i in range(0, len(clip) - STEP, STEP):
        piece = clip[i : i + STEP]
        lo = offset + i - SEARCH
        if _db(piece) < -30 or lo < 0 or lo + 2 * SEARCH + STEP > len(received):
            continue
        window = received[lo : lo + 2 * SEARCH + STEP]
        corr = np.correlate(window, piece, "valid")
        k = int(np.argmax(corr))
        match = window[k : k + STEP]
        norm = float(np.sqrt(np.sum(piece**2) * np.sum(match**2))) + 1e-9
        lag_ms = (k - SEARCH) * 1000 / SAMPLE_RATE_HZ
        at = offset + i
        rows.append(
            (i / SAMPLE_RATE_HZ, lag_ms, corr[k] / norm, _db(piece), _db(received[at : at + STEP]))
        )
    return rows


def pauses(received: Float32Array) -> list[float]:
    """Seconds from each utterance's VAD speech end to the next speech onset."""
    options = SegmenterOptions()
    segmenter = Segmenter(SileroVad().stream(), options)
    events: list[tuple[str, int]] = []
    for i in range(0, len(received), STEP):
        for e in segmenter.push(received[i : i + STEP]):
            if isinstance(e, UtteranceEnded):
                events.append(("end", e.speech_end_sample))
            elif isinstance(e, UtteranceStarted):
                onset = e.start_sample + options.pre_roll_ms * SAMPLE_RATE_HZ // 1000
                events.append(("start", onset))
    return [(b[1] - a[1]) / SAMPLE_RATE_HZ for a, b in itertools.pairwise(events) if a[0] == "end"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.room_audio")
    parser.add_argument("dump", type=Path)
    parser.add_argument("--clip", type=Path, default=REPO / "assets/eval/en_jfk_inaugural.wav")
    args = parser.parse_args(argv)
    received = read_file_audio(args.dump)
    clip = read_file_audio(args.clip)
    events = args.dump.with_suffix(".jsonl")
    if events.is_file():
        frames = [json.loads(line) for line in events.read_text().splitlines()]
        times = np.array([f["t"] for f in frames if "t" in f])
        if len(times) > 1:
            gaps = np.diff(times)
            print(
                f"frames: {len(times)}, largest gaps (s): "
                f"{', '.join(f'{g:.3f}' for g in sorted(gaps)[-3:])}"
            )
    offset = clip_offset(received, clip)
    print(f"clip starts at {offset / SAMPLE_RATE_HZ:.3f} s of the received audio")
    rows = lag_rows(received, clip, offset)
    first_lag = rows[0][1] if rows else 0.0
    print(" clip_s  lag_ms   corr  clip_dB  recv_dB")
    print(" (lag: against the first row; recv_dB: where the clip would be without any lag)")
    for t, lag, corr, db_clip, db_recv in rows:
        lag -= first_lag
        flag = "  <- moved" if abs(lag) > 5 else ""
        flag += "  <- distorted" if corr < 0.8 else ""
        flag += "  <- dropout" if db_recv < db_clip - 10 else ""
        print(f"{t:7.2f} {lag:7.2f} {corr:6.2f} {db_clip:8.1f} {db_recv:8.1f}{flag}")
    print(f"pauses between utterances (s): {[round(p, 3) for p in pauses(received)]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
