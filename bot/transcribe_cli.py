"""``transcriber transcribe FILE``: a file through the same streaming engine as a live call.

Without ``--realtime`` the file is fed as fast as the engine takes it (partials are skipped,
a progress bar is drawn on a terminal). With ``--realtime`` it is paced like a live call and
the live captions (partials updating in place, then finals) are shown on stderr. The final
document goes to stdout or ``-o``. Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Protocol, TextIO

from pydantic import ValidationError

from bot.formats import FORMATS, render
from bot.pipeline.audio import file_duration_s, iter_file_audio, read_file_audio
from bot.pipeline.diarize import (
    AttributedCaption,
    OfflineDiarizer,
    SpeakerTurn,
    attribute_captions,
)
from bot.pipeline.types import SAMPLE_RATE_HZ, Caption
from bot.pipeline.vad import Float32Array
from core.errors import DiarizationError, TranscriberError
from core.logs import error_fields

FEED_SAMPLES = SAMPLE_RATE_HZ // 50  # 20 ms, like a live frame


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="transcriber transcribe",
        description="Transcribe an audio file with the same streaming engine as a live call.",
    )
    p.add_argument("file", type=Path, help="audio file (WAV, FLAC, MP3, OGG, M4A, WebM...)")
    p.add_argument("-f", "--format", choices=FORMATS, default="txt", help="output format (txt)")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--realtime", action="store_true", help="pace like a live call, show partials")
    p.add_argument("--model", help="ASR model (default: ASR_MODEL or 'base')")
    p.add_argument("--language", help="language code or 'auto' (default: ASR_LANGUAGE or auto)")
    p.add_argument(
        "--diarize",
        action="store_true",
        help="label speakers (Speaker 1, 2, ...) with pyannote; needs the 'diarization' extra",
    )
    return p


class _LiveView:
    """Live captions on a stream: a partial rewrites its line, a final fixes it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._open = False

    def show(self, caption: Caption) -> None:
        stamp = f"[{caption.start_ms / 1000:7.2f}s]"
        if caption.is_final:
            if caption.text:
                line = f"{stamp} {caption.text}"
                self._write(line, final=True)
            elif self._open and self._tty:
                self._out.write("\r\x1b[2K")
                self._open = False
        else:
            self._write(f"{stamp} … {caption.text}", final=False)

    def _write(self, line: str, *, final: bool) -> None:
        if self._tty:
            self._out.write("\r\x1b[2K" + line + ("\n" if final else ""))
            self._open = not final
        else:
            self._out.write(line + "\n")
        self._out.flush()


class _Progress:
    def __init__(self, out: TextIO, total_s: float | None) -> None:
        self._out, self._total = out, total_s
        self._enabled = out.isatty() and bool(total_s)
        self._last = 0.0

    def update(self, done_s: float, *, force: bool = False) -> None:
        if not self._enabled or self._total is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        frac = min(1.0, done_s / self._total)
        bar = "#" * int(frac * 30)
        self._out.write(f"\r[{bar:<30}] {frac * 100:5.1f}%  {done_s:7.1f}/{self._total:.1f} s")
        self._out.flush()

    def close(self) -> None:
        if self._enabled:
            self._out.write("\n")


async def _transcribe(args: argparse.Namespace) -> list[Caption]:
    from bot.config import EngineSettings, build_engine

    overrides: dict[str, str] = {}
    if args.model:
        overrides["asr_model"] = args.model
    if args.language:
        overrides["asr_language"] = args.language
    settings = EngineSettings(**overrides)  # type: ignore[arg-type]
    # Validate the input before loading a model: a bad file must fail fast.
    chunks = iter_file_audio(args.file)
    first = next(chunks)
    engine = build_engine(settings, emit_partials=args.realtime)
    stream = engine.open_stream("file")
    finals: list[Caption] = []
    live = _LiveView(sys.stderr) if args.realtime else None
    progress = _Progress(sys.stderr, None if args.realtime else file_duration_s(args.file))

    async def consume() -> None:
        async for caption in stream.captions():
            if live is not None:
                live.show(caption)
            if caption.is_final:
                finals.append(caption)

    async def feed() -> None:
        started = time.monotonic()
        fed = 0
        for chunk in itertools.chain([first], chunks):
            for i in range(0, len(chunk), FEED_SAMPLES):
                piece = chunk[i : i + FEED_SAMPLES]
                await stream.push_audio(piece)
                fed += len(piece)
                if args.realtime:
                    delay = started + fed / SAMPLE_RATE_HZ - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    progress.update(fed / SAMPLE_RATE_HZ)
                    await asyncio.sleep(0)  # let decode results flow while reading
        await stream.end_input()
        progress.update(fed / SAMPLE_RATE_HZ, force=True)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(feed(), name="feed")
            tg.create_task(consume(), name="consume")
    finally:
        progress.close()
        await stream.aclose()
        await engine.aclose()
    return finals


class _Diarizer(Protocol):
    def diarize(self, samples: Float32Array) -> list[SpeakerTurn]: ...


def _diarize(
    path: Path, captions: list[Caption], diarizer: _Diarizer | None = None
) -> list[AttributedCaption]:
    """Whole-file diarization after recognition: each final gets the speaker of its words.
    A failing diarizer costs the labels, never the transcript: one warning (no text), and the
    captions are labelled "Speaker"."""
    finals = [c for c in captions if c.is_final and c.text.strip()]
    try:
        turns = (diarizer or OfflineDiarizer()).diarize(read_file_audio(path))
    except DiarizationError as exc:
        logging.getLogger("bot.transcribe").warning(
            "diarization failed; speakers are not labelled", extra=error_fields(exc)
        )
        turns = []
    return attribute_captions(finals, turns)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = _parser().parse_args(argv)
        if args.diarize:
            # fail before recognition when the extra is missing (no torch import here)
            from bot.pipeline.diarize import EXTRA_HINT, diarization_available

            if not diarization_available():
                print(f"transcriber transcribe: {EXTRA_HINT}", file=sys.stderr)
                return 2
        captions = asyncio.run(_transcribe(args))
        speakers = _diarize(args.file, captions) if args.diarize else None
        from bot.config import EngineSettings

        model = args.model or EngineSettings().asr_model
        document = render(captions, args.format, model=model, speakers=speakers)
        if args.output:
            args.output.write_text(document, encoding="utf-8")
        else:
            sys.stdout.write(document)
    except _UsageError as exc:
        print(f"transcriber transcribe: {exc}", file=sys.stderr)
        return 2
    except TranscriberError as exc:
        print(f"transcriber transcribe: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        print(
            f"transcriber transcribe: invalid setting {first['loc']}: {first['msg']}",
            file=sys.stderr,
        )
        return 2
    except StopIteration:
        print(f"transcriber transcribe: {args.file}: contains no audio samples", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"transcriber transcribe: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
