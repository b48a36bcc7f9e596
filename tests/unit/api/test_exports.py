from __future__ import annotations

import datetime as dt
import html
import io
import json

import docx
import srt
import webvtt

from api.exports import content_disposition
from core.transcripts import (
    ExportFormat,
    ExportHeader,
    ExportSegment,
    encode_chunks,
    render_docx,
    render_json,
    render_srt,
    render_txt,
    render_vtt,
)

HEADER = ExportHeader(slug="abc-def", title="Планёрка", space_id="space-1")
SEGMENTS = [
    ExportSegment(0, 1500, "Иван Петров", "Привет, коллеги! Ёлка & <тег>", "ivan"),
    ExportSegment(1500, 4_000, "Alice", "Hello\nsecond line --> arrow", "alice"),
    ExportSegment(3_725_010, 3_727_000, "", "Долгая встреча: больше часа", "bob"),
]


def _text(chunks: object) -> str:
    return "".join(chunks)  # type: ignore[arg-type]


def test_srt_parses_back_with_speakers_times_and_cyrillic() -> None:
    subs = list(srt.parse(_text(render_srt(SEGMENTS))))
    assert [s.index for s in subs] == [1, 2, 3]
    assert subs[0].start == dt.timedelta(0)
    assert subs[0].end == dt.timedelta(milliseconds=1500)
    assert subs[0].content == "Иван Петров: Привет, коллеги! Ёлка & <тег>"
    assert subs[1].content == "Alice: Hello second line -> arrow"
    assert subs[2].start == dt.timedelta(hours=1, minutes=2, seconds=5, milliseconds=10)
    assert subs[2].content == "bob: Долгая встреча: больше часа"  # no name: the identity


def test_vtt_parses_back_with_voice_spans() -> None:
    captions = webvtt.from_buffer(io.StringIO(_text(render_vtt(SEGMENTS)))).captions
    assert len(captions) == 3
    assert captions[0].voice == "Иван Петров"
    assert html.unescape(captions[0].text) == "Привет, коллеги! Ёлка & <тег>"
    assert captions[0].start == "00:00:00.000"
    assert captions[2].end == "01:02:07.000"
    assert "-->" not in captions[1].text


def test_txt_has_time_speaker_and_text_per_line() -> None:
    lines = _text(render_txt(SEGMENTS)).splitlines()
    assert lines[0] == "[00:00:00] Иван Петров: Привет, коллеги! Ёлка & <тег>"
    assert lines[2].startswith("[01:02:05] bob: Долгая")


def test_json_export_is_one_document() -> None:
    data = json.loads(_text(render_json(HEADER, SEGMENTS)))
    assert data["session"]["title"] == "Планёрка"
    assert [s["speaker"] for s in data["segments"]] == ["Иван Петров", "Alice", ""]
    assert data["segments"][1]["text"] == "Hello\nsecond line --> arrow"  # JSON keeps text as is
    assert json.loads(_text(render_json(HEADER, [])))["segments"] == []


def test_docx_opens_in_python_docx() -> None:
    document = docx.Document(io.BytesIO(render_docx(HEADER, SEGMENTS)))
    texts = [p.text for p in document.paragraphs]
    assert texts[0] == "Планёрка"
    assert texts[1] == "[00:00:00] Иван Петров: Привет, коллеги! Ёлка & <тег>"
    bold = [r.text for r in document.paragraphs[1].runs if r.bold]
    assert bold == ["Иван Петров: "]


def test_control_characters_and_bad_times_do_not_break_formats() -> None:
    odd = [ExportSegment(-50, -10, "a\x00b\x1f", "x\x07y --->z")]
    assert next(srt.parse(_text(render_srt(odd)))).content == "ab: xy ->z"
    cue = webvtt.from_buffer(io.StringIO(_text(render_vtt(odd)))).captions[0]
    assert cue.start == "00:00:00.000" and cue.end == "00:00:00.001"
    docx.Document(io.BytesIO(render_docx(HEADER, odd)))


def test_utf8_chunks_and_filename() -> None:
    chunks = list(encode_chunks(["ё" * 10, "ж" * 10], min_chars=10))
    assert b"".join(chunks).decode("utf-8") == "ё" * 10 + "ж" * 10
    assert len(chunks) == 2
    assert content_disposition("a b/ü", ExportFormat.SRT) == 'attachment; filename="a_b_.srt"'


def test_docx_strips_control_characters_from_title_names_and_text() -> None:
    """python-docx refuses XML-incompatible characters: a title with one used to 500 forever."""
    header = ExportHeader(slug="s\x01lug", title="Plan\x01ning\x0b\x7f\ufffe", space_id="space-1")
    segments = [ExportSegment(0, 1000, "Iv\x02an\x1f", "he\x00llo\x08 wor\uffffld", "ivan\x03")]
    document = docx.Document(io.BytesIO(render_docx(header, segments)))
    assert document.core_properties.title == "Planning"
    texts = [p.text for p in document.paragraphs]
    assert texts == ["Planning", "[00:00:00] Ivan: hello world"]
    only_controls = ExportHeader(slug="abc", title="\x01\x02", space_id="space-1")
    document = docx.Document(io.BytesIO(render_docx(only_controls, [])))
    assert [p.text for p in document.paragraphs] == ["abc"]


def test_csv_cells_that_start_a_formula_are_neutralised() -> None:
    from decimal import Decimal

    from api.routes.usage import csv_cell

    for value in ('=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(value) == "'" + value
    for value in ("Alice", "", "2026-01-01", "a=b", Decimal("-1.5"), 3):
        assert csv_cell(value) == value


def test_docx_render_stops_when_cancelled() -> None:
    import pytest

    from core.transcripts import RenderCancelled

    polls = 0

    def gone_after_two_polls() -> bool:
        nonlocal polls
        polls += 1
        return polls > 2

    many = [ExportSegment(n, n + 1, "A", f"line {n}") for n in range(5000)]
    with pytest.raises(RenderCancelled):
        render_docx(HEADER, many, cancelled=gone_after_two_polls)
    assert polls == 3  # stopped at the third check, long before the end
    assert render_docx(HEADER, SEGMENTS, cancelled=lambda: False)
