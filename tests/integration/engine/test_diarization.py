"""Speaker diarization on real recordings with the real weights (the ``diarization`` extra).

CI installs the extra (``make test`` runs ``make setup-diarization``), so these run there; a
developer venv without it skips them with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.pipeline.audio import read_file_audio
from bot.pipeline.diarize import (
    LiveDiarizer,
    OfflineDiarizer,
    align_labels,
    diarization_available,
    diarization_error_rate,
    read_rttm,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not diarization_available(), reason="the 'diarization' extra is not installed"
    ),
]
EVAL = Path(__file__).resolve().parents[3] / "assets" / "eval"
REPO = EVAL.parents[1]
COMMAND = [sys.executable, "-m", "bot.cli", "transcribe", "--diarize", "--model", "tiny.en"]


@pytest.fixture(scope="module")
def diarizer() -> OfflineDiarizer:
    return OfflineDiarizer()


@pytest.mark.parametrize(
    ("item", "max_der"),
    [("multi_pyannote_sample", 0.08), ("en_stereo_2spk", 0.15)],
)
def test_two_speakers_are_found_with_the_reference_turns(
    diarizer: OfflineDiarizer, item: str, max_der: float
) -> None:
    turns = diarizer.diarize(read_file_audio(EVAL / f"{item}.wav"))
    reference = read_rttm((EVAL / f"{item}.rttm").read_text())
    assert {t.speaker for t in turns} == {"Speaker 1", "Speaker 2"}
    assert diarization_error_rate(reference, turns).der <= max_der


@pytest.mark.parametrize(
    "item", ["en_jfk_inaugural", "en_librispeech_1272-128104-0000", "en_ljspeech_LJ050-0131"]
)
def test_a_single_speaker_is_never_split(diarizer: OfflineDiarizer, item: str) -> None:
    turns = diarizer.diarize(read_file_audio(EVAL / f"{item}.wav"))
    assert turns
    assert {t.speaker for t in turns} == {"Speaker 1"}


def test_too_short_or_silent_audio_gets_no_turns(diarizer: OfflineDiarizer) -> None:
    assert diarizer.diarize(np.zeros(16_000 * 5, dtype=np.float32)) == []
    speech = read_file_audio(EVAL / "en_jfk_inaugural.wav")
    assert diarizer.diarize(speech[:8_000]) == []


def test_transcribe_diarize_labels_each_segment(tmp_path: Path) -> None:
    clip = EVAL / "multi_pyannote_sample.wav"
    docs = {}
    # two formats through the command (each run loads both models); VTT and TXT labels are
    # rendered by the same code, checked in tests/unit/engine/test_diarize.py
    for fmt in ("json", "srt"):
        out = tmp_path / f"out.{fmt}"
        proc = subprocess.run(
            [*COMMAND, "-f", fmt, "-o", str(out), str(clip)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        docs[fmt] = out.read_text()
    segments = json.loads(docs["json"])["segments"]
    assert segments and all(s["speaker"] in {"Speaker 1", "Speaker 2"} for s in segments)
    assert {s["speaker"] for s in segments} == {"Speaker 1", "Speaker 2"}
    # each segment's middle falls inside a reference turn of the speaker it maps to
    reference = read_rttm((EVAL / "multi_pyannote_sample.rttm").read_text())
    votes: dict[tuple[str, str], int] = {}
    for s in segments:
        for turn in reference:
            overlap = min(s["end_ms"], turn.end_ms) - max(s["start_ms"], turn.start_ms)
            if overlap > 0:
                key = (s["speaker"], turn.speaker)
                votes[key] = votes.get(key, 0) + overlap
    mapping = {
        ours: max((v, ref) for (o, ref), v in votes.items() if o == ours)[1] for ours, _ in votes
    }
    assert len(set(mapping.values())) == 2
    cues = [block.splitlines()[2] for block in docs["srt"].strip().split("\n\n")]
    assert cues and all(c.startswith(("Speaker 1: ", "Speaker 2: ")) for c in cues)


def _live(item: str) -> LiveDiarizer:
    live = LiveDiarizer()
    audio = read_file_audio(EVAL / f"{item}.wav")
    for i in range(0, len(audio), 32_000):  # 2 s blocks, as a live track delivers them
        live.push(audio[i : i + 32_000])
    return live


def test_live_labels_find_two_stable_speakers_in_a_shared_microphone() -> None:
    live = _live("multi_pyannote_sample")
    reference = read_rttm((EVAL / "multi_pyannote_sample.rttm").read_text())
    assert live.speakers == ["Speaker 1", "Speaker 2"]
    # stable: one label per reference speaker for the whole stream (DER counts every swap)
    assert diarization_error_rate(reference, live.turns).der <= 0.15


def test_live_labels_tell_apart_a_voice_heard_only_in_overlap() -> None:
    # en_stereo_2spk: the second voice talks only over the first (0.37-2.44 s inside 0.3-4.67 s)
    assert _live("en_stereo_2spk").speakers == ["Speaker 1", "Speaker 2"]


@pytest.mark.parametrize("item", ["en_jfk_inaugural", "en_librivox_sonnet001"])
def test_live_labels_never_split_a_single_speaker(item: str) -> None:
    assert _live(item).speakers == ["Speaker 1"]


def test_after_meeting_labels_keep_the_live_names(diarizer: OfflineDiarizer) -> None:
    live = _live("multi_pyannote_sample")
    final = align_labels(
        live.turns, diarizer.diarize(read_file_audio(EVAL / "multi_pyannote_sample.wav"))
    )
    reference = read_rttm((EVAL / "multi_pyannote_sample.rttm").read_text())
    assert {t.speaker for t in final} == {"Speaker 1", "Speaker 2"}
    assert diarization_error_rate(reference, final).der <= 0.08
    # the same names for the same voices, compared name by name (no remapping to hide a swap):
    # swapped names would agree on ~16 % of the time; overlapped speech (both names in the final
    # turns) and the live pass's own errors keep it below 100 % (measured: 84 %)
    same = other = 0
    for a in live.turns:
        for b in final:
            overlap = max(0, min(a.end_ms, b.end_ms) - max(a.start_ms, b.start_ms))
            same += overlap if a.speaker == b.speaker else 0
            other += overlap if a.speaker != b.speaker else 0
    assert same >= 0.75 * (same + other)


def test_no_hub_and_no_telemetry_once_loaded(diarizer: OfflineDiarizer) -> None:
    from huggingface_hub import constants
    from pyannote.audio.telemetry.metrics import is_metrics_enabled

    assert not is_metrics_enabled()
    assert constants.HF_HUB_OFFLINE
