"""Real models, loaded once per test session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.config import EngineSettings
from bot.pipeline.asr import WhisperRecognizer
from bot.pipeline.audio import read_file_audio
from bot.pipeline.engine import SpeechEngine
from bot.pipeline.models import resolve_model
from bot.pipeline.types import Caption
from bot.pipeline.vad import SileroVad


@pytest.fixture(scope="session")
def vad() -> SileroVad:
    return SileroVad()


def _recognizer(name: str, tmp: Path) -> WhisperRecognizer:
    settings = EngineSettings(asr_model=name, model_cache_dir=tmp)
    return WhisperRecognizer(resolve_model(name, cache_dir=tmp), settings.asr_options())


@pytest.fixture(scope="session")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> WhisperRecognizer:
    return _recognizer("tiny.en", tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhisperRecognizer]:
    yield _recognizer("base", tmp_path_factory.mktemp("models"))


def load(eval_dir: Path, item: str) -> tuple[np.ndarray, str]:
    audio = read_file_audio(eval_dir / f"{item}.wav")
    reference = (eval_dir / f"{item}.txt").read_text(encoding="utf-8")
    return audio, reference


def stream_captions(
    recognizer: WhisperRecognizer,
    vad: SileroVad,
    audio: np.ndarray,
    *,
    partials: bool = False,
    settings: EngineSettings | None = None,
    realtime: bool = False,
) -> list[Caption]:
    """Run audio through a fresh engine (fed in 20 ms frames, as fast as it goes unless
    ``realtime``)."""

    async def run(settings: EngineSettings) -> list[Caption]:
        engine = SpeechEngine(
            recognizer, vad, stream_options=settings.stream_options(emit_partials=partials)
        )
        stream = engine.open_stream("test")
        out: list[Caption] = []

        async def consume() -> None:
            async for c in stream.captions():
                out.append(c)

        task = asyncio.create_task(consume())
        for i in range(0, len(audio), 320):
            await stream.push_audio(audio[i : i + 320])
            if realtime:
                await asyncio.sleep(0.02)
            elif partials:
                await asyncio.sleep(0.001)
        await stream.end_input()
        await asyncio.wait_for(task, 300)
        await engine.aclose()
        return out

    return asyncio.run(run(settings or EngineSettings()))


def final_text(captions: list[Caption]) -> str:
    return " ".join(c.text for c in captions if c.is_final and c.text)


def stored_text(captions: list[Caption]) -> str:
    """The finals as the store keeps them: the last final of each utterance id wins."""
    last = {c.utterance_id: c for c in captions if c.is_final}
    return " ".join(c.text for c in last.values() if c.text)
