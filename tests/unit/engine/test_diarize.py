"""The pure parts of diarization: DER on hand-made cases, labels, captions split by speaker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.formats import render
from bot.pipeline.diarize import (
    SpeakerTurn,
    align_labels,
    attribute_captions,
    diarization_available,
    diarization_error_rate,
    read_rttm,
    relabel,
    speaker_at,
)
from bot.pipeline.types import Caption, Word
from core.errors import DiarizationError

REPO = Path(__file__).resolve().parents[3]


def t(start_s: float, end_s: float, who: str) -> SpeakerTurn:
    return SpeakerTurn(round(start_s * 1000), round(end_s * 1000), who)


def test_der_is_zero_for_the_reference_under_other_names() -> None:
    ref = [t(0, 4, "a"), t(4, 10, "b"), t(8, 9, "a")]
    hyp = [t(0, 4, "x"), t(4, 10, "y"), t(8, 9, "x")]
    score = diarization_error_rate(ref, hyp)
    assert score.reference_s == pytest.approx(11.0)
    assert score.der == 0.0


def test_der_counts_miss_false_alarm_confusion_and_overlap() -> None:
    # reference: a 0-10, b 5-15 (overlap 5-10): 20 s of speaker time
    ref = [t(0, 10, "a"), t(5, 15, "b")]
    # hypothesis: x 0-8 (a, 2 s missed), y 8-15 (b, but 8-10 it labels a's overlap as only y:
    # 1 speaker where 2 talk: 2 s missed), z 15-16 (1 s false alarm)
    # and y 5-8 missing under b: 3 s missed.
    hyp = [t(0, 8, "x"), t(8, 15, "y"), t(15, 16, "z")]
    score = diarization_error_rate(ref, hyp)
    # 0-5: ref {a}, hyp {x}: correct. 5-8: ref {a,b}, hyp {x}: 3 s missed.
    # 8-10: ref {a,b}, hyp {y}: 2 s missed, y->b correct. 10-15: ref {b}, hyp {y}: correct.
    # 15-16: hyp {z}: 1 s false alarm. Mapping a->x, b->y.
    assert score.reference_s == pytest.approx(20.0)
    assert score.missed_s == pytest.approx(5.0)
    assert score.false_alarm_s == pytest.approx(1.0)
    assert score.confusion_s == pytest.approx(0.0)
    assert score.der == pytest.approx(6 / 20)


def test_der_confusion_uses_the_best_one_to_one_mapping() -> None:
    ref = [t(0, 6, "a"), t(6, 10, "b")]
    hyp = [t(0, 10, "x")]  # one speaker for both: b's 4 s are confused
    score = diarization_error_rate(ref, hyp)
    assert (score.missed_s, score.false_alarm_s) == (0.0, 0.0)
    assert score.confusion_s == pytest.approx(4.0)
    assert score.der == pytest.approx(0.4)


def test_der_agrees_with_pyannote_metrics_when_installed() -> None:
    metrics = pytest.importorskip("pyannote.metrics.diarization", reason="diarization extra")
    from pyannote.core import Annotation, Segment, Timeline

    ref = read_rttm((REPO / "assets/eval/multi_pyannote_sample.rttm").read_text())
    hyp = [t(6.7, 10.0, "x"), t(10.0, 14.6, "y"), t(14.6, 22.0, "x"), t(21.5, 30.0, "y")]
    ours = diarization_error_rate(ref, hyp).der

    def annotation(turns: list[SpeakerTurn]) -> object:
        a = Annotation()
        for turn in turns:
            a[Segment(turn.start_ms / 1000, turn.end_ms / 1000)] = turn.speaker
        return a

    theirs = metrics.DiarizationErrorRate(collar=0.0, skip_overlap=False)(
        annotation(ref), annotation(hyp), uem=Timeline([Segment(0, 30)])
    )
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_read_rttm_reads_the_eval_references() -> None:
    turns = read_rttm((REPO / "assets/eval/multi_pyannote_sample.rttm").read_text())
    assert len(turns) == 10
    assert turns[0] == SpeakerTurn(6690, 7120, "speaker90")
    assert {turn.speaker for turn in turns} == {"speaker90", "speaker91"}


def test_relabel_numbers_speakers_in_order_of_first_speech() -> None:
    turns = relabel([t(5, 6, "SPEAKER_00"), t(1, 2, "SPEAKER_01"), t(3, 4, "SPEAKER_00")])
    assert [x.speaker for x in turns] == ["Speaker 1", "Speaker 2", "Speaker 2"]


def _caption(words: list[tuple[str, float, float]], uid: str = "u1") -> Caption:
    ws = tuple(Word(w, round(a * 1000), round(b * 1000), 0.9) for w, a, b in words)
    text = " ".join(w for w, _, _ in words)
    return Caption(
        utterance_id=uid,
        text=text,
        is_final=True,
        start_ms=ws[0].start_ms,
        end_ms=ws[-1].end_ms,
        language="en",
        confidence=0.9,
        stable_text=text,
        words=ws,
    )


def test_a_speaker_change_inside_a_caption_splits_it_at_the_word() -> None:
    turns = [t(0, 2.1, "Speaker 1"), t(2.1, 5, "Speaker 2")]
    caption = _caption(
        [("Hello", 0.1, 0.5), ("there.", 0.6, 1.9), ("Hi,", 2.3, 2.6), ("Bob.", 2.7, 3)]
    )
    out = attribute_captions([caption], turns)
    assert [(a.speaker, a.caption.text) for a in out] == [
        ("Speaker 1", "Hello there."),
        ("Speaker 2", "Hi, Bob."),
    ]
    assert [a.caption.utterance_id for a in out] == ["u1", "u1-1"]
    assert (out[1].caption.start_ms, out[1].caption.end_ms) == (2300, 3000)


def test_one_speaker_is_never_split_and_no_turns_means_no_label() -> None:
    caption = _caption([("One", 0.1, 0.4), ("voice", 0.5, 0.9), ("only.", 3.0, 3.5)])
    # a word in a pause between two turns of the same speaker goes to the nearest turn
    turns = [t(0, 1, "Speaker 1"), t(3.2, 4, "Speaker 1")]
    out = attribute_captions([caption], turns)
    assert [(a.speaker, a.caption) for a in out] == [("Speaker 1", caption)]
    assert attribute_captions([caption], []) == [type(out[0])(caption, None)]


def test_speaker_at_prefers_who_talks_most() -> None:
    turns = [t(0, 1.2, "A"), t(1.0, 3, "B")]
    assert speaker_at(900, 2000, turns) == "B"
    assert speaker_at(0, 1000, turns) == "A"
    assert speaker_at(0, 1000, []) is None


def test_diarized_documents_carry_the_speaker_in_every_format() -> None:
    turns = [t(0, 2.1, "Speaker 1"), t(2.1, 5, "Speaker 2")]
    caption = _caption(
        [("Hello", 0.1, 0.5), ("there.", 0.6, 1.9), ("Hi,", 2.3, 2.6), ("Bob.", 2.7, 3)]
    )
    speakers = attribute_captions([caption], turns)
    docs = {f: render([caption], f, model="m", speakers=speakers) for f in ("srt", "vtt", "txt")}
    assert "Speaker 1: Hello there." in docs["srt"]
    assert "Speaker 2: Hi, Bob." in docs["srt"]
    assert "<v Speaker 2>Hi, Bob." in docs["vtt"]
    assert "[00:00:02] Speaker 2: Hi, Bob." in docs["txt"]
    import json

    segments = json.loads(render([caption], "json", model="m", speakers=speakers))["segments"]
    assert [(s["speaker"], s["text"]) for s in segments] == [
        ("Speaker 1", "Hello there."),
        ("Speaker 2", "Hi, Bob."),
    ]
    # without diarization nothing changes: no labels, no speaker key
    assert "Speaker" not in render([caption], "srt", model="m")
    plain = json.loads(render([caption], "json", model="m"))["segments"]
    assert "speaker" not in plain[0]


@pytest.mark.skipif(diarization_available(), reason="tests the hint shown without the extra")
def test_diarize_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "transcribe",
            "--diarize",
            str(REPO / "assets/eval/en_jfk_inaugural.wav"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "make setup-diarization" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_product_without_diarization_never_imports_torch() -> None:
    code = (
        "import sys, bot.pipeline.diarize, bot.formats, bot.transcribe_cli\n"
        "assert 'torch' not in sys.modules and 'pyannote.audio' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


class _FailingDiarizer:
    def diarize(self, samples: object) -> list[SpeakerTurn]:
        raise DiarizationError("diarization failed: RuntimeError")


def test_a_failing_diarizer_costs_the_labels_not_the_transcript(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.transcribe_cli import _diarize

    caption = _caption([("Secret", 0.1, 0.5), ("words.", 0.6, 1.0)])
    out = _diarize(REPO / "assets/eval/en_jfk_inaugural.wav", [caption], _FailingDiarizer())
    assert [(a.caption, a.speaker) for a in out] == [(caption, None)]
    assert "diarization failed" in caplog.text
    assert "Secret" not in caplog.text
    assert "Speaker: Secret words." in render([caption], "txt", model="m", speakers=out)


def test_after_meeting_turns_take_the_live_labels_they_overlap() -> None:
    # live said "Speaker 1" then "Speaker 2"; the offline pass numbers them the other way round
    # and finds a third voice the live pass never told apart
    live = [t(0, 5, "Speaker 1"), t(5, 10, "Speaker 2"), t(10, 14, "Speaker 2")]
    final = [t(0, 5.2, "Speaker 2"), t(5.2, 10, "Speaker 1"), t(10, 14, "Speaker 3")]
    aligned = align_labels(live, final)
    assert [x.speaker for x in aligned] == ["Speaker 1", "Speaker 2", "Speaker 3"]
    assert [(x.start_ms, x.end_ms) for x in aligned] == [(0, 5200), (5200, 10000), (10000, 14000)]
    # nothing live (a track that was not diarized live): numbered in order of first speech
    assert [x.speaker for x in align_labels([], final)] == ["Speaker 1", "Speaker 2", "Speaker 3"]
