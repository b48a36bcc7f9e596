"""Speaker diarization on the multi-speaker items of ``assets/eval`` (``make bench-diarization``).

For each item with reference turns (RTTM), and for the single-speaker items (where the right
answer is one speaker), two modes:

- ``after``: pyannote's full offline pipeline over the whole recording (the after-meeting pass
  and ``transcriber transcribe --diarize``);
- ``live``: the causal diarizer fed 2 s blocks as a live track would (no look-ahead).

Reported: DER (collar 0, overlapped speech counted; ``bot.pipeline.diarize``), the number of
speakers found against the reference, and CPU seconds per audio second (process CPU time, one
torch thread). Targets on ``multi_pyannote_sample``: after DER <= 8 %, live DER <= 15 %.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

from bot.pipeline.audio import read_file_audio
from bot.pipeline.diarize import (
    LiveDiarizer,
    OfflineDiarizer,
    SpeakerTurn,
    diarization_error_rate,
    read_rttm,
)
from bot.pipeline.types import SAMPLE_RATE_HZ

EVAL = Path(__file__).resolve().parents[1] / "assets" / "eval"
BLOCK_S = 2.0


def items() -> list[tuple[str, Path, list[SpeakerTurn] | None, int]]:
    out = []
    with (EVAL / "manifest.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["file"].endswith(".stereo.wav"):
                continue
            rttm = row["rttm_file"]
            ref = read_rttm((EVAL / rttm).read_text()) if rttm != "-" else None
            out.append((row["id"], EVAL / row["file"], ref, int(row["speakers"])))
    return out


def run_live(diarizer: LiveDiarizer, samples: object) -> list[SpeakerTurn]:
    import numpy as np

    audio = np.asarray(samples)
    block = int(BLOCK_S * SAMPLE_RATE_HZ)
    for i in range(0, len(audio), block):
        diarizer.push(audio[i : i + block])
    return list(diarizer.turns)


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated item ids")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    offline = OfflineDiarizer()
    print(f"loadavg at start: {_loadavg()}  (cpus: {os.cpu_count()})")
    header = f"{'item':34} {'mode':5} {'audio s':>7} {'DER':>7} {'speakers':>9} {'CPU/audio s':>11}"
    print(header)
    print("-" * len(header))
    for item, path, ref, n_ref in items():
        if wanted and item not in wanted:
            continue
        audio = read_file_audio(path)
        duration_s = len(audio) / SAMPLE_RATE_HZ
        for mode in ("after", "live"):
            live = LiveDiarizer() if mode == "live" else None  # model loading is not timed
            started = time.process_time()
            turns = offline.diarize(audio) if live is None else run_live(live, audio)
            cpu_s = time.process_time() - started
            found = len({t.speaker for t in turns})
            der = f"{diarization_error_rate(ref, turns).der * 100:6.1f}%" if ref else "     -"
            ok = "ok" if found == n_ref else "WRONG"
            print(
                f"{item:34} {mode:5} {duration_s:7.1f} {der:>7} {found:>3}/{n_ref:<2} {ok:5}"
                f" {cpu_s / duration_s:8.3f}",
                flush=True,
            )
    print(f"loadavg at end: {_loadavg()}")


if __name__ == "__main__":
    main()
