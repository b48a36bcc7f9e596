"""Transcripts as documents, pure functions over segment rows: SRT, WebVTT, TXT, DOCX, JSON.

The API's downloads and the bot's file transcriber both render through here; the HTTP bits
(content types, ``Content-Disposition``) stay in ``api.exports``.

Input is an iterable of :class:`ExportSegment` in time order (speaker names already resolved);
text renderers yield ``str`` chunks so a handler can stream a long transcript while it reads
rows, and :func:`encode_chunks` turns them into UTF-8 bytes. Text is kept exactly (Cyrillic and
all) except what a format cannot carry: line breaks inside a caption become spaces, a literal
``-->`` becomes ``->`` (it would end an SRT/VTT timing line) and WebVTT escapes ``& < >``.
"""

from __future__ import annotations

import enum
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# C0 controls other than tab and line breaks, DEL, and the noncharacters U+FFFE/U+FFFF and lone
# surrogates: not allowed in XML (DOCX, whose writer raises on them) or captions
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")
_ARROW = re.compile(r"--+>")


class ExportFormat(enum.StrEnum):
    SRT = "srt"
    VTT = "vtt"
    TXT = "txt"
    DOCX = "docx"
    JSON = "json"


def speaker_display(participant: str, label: str | None, name: str | None) -> str:
    """What a transcript shows as a segment's speaker: the name the host app gave the in-track
    ``label`` when it has one, else ``"<participant> · <label>"`` for a diarized track (the
    bot's live caption label), else the participant."""
    if name:
        return name
    if label:
        return f"{participant} · {label}" if participant else label
    return participant


@dataclass(frozen=True, slots=True)
class ExportSegment:
    """One final caption as exported: times from the session start, speaker display name (see
    :func:`speaker_display`) and in-track label (``None``: the track was not diarized)."""

    start_ms: int
    end_ms: int
    speaker: str
    text: str
    speaker_identity: str = ""
    language: str | None = None
    speaker_label: str | None = None


@dataclass(frozen=True, slots=True)
class ExportHeader:
    """What an export says about its session (``transcript_version``: which speaker labels it
    carries, ``live`` or ``final``; None: no versions, e.g. a file transcribed offline)."""

    slug: str
    title: str
    space_id: str
    transcript_version: str | None = None


def _one_line(text: str) -> str:
    return _ARROW.sub("->", _CONTROLS.sub("", _BREAKS.sub(" ", text))).strip()


def _clock(ms: int, separator: str) -> str:
    ms = max(ms, 0)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _times(segment: ExportSegment) -> tuple[int, int]:
    start = max(segment.start_ms, 0)
    return start, max(segment.end_ms, start + 1)


def _label(segment: ExportSegment) -> str:
    return _one_line(segment.speaker) or _one_line(segment.speaker_identity) or "Speaker"


def _spoken(segment: ExportSegment, labels: bool) -> str:
    text = _one_line(segment.text)
    return f"{_label(segment)}: {text}" if labels else text


def render_srt(
    segments: Iterable[ExportSegment], *, first_index: int = 1, labels: bool = True
) -> Iterator[str]:
    """SubRip: one numbered cue per segment, ``Speaker: text`` (``text`` without labels)."""
    for index, segment in enumerate(segments, start=first_index):
        start, end = _times(segment)
        yield (
            f"{index}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{_spoken(segment, labels)}\n\n"
        )


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(
    segments: Iterable[ExportSegment], *, header: bool = True, labels: bool = True
) -> Iterator[str]:
    """WebVTT with the speaker as a voice span: ``<v Speaker>text``."""
    if header:
        yield "WEBVTT\n\n"
    for segment in segments:
        start, end = _times(segment)
        voice = f"<v {_vtt_escape(_label(segment))}>" if labels else ""
        yield (
            f"{_clock(start, '.')} --> {_clock(end, '.')}\n"
            f"{voice}{_vtt_escape(_one_line(segment.text))}\n\n"
        )


def render_txt(segments: Iterable[ExportSegment], *, labels: bool = True) -> Iterator[str]:
    """Plain text: ``[HH:MM:SS] Speaker: text`` per line."""
    for segment in segments:
        start, _ = _times(segment)
        yield f"[{_clock(start, '.')[:8]}] {_spoken(segment, labels)}\n"


def segment_dict(segment: ExportSegment) -> dict[str, Any]:
    return {
        "start_ms": segment.start_ms,
        "end_ms": segment.end_ms,
        "speaker": segment.speaker,
        "speaker_identity": segment.speaker_identity,
        "speaker_label": segment.speaker_label,
        "language": segment.language,
        "text": segment.text,
    }


JSON_SUFFIX = "]}\n"


def json_prefix(header: ExportHeader) -> str:
    session: dict[str, str] = {
        "slug": header.slug,
        "title": header.title,
        "space_id": header.space_id,
    }
    if header.transcript_version is not None:
        session["transcript_version"] = header.transcript_version
    return '{"session": ' + json.dumps(session, ensure_ascii=False) + ', "segments": ['


def render_json_items(segments: Iterable[ExportSegment], *, first: bool = True) -> Iterator[str]:
    """The segments of a JSON export; ``first=False`` continues after earlier items."""
    for n, segment in enumerate(segments):
        yield ("," if n or not first else "") + json.dumps(
            segment_dict(segment), ensure_ascii=False
        )


def render_json(header: ExportHeader, segments: Iterable[ExportSegment]) -> Iterator[str]:
    """One JSON document ``{"session": {...}, "segments": [...]}``, yielded piecewise."""
    yield json_prefix(header)
    yield from render_json_items(segments)
    yield JSON_SUFFIX


class RenderCancelled(Exception):
    """The caller asked a render to stop (its client went away)."""


# how often render_docx asks whether to stop (python-docx costs ~1-3 ms a paragraph)
_CANCEL_CHECK_EVERY = 200


def render_docx(
    header: ExportHeader,
    segments: Iterable[ExportSegment],
    *,
    cancelled: Callable[[], bool] | None = None,
) -> bytes:
    """A Word document: title, then one paragraph per segment with time and bold speaker.

    CPU-bound (python-docx: 10k segments took 29 s on the 2-core build machine at load 12):
    run it off the event loop, on bounded input. ``cancelled`` is polled every few hundred
    segments; when it returns True the render stops with :class:`RenderCancelled`."""
    import docx  # python-docx; imported here so text exports never pay for it

    document = docx.Document()
    title = _one_line(header.title) or _one_line(header.slug) or "Transcript"
    document.core_properties.title = title
    document.add_heading(title, level=1)
    for n, segment in enumerate(segments):
        if cancelled is not None and n % _CANCEL_CHECK_EVERY == 0 and cancelled():
            raise RenderCancelled("render cancelled")
        start, _ = _times(segment)
        paragraph = document.add_paragraph()
        paragraph.add_run(f"[{_clock(start, '.')[:8]}] ")
        paragraph.add_run(f"{_label(segment)}: ").bold = True
        paragraph.add_run(_one_line(segment.text))
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def encode_chunks(chunks: Iterable[str], *, min_chars: int = 64 * 1024) -> Iterator[bytes]:
    """UTF-8 bytes in blocks of at least ``min_chars`` characters (fewer writes when streaming)."""
    pending: list[str] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= min_chars:
            yield "".join(pending).encode("utf-8")
            pending, size = [], 0
    if pending:
        yield "".join(pending).encode("utf-8")
