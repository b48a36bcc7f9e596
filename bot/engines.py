"""The worker's speech engines: the default model's, and those sessions choose (``ASR_MODELS``).

A session may name another installed Whisper model; its engine (model, scheduler, executor
thread) is loaded the first time a track needs it, off the event loop, and kept for the
worker's life. A name outside the allow-list, or a model that fails to load, falls back to the
default engine (logged and counted as a warning), so a track is never left without captions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from bot.pipeline.engine import SpeechEngine
from core.errors import ModelUnavailableError

logger = logging.getLogger("bot.worker")

__all__ = ["SpeechEngines"]


class SpeechEngines:
    def __init__(
        self,
        default: SpeechEngine,
        *,
        allowed: Iterable[str] = (),
        load: Callable[[str], SpeechEngine] | None = None,
    ) -> None:
        self.default = default
        self._engines: dict[str, SpeechEngine] = {default.recognizer.model_name: default}
        self._allowed = frozenset(allowed)
        self._load = load
        self._loading = asyncio.Lock()

    @property
    def loaded(self) -> list[SpeechEngine]:
        return list(self._engines.values())

    async def get(self, model: str | None) -> SpeechEngine:
        """The engine of ``model`` (None: the default), loading it on first use."""
        if model is None or model == self.default.recognizer.model_name:
            return self.default
        engine = self._engines.get(model)
        if engine is not None:
            return engine
        if model not in self._allowed or self._load is None:
            logger.warning("model not allowed on this worker; default used", extra={"model": model})
            return self.default
        async with self._loading:
            engine = self._engines.get(model)
            if engine is None:
                try:
                    engine = await asyncio.to_thread(self._load, model)
                except ModelUnavailableError:
                    logger.exception("model failed to load; default used", extra={"model": model})
                    return self.default
                self._engines[model] = engine
        return engine

    async def aclose(self) -> None:
        for engine in self._engines.values():
            await engine.aclose()
