"""Storage settings, read from the environment.

* :class:`DatabaseSettings`: which server, pool, echo. The API and the bot build it themselves
  (``DatabaseSettings()`` reads the environment); every storage function takes explicit
  arguments, so nothing here is global.
* :class:`UsageSettings`: the price of a billed minute and the transcription limits, the one
  definition of these variables. ``ApiSettings`` and ``BotSettings`` inherit them (each process
  reads its settings once), and :meth:`UsageSettings.transcription_limits` is the one place
  that turns them into the :class:`~store.records.TranscriptionLimits` the stores take.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.embedded import DEFAULT_SYSTEM_USER
from store.money import DEFAULT_CURRENCY
from store.records import TranscriptionLimits

__all__ = ["DEFAULT_EMBEDDED_PG_DIR", "DatabaseSettings", "UsageSettings"]

DEFAULT_EMBEDDED_PG_DIR = Path(".data/postgres")


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # postgresql://, postgres:// or postgresql+asyncpg:// URL; unset = embedded PostgreSQL
    database_url: str | None = None
    # data folder of the embedded server (relative paths resolve against the working directory)
    embedded_pg_dir: Path = DEFAULT_EMBEDDED_PG_DIR
    # system user that runs the embedded server when this process is root (created if missing)
    embedded_pg_user: str = DEFAULT_SYSTEM_USER
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_echo: bool = False


class UsageSettings(BaseSettings):
    """Usage, cost and limits, shared by the API (checks before a start, quota reports) and the
    bot (prices each track, checks limits when it opens one)."""

    model_config = SettingsConfigDict(extra="ignore")

    # price of a billed minute (billed_minutes = ceil(seconds / 60) per track), recorded by the
    # bot on each track's usage row, in this currency
    transcription_cost_per_minute: Decimal = Field(default=Decimal("0.01"), ge=0)
    transcription_currency: str = DEFAULT_CURRENCY
    # limits checked when transcription starts; 0 means no limit
    max_tracks_per_session: int = Field(default=16, ge=0)
    max_tracks_per_user: int = Field(default=32, ge=0)
    space_monthly_minutes_quota: int = Field(default=0, ge=0)

    def transcription_limits(self) -> TranscriptionLimits:
        """The limits as the stores take them (0 = none)."""
        return TranscriptionLimits(
            max_tracks_per_session=self.max_tracks_per_session or None,
            max_tracks_per_user=self.max_tracks_per_user or None,
            monthly_minutes_quota=self.space_monthly_minutes_quota or None,
        )
