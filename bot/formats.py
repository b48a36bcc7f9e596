"""Final captions of one file as documents: SRT, WebVTT and text (the API's renderers, without
speaker labels: a file has one unnamed speaker), and JSON with word timings and confidence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

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


def to_json(captions: Sequence[Caption], *, model: str) -> str:
    segments = []
    for c in _finals(captions):
        d = asdict(c)
        d.pop("stable_text")
        segments.append(d)
    return json.dumps({"model": model, "segments": segments}, ensure_ascii=False, indent=2) + "\n"


def render(captions: Sequence[Caption], fmt: str, *, model: str) -> str:
    if fmt == "srt":
        return "".join(render_srt(_segments(captions), labels=False))
    if fmt == "vtt":
        return "".join(render_vtt(_segments(captions), labels=False))
    if fmt == "txt":
        return "".join(render_txt(_segments(captions), labels=False))
    if fmt == "json":
        return to_json(captions, model=model)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
