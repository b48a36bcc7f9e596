"""Configuration of the API process, read once from the environment in ``api.__main__``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from core.speech import ModelChoiceSettings
from store.settings import UsageSettings


class ApiSettings(UsageSettings, ModelChoiceSettings):
    """Every variable the API reads; names are the environment variable names (upper case).

    Price and limits (``TRANSCRIPTION_COST_PER_MINUTE``, ``MAX_TRACKS_PER_*``,
    ``SPACE_MONTHLY_MINUTES_QUOTA``) come from :class:`store.settings.UsageSettings`, shared
    with the bot; the models a session may choose (``ASR_MODELS``) from
    :class:`core.speech.ModelChoiceSettings`, also shared with the bot.
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    api_host: str = "0.0.0.0"
    api_port: int = Field(default=8080, ge=0, le=65535)
    # log lines: readable text, or one JSON object a line (the bot reads the same variable)
    log_format: Literal["json", "text"] = "text"
    # secrets shorter than 32 bytes or well-known ones are accepted (core.credentials); the bot
    # and the dev server read the same variable
    transcriber_dev_mode: bool = False
    # HS256 secret for user JWTs (claims sub, space, role, exp); unset: user JWTs are refused
    api_jwt_secret: SecretStr | None = None
    # longest accepted user JWT lifetime (exp - iat, or exp - now without iat)
    api_jwt_max_ttl_minutes: int = Field(default=1440, ge=1)
    # shared key for service-to-service calls (Authorization: Bearer <key> or X-Api-Key); unset: off
    api_admin_key: SecretStr | None = None
    # largest accepted request body, bytes
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # lifetime of LiveKit join tokens issued by GET /api/sessions/{slug}/token; clients ask again
    # to (re)join later
    api_join_token_ttl_minutes: int = Field(default=10, ge=1, le=1440)
    # bearer token GET /metrics requires (the bot's /metrics too); unset: /metrics is open
    metrics_token: SecretStr | None = None
    # the bot's participant identity (BOT_IDENTITY, shared with the bot): no user may take it
    bot_identity: str = Field(default="transcriber", min_length=1)
    # a request's header must arrive within this many seconds of the connection opening or of
    # the previous response; idle keep-alive connections close after it too (api/server.py)
    api_header_timeout_seconds: float = Field(default=20.0, gt=0)
    # open connections past this are answered 503 too_many_connections and closed; 0 = no cap
    api_max_connections: int = Field(default=1000, ge=0)
    # per-caller rate limits (token buckets in process; 0 = off): requests a minute and burst of
    # searches (GET .../transcript?q=) and of exports (?format= downloads, usage CSV)
    api_rate_search_per_minute: int = Field(default=120, ge=0)
    api_rate_search_burst: int = Field(default=30, ge=1)
    api_rate_export_per_minute: int = Field(default=12, ge=0)
    api_rate_export_burst: int = Field(default=6, ge=1)

    # a DOCX export is built in memory (python-docx, ~1-3 ms of CPU a segment): transcripts with
    # more segments are refused 422 export_too_large (text formats stream without a limit)
    api_export_docx_max_segments: int = Field(default=5000, ge=1)

    # postgresql+asyncpg://... ; unset: the embedded PostgreSQL of store
    database_url: str | None = None
    # the server cancels any statement of the API's connections that runs longer (the request
    # gets 503 database_timeout); 0 = no limit. Migrations at start-up are exempt
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)

    # LiveKit's own variable names
    livekit_url: str = "ws://127.0.0.1:7880"
    livekit_api_key: str | None = None
    livekit_api_secret: SecretStr | None = None

    # lifecycle sweeper
    session_inactive_minutes: int = Field(default=30, ge=1)
    session_expire_hours: int = Field(default=24, ge=1)
    session_sweep_interval_seconds: float = Field(default=60.0, gt=0)

    # outbound webhooks (the host app's endpoints, see api/webhooks.py)
    # delivery loop: look for due deliveries this often when idle, seconds
    webhook_poll_interval_seconds: float = Field(default=1.0, gt=0)
    # one HTTP attempt's limit (connect + response), seconds; a claim is held twice as long
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # attempts per delivery before it is marked FAILED
    webhook_max_attempts: int = Field(default=10, ge=1)
    # back-off before attempt n+1: base * 2^(n-1), capped, with jitter (half to all of it)
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=21_600.0, gt=0)
    # deliveries one loop claims (and sends concurrently) at a time
    webhook_batch_size: int = Field(default=20, ge=1, le=500)
    # after a secret rotation the old secret still signs (a second v1=) this long
    webhook_secret_grace_hours: float = Field(default=24.0, ge=0)
    # transcript.ready ("complete": false) for an ended session whose bot never reported its
    # finals stored (it died) after this long
    webhook_transcript_ready_timeout_minutes: int = Field(default=30, ge=1)
    # SSRF guard: deliveries to loopback and private (RFC 1918, ULA) addresses are refused
    # unless true (tests, a receiver on the same host or network); link-local (cloud metadata),
    # multicast and unspecified addresses are always refused
    webhook_allow_private_addresses: bool = False

    @field_validator("api_jwt_secret", "api_admin_key", "livekit_api_secret", "metrics_token",
                     mode="before")  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def secrets(self) -> dict[str, str | None]:
        """The secrets this process holds, by variable name (None: unset)."""
        fields = {
            "API_JWT_SECRET": self.api_jwt_secret,
            "API_ADMIN_KEY": self.api_admin_key,
            "LIVEKIT_API_SECRET": self.livekit_api_secret,
            "METRICS_TOKEN": self.metrics_token,
        }
        return {k: v.get_secret_value() if v else None for k, v in fields.items()}
