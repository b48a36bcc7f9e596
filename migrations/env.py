"""Alembic environment: async (asyncpg), or on a connection the caller lends.

``store.migrate`` passes its own connection in ``config.attributes["connection"]`` (so the API
and the bot migrate inside their event loop); the ``alembic`` CLI gets here with no connection and
runs :func:`run_async_migrations` under ``asyncio.run``. The URL comes from
``config.attributes["database_url"]``, else ``sqlalchemy.url``, else ``DATABASE_URL``, else the
embedded server is started for the duration of the command.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from store.engine import create_engine, normalize_database_url
from store.migrate import MIGRATION_LOCK_ID
from store.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configured_url() -> str | None:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return url or os.environ.get("DATABASE_URL") or None


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
    )


def do_run_migrations(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        # one migrator at a time: an API and a bot starting together must not race
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = create_engine(url, pool=False, application_name="transcriber-migrate")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    url = _configured_url() or "postgresql+asyncpg://localhost/transcriber"
    context.configure(
        url=normalize_database_url(url),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    url = _configured_url()
    if url is not None:
        asyncio.run(run_async_migrations(url))
        return
    from store.embedded import EmbeddedPostgres
    from store.settings import DatabaseSettings

    settings = DatabaseSettings()
    with EmbeddedPostgres(settings.embedded_pg_dir, system_user=settings.embedded_pg_user) as pg:
        asyncio.run(run_async_migrations(pg.url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
