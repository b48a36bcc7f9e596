"""The engine's settings reach the objects they configure."""

from __future__ import annotations

from bot.config import EngineSettings


def test_latency_and_capacity_settings_reach_the_stream_and_the_recognizer() -> None:
    settings = EngineSettings(
        early_final_ms=96, partial_min_audio_ms=500, asr_decode_workers=2, asr_cpu_threads=2
    )
    options = settings.stream_options()
    assert (options.early_final_ms, options.min_partial_audio_ms) == (96, 500)
    assert settings.asr_options().decode_workers == 2


def test_by_default_finals_wait_for_the_certain_end_and_one_decode_runs_at_a_time() -> None:
    settings = EngineSettings()
    assert settings.stream_options().early_final_ms == 0
    assert (settings.asr_decode_workers, settings.asr_max_partial_batch) == (1, 1)
