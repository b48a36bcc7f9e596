"""Process start-up: resolve the database (``DATABASE_URL`` or embedded), migrate, connect.

::

    async with open_database(DatabaseSettings()) as db:   # the API's and the bot's __main__
        app = make_app(db.store, db.sessionmaker)
        ...

Leaving the block disposes of the engine and stops the embedded server (the last user stops it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store.embedded import EmbeddedPostgres
from store.engine import create_engine, create_sessionmaker, redact_url
from store.migrate import upgrade
from store.settings import DatabaseSettings
from store.stores import Store

__all__ = ["Database", "ResolvedDatabase", "open_database", "resolve_database_url"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResolvedDatabase:
    """A database URL and, when it is the embedded server, the handle that stops it."""

    url: str
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        if self.embedded is not None:
            await self.embedded.astop()


async def resolve_database_url(settings: DatabaseSettings) -> ResolvedDatabase:
    """``DATABASE_URL`` when set, else start (or attach to) the embedded server."""
    if settings.database_url:
        return ResolvedDatabase(settings.database_url)
    embedded = EmbeddedPostgres(settings.embedded_pg_dir, system_user=settings.embedded_pg_user)
    url = await embedded.astart()
    _log.info("using embedded postgres", extra={"data_dir": str(embedded.data_dir)})
    return ResolvedDatabase(url, embedded)


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    store: Store


@asynccontextmanager
async def open_database(
    settings: DatabaseSettings,
    *,
    migrate: bool = True,
    application_name: str = "transcriber",
    statement_timeout_ms: int = 0,
) -> AsyncIterator[Database]:
    """Resolve, migrate (``alembic upgrade head``) and connect; clean up on exit.
    ``statement_timeout_ms`` > 0 bounds every statement of the engine's connections (the
    migrations lift it for their own transaction)."""
    resolved = await resolve_database_url(settings)
    try:
        engine = create_engine(
            resolved.url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            echo=settings.db_echo,
            application_name=application_name,
            statement_timeout_ms=statement_timeout_ms,
        )
        try:
            if migrate:
                await upgrade(engine)
            _log.info("database ready", extra={"url": redact_url(resolved.url)})
            sessionmaker = create_sessionmaker(engine)
            yield Database(resolved.url, engine, sessionmaker, Store(sessionmaker))
        finally:
            await engine.dispose()
    finally:
        await resolved.close()
