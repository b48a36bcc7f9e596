"""Settings of the speech engine, read once from the environment (see .env.example)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from bot.pipeline.asr import AsrOptions
from bot.pipeline.engine import SpeechEngine, StreamOptions
from bot.pipeline.track_diarization import DiarizationOptions
from bot.pipeline.vad import SegmenterOptions, SileroVad
from core.speech import ModelChoiceSettings
from store.settings import UsageSettings

if TYPE_CHECKING:
    from bot.engines import SpeechEngines


class EngineSettings(ModelChoiceSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    asr_model: str = "base"
    asr_device: str = "cpu"
    asr_compute_type: str = "int8"
    asr_cpu_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    asr_language: str = "auto"
    asr_beam_size: int = Field(default=1, ge=1, le=10)
    asr_encoder_window: Literal["trimmed", "full"] = "trimmed"
    asr_initial_prompt: str | None = None
    asr_hotwords: str | None = None
    asr_condition_on_previous: bool = False
    asr_no_speech_threshold: float = Field(default=0.6, ge=0, le=1)
    asr_log_prob_threshold: float = -1.0
    asr_reject_log_prob: float = -1.5
    asr_compression_ratio_threshold: float = Field(default=2.4, gt=0)
    asr_allow_download: bool = False
    asr_max_batch: int = Field(default=4, ge=1, le=32)
    asr_max_partial_batch: int = Field(default=1, ge=1, le=32)
    asr_decode_workers: int = Field(default=1, ge=1, le=16)
    asr_max_pending_finals: int = Field(default=32, ge=1)
    model_cache_dir: Path | None = None

    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    vad_pre_roll_ms: int = Field(default=300, ge=0, le=2000)
    vad_min_silence_ms: int = Field(default=400, ge=32, le=5000)
    vad_min_speech_ms: int = Field(default=250, ge=0, le=5000)
    vad_max_utterance_s: float = Field(default=15.0, ge=2, le=29)
    vad_short_utterance_s: float = Field(default=3.0, ge=0, le=29)
    vad_short_min_silence_ms: int = Field(default=1500, ge=32, le=5000)

    partial_interval_ms: int = Field(default=600, ge=100, le=5000)
    partial_min_audio_ms: int = Field(default=800, ge=100, le=5000)
    speculative_finals: bool = True
    early_final_ms: int = Field(default=0, ge=0, le=5000)
    phrase_finals: bool = True
    phrase_min_pause_ms: int = Field(default=192, ge=32, le=5000)
    # None: the short-utterance length (VAD_SHORT_UTTERANCE_S), at least 1 s.
    phrase_min_ms: int | None = Field(default=None, ge=0, le=29000)
    phrase_context_ms: int = Field(default=400, ge=0, le=5000)
    phrase_word_cuts: bool = True
    phrase_cut_max_prob: float = Field(default=0.2, gt=0, le=1)
    phrase_cut_tolerance: int = Field(default=0, ge=0, le=10)
    phrase_prompt: bool = False

    # Live speaker diarization of tracks with diarization on/auto (the ``diarization`` extra):
    # audio cut into blocks for the worker's one diarization thread; a track's blocks beyond
    # the backlog are skipped (counted); a final caption waits this long for its speaker.
    diarization_block_ms: int = Field(default=2000, ge=500, le=10_000)
    diarization_max_backlog_blocks: int = Field(default=4, ge=1, le=64)
    diarization_max_wait_ms: int = Field(default=2500, ge=0, le=30_000)
    # ``auto``: in-track labels show once two voices have each spoken this many seconds
    diarization_auto_min_speech_s: float = Field(default=3.0, ge=0, le=600)
    diarization_threads: int = Field(default=1, ge=1, le=64)
    # load the diarization models when the worker starts (else: when a diarized track starts)
    diarization_preload: bool = False

    @field_validator("asr_language")
    @classmethod
    def _language(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and not (2 <= len(value) <= 3 and value.isalpha()):
            raise ValueError("ASR_LANGUAGE must be 'auto' or a language code such as 'en', 'ru'")
        return value

    def asr_options(self) -> AsrOptions:
        return AsrOptions(
            device=self.asr_device,
            compute_type=self.asr_compute_type,
            cpu_threads=self.asr_cpu_threads,
            decode_workers=self.asr_decode_workers,
            language=None if self.asr_language == "auto" else self.asr_language,
            beam_size=self.asr_beam_size,
            encoder_window=self.asr_encoder_window,
            no_speech_threshold=self.asr_no_speech_threshold,
            log_prob_threshold=self.asr_log_prob_threshold,
            reject_log_prob=self.asr_reject_log_prob,
            compression_ratio_threshold=self.asr_compression_ratio_threshold,
            initial_prompt=self.asr_initial_prompt,
            hotwords=self.asr_hotwords,
        )

    def diarization_options(self) -> DiarizationOptions:
        return DiarizationOptions(
            block_ms=self.diarization_block_ms,
            max_backlog_blocks=self.diarization_max_backlog_blocks,
            max_wait_ms=self.diarization_max_wait_ms,
            auto_min_speech_s=self.diarization_auto_min_speech_s,
            threads=self.diarization_threads,
        )

    @field_validator("phrase_min_ms", mode="before")
    @classmethod
    def _phrase_min_unset(cls, value: object) -> object:
        return None if value == "" else value

    def effective_phrase_min_ms(self) -> int:
        """How much of an utterance a phrase final must cover: by default as much as the
        short-utterance rule asks, so no phrase that rule would keep with its neighbour is
        committed (and decoded) alone."""
        if self.phrase_min_ms is not None:
            return self.phrase_min_ms
        return max(1000, round(self.vad_short_utterance_s * 1000))

    def stream_options(self, *, emit_partials: bool = True) -> StreamOptions:
        return StreamOptions(
            segmenter=SegmenterOptions(
                threshold=self.vad_threshold,
                pre_roll_ms=self.vad_pre_roll_ms,
                min_silence_ms=self.vad_min_silence_ms,
                min_speech_ms=self.vad_min_speech_ms,
                max_utterance_s=self.vad_max_utterance_s,
                short_utterance_s=self.vad_short_utterance_s,
                short_min_silence_ms=self.vad_short_min_silence_ms,
            ),
            emit_partials=emit_partials,
            partial_interval_ms=self.partial_interval_ms,
            min_partial_audio_ms=self.partial_min_audio_ms,
            speculative_finals=self.speculative_finals,
            early_final_ms=self.early_final_ms,
            phrase_finals=self.phrase_finals,
            phrase_min_pause_ms=self.phrase_min_pause_ms,
            phrase_min_ms=self.effective_phrase_min_ms(),
            phrase_context_ms=self.phrase_context_ms,
            phrase_word_cuts=self.phrase_word_cuts,
            phrase_cut_max_prob=self.phrase_cut_max_prob,
            phrase_cut_tolerance=self.phrase_cut_tolerance,
            phrase_prompt=self.phrase_prompt,
            condition_on_previous=self.asr_condition_on_previous,
        )


class BotSettings(EngineSettings, UsageSettings):
    """Settings of the worker process (``transcriber bot``): the engine's, the price and limits
    shared with the API (:class:`store.settings.UsageSettings`), plus these.

    The database is configured by ``store.settings.DatabaseSettings`` (``DATABASE_URL``, or the
    embedded server when it is unset), shared with the API.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    livekit_url: str = "ws://127.0.0.1:7880"
    # LiveKit's development pair: refused at start unless TRANSCRIBER_DEV_MODE is on
    livekit_api_key: str = "devkey"
    livekit_api_secret: str = "secret"
    transcriber_dev_mode: bool = False
    # bearer token the worker's GET /metrics requires; unset: open
    metrics_token: SecretStr | None = None
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    bot_identity: str = "transcriber"
    bot_name: str = "Transcriber"
    max_rooms: int = Field(default=4, ge=1, le=256)
    room_max_tracks: int = Field(default=16, ge=1, le=256)
    room_empty_timeout_s: float = Field(default=20.0, ge=0)
    room_first_join_timeout_s: float = Field(default=300.0, ge=0)
    audio_frame_ms: int = Field(default=100, ge=10, le=500)
    job_lease_s: float = Field(default=30.0, ge=3)
    job_poll_s: float = Field(default=5.0, gt=0)
    usage_checkpoint_s: float = Field(default=5.0, gt=0)
    livekit_connect_attempts: int = Field(default=5, ge=1)
    spool_dir: Path = Path(".data/spool")
    bot_http_host: str = "0.0.0.0"
    bot_http_port: int = Field(default=8081, ge=0, le=65535)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    log_format: Literal["json", "text"] = "text"
    # Debugging: write each track's received audio and frame timing here (bot/pipeline/dump.py).
    audio_dump_dir: Path | None = None
    # After-meeting diarization (bot/final_diarization.py): the audio of tracks whose
    # diarization is not off is kept here (0700 folders, 0600 files) until the pass is done
    # (or the space's recording_days); fsync-ed every RECORDING_FSYNC_S.
    final_diarization: bool = True
    recordings_dir: Path = Path(".data/recordings")
    recording_fsync_s: float = Field(default=2.0, gt=0)
    final_diarization_poll_s: float = Field(default=60.0, gt=0)
    # a pass claimed longer ago than this is taken as dead (its worker died) and redone
    final_diarization_stale_s: float = Field(default=3600.0, gt=0)

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def secrets(self) -> dict[str, str | None]:
        """The secrets this process holds, by variable name (None: unset)."""
        token = self.metrics_token
        return {
            "LIVEKIT_API_SECRET": self.livekit_api_secret,
            "METRICS_TOKEN": token.get_secret_value() if token else None,
        }

    @field_validator("livekit_url")
    @classmethod
    def _livekit_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError("LIVEKIT_URL must start with ws://, wss://, http:// or https://")
        return value


def build_engine(settings: EngineSettings, *, emit_partials: bool = True) -> SpeechEngine:
    """Load the models named by ``settings`` (offline unless downloads are allowed)."""
    from bot.pipeline.asr import WhisperRecognizer
    from bot.pipeline.models import resolve_model

    model = resolve_model(
        settings.asr_model,
        cache_dir=settings.model_cache_dir,
        allow_download=settings.asr_allow_download,
    )
    recognizer = WhisperRecognizer(model, settings.asr_options())
    return SpeechEngine(
        recognizer,
        SileroVad(),
        stream_options=settings.stream_options(emit_partials=emit_partials),
        max_pending_finals=settings.asr_max_pending_finals,
        max_batch=settings.asr_max_batch,
        max_partial_batch=settings.asr_max_partial_batch,
        decode_workers=settings.asr_decode_workers,
    )


def build_engines(settings: EngineSettings, default: SpeechEngine) -> SpeechEngines:
    """The worker's engines: ``default`` (``ASR_MODEL``) and, loaded on first use, the other
    models of ``ASR_MODELS`` that sessions may choose (each with its own scheduler)."""
    from bot.engines import SpeechEngines

    def load(name: str) -> SpeechEngine:
        return build_engine(settings.model_copy(update={"asr_model": name}))

    return SpeechEngines(default, allowed=settings.allowed_models(), load=load)
