"""A track's live diarization stage with a scripted diarizer (the real one is tested on real
audio in tests/integration/engine/test_live_diarization.py): labels, splits, modes, failures,
the bounded backlog."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bot import metrics
from bot.livekit.captions import json_packet, stream_attributes
from bot.pipeline.diarize import SpeakerTurn
from bot.pipeline.track import TrackPipeline
from bot.pipeline.track_diarization import (
    BlockDiarizer,
    DiarizationOptions,
    LiveDiarization,
    diarization_mode,
)
from bot.pipeline.types import SAMPLE_RATE_HZ, Caption, SpokenCaption
from bot.pipeline.usage import UsageMeter
from bot.pipeline.vad import Float32Array
from core.errors import DiarizationError, ModelUnavailableError
from tests.unit.bot.fakes import ArraySource, ListSink, engine, speaker, speech

REPO = Path(__file__).resolve().parents[3]
# the scripted recognizer's words of speech(): "hello" 0-250 ms, "there" 300-550 ms
TWO_VOICES = [SpeakerTurn(0, 275, "Speaker 1"), SpeakerTurn(275, 3000, "Speaker 2")]
ONE_VOICE = [SpeakerTurn(0, 3000, "Speaker 1")]


class ScriptedDiarizer:
    """Returns the scripted turns that fall in each block (times from the stream start)."""

    def __init__(
        self,
        turns: list[SpeakerTurn],
        *,
        fail: bool = False,
        gate: threading.Event | None = None,
    ) -> None:
        self.turns = turns
        self.fail = fail
        self.gate = gate
        self.at = 0
        self.pushed: list[int] = []
        self.skipped = 0

    def push(self, block: Float32Array) -> list[SpeakerTurn]:
        if self.gate is not None:
            self.gate.wait(timeout=10)
        start = self.at * 1000 // SAMPLE_RATE_HZ
        self.at += len(block)
        self.pushed.append(len(block))
        end = self.at * 1000 // SAMPLE_RATE_HZ
        if self.fail:
            raise DiarizationError("live diarization failed: RuntimeError")
        return [
            SpeakerTurn(max(t.start_ms, start), min(t.end_ms, end), t.speaker)
            for t in self.turns
            if t.start_ms < end and t.end_ms > start
        ]

    def skip(self, samples: int) -> None:
        self.at += samples
        self.skipped += samples


def service(diarizer: BlockDiarizer | None = None, **options: float) -> LiveDiarization:
    built = diarizer or ScriptedDiarizer(ONE_VOICE)
    return LiveDiarization(
        DiarizationOptions(**{"block_ms": 500, "max_backlog_blocks": 100, **options}),  # type: ignore[arg-type]
        factory=lambda: built,
    )


async def run_track(
    live: LiveDiarization, mode: str, audio: Float32Array | None = None, *, wait_s: float = 10.0
) -> tuple[ListSink, ListSink]:
    eng = engine()
    record, room = ListSink(), ListSink()
    diarizer = live.open_track(diarization_mode(mode, None), "TR_1")
    pipeline = TrackPipeline(
        speaker("TR_1"),
        ArraySource(speech() if audio is None else audio),
        eng.open_stream("TR_1"),
        record=record,
        publish=room,
        meter=UsageMeter(),
        stream_id=1,
        diarizer=diarizer,
        diarization_wait_s=wait_s,
    )
    await asyncio.wait_for(pipeline.run(), 20)
    await eng.aclose()
    live.close()
    return record, room


def finals(sink: ListSink) -> list[tuple[str, str, str, str | None]]:
    return [
        (
            i.caption.utterance_id.rsplit("_", 1)[1],  # "0", "0-1": the utterance's index
            i.caption.text,
            i.speaker.label,
            i.speaker.in_track,
        )
        for i in sink.items
        if i.caption.is_final
    ]


def test_the_mode_is_the_participants_when_it_names_one() -> None:
    assert diarization_mode("off", None) == "off"
    assert diarization_mode("auto", None) == "auto"
    assert diarization_mode("off", "ON") == "on"
    assert diarization_mode("on", "off") == "off"
    assert diarization_mode("auto", "maybe") == "auto"  # an unknown attribute is unset
    assert diarization_mode("bogus", None) == "off"


async def test_a_speaker_change_inside_an_utterance_splits_its_final() -> None:
    record, room = await run_track(service(ScriptedDiarizer(TWO_VOICES)), "on")
    expected = [
        ("0", "hello", "P · Speaker 1", "Speaker 1"),  # keeps the utterance id
        ("0-1", "there", "P · Speaker 2", "Speaker 2"),
    ]
    assert finals(record) == expected
    assert finals(room) == expected


async def test_off_builds_no_diarizer() -> None:
    built: list[object] = []

    def factory() -> BlockDiarizer:
        built.append(1)
        return ScriptedDiarizer(ONE_VOICE)

    live = LiveDiarization(DiarizationOptions(block_ms=500), factory=factory)
    assert live.open_track("off", "TR_1") is None
    record, _ = await run_track(live, "off")
    assert built == []
    assert finals(record) == [("0", "hello there", "P", None)]


def test_off_imports_no_torch() -> None:
    """The whole room path with the session's mode off, in a fresh interpreter."""
    script = """
import asyncio, sys
from bot.pipeline.track_diarization import LiveDiarization
from tests.unit.bot.test_transcription import compose, FakeRepo
from tests.unit.bot.fakes import ArraySource, ListSink, speaker, speech
from bot.transcription import RoomTranscription

async def main():
    transcription, recorder, stored = compose(FakeRepo())
    transcription._diarization = LiveDiarization()
    await transcription.transcribe(speaker("TR_1"), ArraySource(speech()), ListSink())
    assert [i.speaker.in_track for i in stored.items if i.caption.is_final] == [None]
    assert "torch" not in sys.modules, "torch imported"
    print("ok")

asyncio.run(main())
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


async def test_auto_shows_labels_only_after_a_second_voice() -> None:
    # labels need two voices with the threshold's speech each: the first speaks 0.275 s
    _, room = await run_track(service(ScriptedDiarizer(TWO_VOICES), auto_min_speech_s=0.2), "auto")
    assert [f[3] for f in finals(room)] == ["Speaker 1", "Speaker 2"]
    _, room = await run_track(service(ScriptedDiarizer(TWO_VOICES), auto_min_speech_s=0.5), "auto")
    assert finals(room) == [("0", "hello there", "P", None)]


async def test_a_failing_diarizer_never_stops_captions(caplog: pytest.LogCaptureFixture) -> None:
    before = metrics.DIARIZATION_ERRORS._value.get()
    with caplog.at_level(logging.WARNING, logger="bot.pipeline"):
        record, room = await run_track(service(ScriptedDiarizer(TWO_VOICES, fail=True)), "on")
    assert finals(record) == finals(room) == [("0", "hello there", "P", None)]
    # each failed block counted (the four up to the final's end at 1.92 s at least: the
    # final waited for them; the track's last two may still be queued when it ends), and
    # none logged with caption text
    assert metrics.DIARIZATION_ERRORS._value.get() - before >= 4
    assert "hello" not in caplog.text
    assert "live diarization failed" in caplog.text


async def test_models_that_cannot_load_keep_participant_labels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def factory() -> BlockDiarizer:
        raise ModelUnavailableError("diarization models failed to load: FileNotFoundError")

    live = LiveDiarization(DiarizationOptions(block_ms=500), factory=factory)
    with caplog.at_level(logging.WARNING, logger="bot.pipeline"):
        record, _ = await run_track(live, "on")
    assert finals(record) == [("0", "hello there", "P", None)]
    assert live.open_track("on", "TR_2") is None  # off for the rest of the worker's life
    assert caplog.text.count("speaker diarization unavailable") == 1


async def test_a_silent_track_keeps_the_participant_label() -> None:
    _, room = await run_track(service(ScriptedDiarizer([])), "on")
    assert finals(room) == [("0", "hello there", "P", None)]


async def test_a_backlog_beyond_the_bound_is_skipped_and_counted() -> None:
    gate = threading.Event()
    slow = ScriptedDiarizer(ONE_VOICE, gate=gate)
    live = service(slow, max_backlog_blocks=2)
    before = metrics.DIARIZATION_BLOCKS_SKIPPED._value.get()
    diarizer = live.open_track("on", "TR_1")
    assert diarizer is not None
    diarizer.push_audio(np.zeros(8 * 8000, dtype=np.float32))  # 8 blocks of 0.5 s at once
    assert await diarizer.wait_covered(4000, timeout_s=0.05) is False  # the diarizer is stuck
    gate.set()
    diarizer.end_input()
    assert await diarizer.wait_covered(4000, timeout_s=10)
    live.close()
    # two blocks went to the executor, six were skipped (their time kept: 3 s of samples)
    assert diarizer.stats.skipped_blocks == 6
    assert metrics.DIARIZATION_BLOCKS_SKIPPED._value.get() - before == 6
    assert slow.pushed == [8000, 8000]
    assert slow.skipped == 0  # nothing was diarized after the gap


async def test_a_final_waits_at_most_max_wait_for_its_speaker() -> None:
    gate = threading.Event()  # the diarizer never answers in time
    try:
        _, room = await run_track(
            service(ScriptedDiarizer(TWO_VOICES, gate=gate)), "on", wait_s=0.2
        )
    finally:
        gate.set()
    assert finals(room) == [("0", "hello there", "P", None)]


def test_the_in_track_label_goes_out_on_the_wire() -> None:
    caption = Caption("u1", "hi", True, 0, 500, "en", 0.9)
    plain = SpokenCaption(caption, speaker("TR_1"), datetime.now(UTC))
    diarized = dataclasses.replace(plain, speaker=speaker("TR_1").within("Speaker 2"))
    assert "transcriber.speaker" not in stream_attributes(plain)
    assert stream_attributes(diarized)["transcriber.speaker"] == "Speaker 2"
    packet = json.loads(json_packet(diarized))
    assert (packet["speakerInTrack"], packet["speakerLabel"]) == ("Speaker 2", "P · Speaker 2")
    assert json.loads(json_packet(plain))["speakerInTrack"] is None


async def test_a_partial_carries_the_latest_known_speaker() -> None:
    live = service(ScriptedDiarizer(TWO_VOICES))
    diarizer = live.open_track("on", "TR_1")
    assert diarizer is not None
    partial = Caption("u1", "hello there", False, 0, 1000, "en", 0.9)
    assert diarizer.partial_speaker(partial) is None  # nothing heard yet
    diarizer.push_audio(np.zeros(16_000, dtype=np.float32))
    assert await diarizer.wait_covered(1000, timeout_s=10)
    live.close()
    assert diarizer.partial_speaker(partial) == "Speaker 2"  # most of 0-1 s
    # a partial past the diarized audio: the speaker of the nearest turn
    later = Caption("u2", "so", False, 1500, 1900, "en", 0.9)
    assert diarizer.partial_speaker(later) == "Speaker 2"


def test_without_the_extra_a_track_keeps_its_participant_label_and_one_warning() -> None:
    """A fresh interpreter where torch cannot be found (as without the extra)."""
    script = """
import asyncio, logging, sys
sys.modules["torch"] = None  # find_spec("torch") is None: the extra is not installed
from bot.pipeline.track_diarization import LiveDiarization
from tests.unit.bot.test_track_diarization import finals, run_track

class Count(logging.Handler):
    warnings = 0
    def emit(self, record):
        Count.warnings += record.levelno == logging.WARNING

logging.getLogger("bot.pipeline").addHandler(Count())
live = LiveDiarization()
assert not live.available
record, _ = asyncio.run(run_track(live, "on"))
assert finals(record) == [("0", "hello there", "P", None)], finals(record)
assert live.open_track("auto", "TR_2") is None
assert Count.warnings == 1, Count.warnings
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
