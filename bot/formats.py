"""Final captions as documents: JSON, SRT, WebVTT and plain text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from bot.pipeline.types import Caption

FORMATS = ("json", "srt", "vtt", "txt")


def _clock(ms: int, sep: str) -> str:
    ms = max(0, ms)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


def _finals(captions: Sequence[Caption]) -> list[Caption]:
    return [c for c in captions if c.is_final and c.text.strip()]


def to_srt(captions: Sequence[Caption]) -> str:
    blocks = []
    for i, c in enumerate(_finals(captions), start=1):
        blocks.append(
            f"{i}\n{_clock(c.start_ms, ',')} --> {_clock(c.end_ms, ',')}\n{c.text.strip()}\n"
        )
    return "\n".join(blocks)


def to_vtt(captions: Sequence[Caption]) -> str:
    blocks = ["WEBVTT\n"]
    for c in _finals(captions):
        blocks.append(f"{_clock(c.start_ms, '.')} --> {_clock(c.end_ms, '.')}\n{c.text.strip()}\n")
    return "\n".join(blocks)


def to_txt(captions: Sequence[Caption]) -> str:
    return "".join(f"[{_clock(c.start_ms, '.')}] {c.text.strip()}\n" for c in _finals(captions))


def to_json(captions: Sequence[Caption], *, model: str) -> str:
    segments = []
    for c in _finals(captions):
        d = asdict(c)
        d.pop("stable_text")
        segments.append(d)
    return json.dumps({"model": model, "segments": segments}, ensure_ascii=False, indent=2) + "\n"


def render(captions: Sequence[Caption], fmt: str, *, model: str) -> str:
    if fmt == "srt":
        return to_srt(captions)
    if fmt == "vtt":
        return to_vtt(captions)
    if fmt == "txt":
        return to_txt(captions)
    if fmt == "json":
        return to_json(captions, model=model)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
