"""Storage settings, read from the environment.

The API and the bot may build :class:`DatabaseSettings` themselves (``DatabaseSettings()`` reads
the environment) or construct it from their own settings object; every storage function takes
explicit arguments, so nothing here is global.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.db.embedded import DEFAULT_SYSTEM_USER

__all__ = ["DEFAULT_EMBEDDED_PG_DIR", "DatabaseSettings"]

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
