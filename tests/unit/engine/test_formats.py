from __future__ import annotations

import json

import pytest
import srt
import webvtt

from bot.formats import render
from bot.pipeline.types import Caption, Word

CAPTIONS = [
    Caption("SG_a_0", "partial", False, 0, 500, "en", 0.5),
    Caption(
        "SG_a_0", "Hello there.", True, 120, 1500, "en", 0.9, words=(Word("Hello", 120, 400, 0.9),)
    ),
    Caption("SG_a_1", "", True, 2000, 2500, "en", 0.0),  # an empty final closing partials
    Caption("SG_a_2", "Бедняга, ребят.", True, 3_723_456, 3_725_000, "ru", 0.8),
]


def test_srt_parses_back_with_finals_only() -> None:
    subs = list(srt.parse(render(CAPTIONS, "srt", model="m")))
    assert [s.content for s in subs] == ["Hello there.", "Бедняга, ребят."]
    assert subs[0].start.total_seconds() == pytest.approx(0.12)
    assert subs[1].start.total_seconds() == pytest.approx(3723.456)


def test_vtt_parses_back(tmp_path: object) -> None:
    cues = list(webvtt.from_string(render(CAPTIONS, "vtt", model="m")))
    assert [c.text for c in cues] == ["Hello there.", "Бедняга, ребят."]
    assert cues[1].start == "01:02:03.456"


def test_json_and_txt() -> None:
    doc = json.loads(render(CAPTIONS, "json", model="tiny.en"))
    assert doc["model"] == "tiny.en"
    assert [s["text"] for s in doc["segments"]] == ["Hello there.", "Бедняга, ребят."]
    assert doc["segments"][0]["words"][0]["start_ms"] == 120
    txt = render(CAPTIONS, "txt", model="m")
    assert txt.splitlines() == ["[00:00:00] Hello there.", "[01:02:03] Бедняга, ребят."]


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(CAPTIONS, "docx", model="m")
