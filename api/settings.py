"""Configuration of the API process, read once from the environment in ``api.__main__``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from store.settings import UsageSettings


class ApiSettings(UsageSettings):
    """Every variable the API reads; names are the environment variable names (upper case).

    Price and limits (``TRANSCRIPTION_COST_PER_MINUTE``, ``MAX_TRACKS_PER_*``,
    ``SPACE_MONTHLY_MINUTES_QUOTA``) come from :class:`store.settings.UsageSettings`, shared
    with the bot.
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    api_host: str = "0.0.0.0"
    api_port: int = Field(default=8080, ge=0, le=65535)
    # log lines: readable text, or one JSON object a line (the bot reads the same variable)
    log_format: Literal["json", "text"] = "text"
    # HS256 secret for user JWTs (claims sub, space, role); unset: user JWTs are refused
    api_jwt_secret: SecretStr | None = None
    # shared key for service-to-service calls (Authorization: Bearer <key> or X-Api-Key); unset: off
    api_admin_key: SecretStr | None = None
    # largest accepted request body, bytes
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # lifetime of LiveKit join tokens issued by GET /api/sessions/{slug}/token
    api_join_token_ttl_minutes: int = Field(default=360, ge=1)

    # postgresql+asyncpg://... ; unset: the embedded PostgreSQL of store
    database_url: str | None = None

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
