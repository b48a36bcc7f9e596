"""Final captions of one file as documents: SRT, WebVTT and text (the API's renderers; speaker
labels only when the file was diarized, else a file has one unnamed speaker), and JSON with word
timings, confidence and, when diarized, a ``speaker`` per segment."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from bot.pipeline.diarize import AttributedCaption
from bot.pipeline.types import Caption
from core.transcripts import ExportSegment, render_srt, render_txt, render_vtt

FORMATS = ("json", "srt", "vtt", "txt")


def _finals(captions: Sequence[Caption]) -> list[Caption]:
    return [c for c in captions if c.is_final and c.text.strip()]


def _segments(captions: Sequence[Caption]) -> list[ExportSegment]:
    return [
        ExportSegment(c.start_ms, c.end_ms, "", c.text, language=c.language)
        for c in _finals(captions)
    ]


def _labelled(attributed: Sequence[AttributedCaption]) -> list[ExportSegment]:
    return [
        ExportSegment(
            a.caption.start_ms,
            a.caption.end_ms,
            a.speaker or "Speaker",
            a.caption.text,
            language=a.caption.language,
        )
        for a in attributed
        if a.caption.is_final and a.caption.text.strip()
    ]


def to_json(
    captions: Sequence[Caption],
    *,
    model: str,
    speakers: Sequence[AttributedCaption] | None = None,
) -> str:
    segments = []
    if speakers is None:
        for c in _finals(captions):
            d = asdict(c)
            d.pop("stable_text")
            segments.append(d)
    else:
        for a in speakers:
            if not (a.caption.is_final and a.caption.text.strip()):
                continue
            d = {"speaker": a.speaker or "Speaker", **asdict(a.caption)}
            d.pop("stable_text")
            segments.append(d)
    return json.dumps({"model": model, "segments": segments}, ensure_ascii=False, indent=2) + "\n"


def render(
    captions: Sequence[Caption],
    fmt: str,
    *,
    model: str,
    speakers: Sequence[AttributedCaption] | None = None,
) -> str:
    """One document; with ``speakers`` (a diarized file) every cue and line carries its label."""
    labels = speakers is not None
    segments = _segments(captions) if speakers is None else _labelled(speakers)
    if fmt == "srt":
        return "".join(render_srt(segments, labels=labels))
    if fmt == "vtt":
        return "".join(render_vtt(segments, labels=labels))
    if fmt == "txt":
        return "".join(render_txt(segments, labels=labels))
    if fmt == "json":
        return to_json(captions, model=model, speakers=speakers)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
