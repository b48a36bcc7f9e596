"""Alembic migrations, from code and from ``transcriber migrate``.

The API and the bot call :func:`upgrade` at startup (inside their event loop: Alembic runs on the
given engine's connection through ``run_sync``); ``transcriber migrate`` is ``alembic upgrade
head`` without needing ``alembic.ini`` (the script folder is found next to this package), and
``alembic upgrade head`` from the repository root works too. Concurrent upgrades (an API and a bot
starting together) serialise on a PostgreSQL advisory lock taken in ``migrations/env.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from store.engine import create_engine, redact_url

__all__ = [
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_ID",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "main",
    "upgrade",
    "upgrade_url",
]

_log = logging.getLogger(__name__)
# migrations run on the API's engine too, whose connections may carry a statement_timeout
_NO_STATEMENT_TIMEOUT = text("SET LOCAL statement_timeout = 0")

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
# pg_advisory_xact_lock key held while migrating ("transcr" in ASCII)
MIGRATION_LOCK_ID = 0x7472616E73637200


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config that needs no ini file; ``database_url`` goes to env.py unparsed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if database_url is not None:
        cfg.attributes["database_url"] = database_url
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migration chain is empty")
    return head


# Alembic keeps its migration context in module globals, so two migrations must not interleave
# in one process (their greenlets would); across processes the advisory lock in env.py serialises.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def _exclusive() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    lock = _LOCKS.setdefault(loop, asyncio.Lock())
    async with lock:
        yield


def _on_connection(connection: Connection, action: Callable[[Config], None]) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    action(cfg)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on ``engine``, in one transaction."""
    _log.info("applying migrations", extra={"revision": revision})
    async with _exclusive(), engine.begin() as conn:
        await conn.execute(_NO_STATEMENT_TIMEOUT)
        await conn.run_sync(_on_connection, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """``alembic downgrade <revision>`` on ``engine`` (``"base"`` drops everything)."""
    _log.info("reverting migrations", extra={"revision": revision})
    async with _exclusive(), engine.begin() as conn:
        await conn.execute(_NO_STATEMENT_TIMEOUT)
        await conn.run_sync(_on_connection, lambda cfg: command.downgrade(cfg, revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it is empty."""

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade_url(database_url: str, revision: str = "head") -> None:
    """Open a short-lived engine on ``database_url`` and upgrade it."""
    engine = create_engine(database_url, pool=False, application_name="transcriber-migrate")
    try:
        await upgrade(engine, revision)
    finally:
        await engine.dispose()


async def _cli(args: argparse.Namespace) -> None:
    engine = create_engine(args.database_url, pool=False, application_name="transcriber-migrate")
    try:
        if args.current:
            print(await current_revision(engine) or "(empty)")
        elif args.downgrade is not None:
            await downgrade(engine, args.downgrade)
        else:
            await upgrade(engine, args.revision)
            print(f"database at {await current_revision(engine)}")
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    """``transcriber migrate [--revision REV | --downgrade REV | --current] [--database-url URL]``.

    Without ``--database-url`` or ``DATABASE_URL`` the embedded server (``EMBEDDED_PG_DIR``)
    starts for the duration of the command.
    """
    parser = argparse.ArgumentParser(
        prog="transcriber migrate", description="Apply database migrations (alembic upgrade head)."
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--revision", default="head", help="upgrade target (default: head)")
    group.add_argument("--downgrade", metavar="REV", help="revert to REV ('base' = empty)")
    group.add_argument("--current", action="store_true", help="print the current revision")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

    # imported here: plain `transcriber migrate --help` must not need the settings machinery
    from store.embedded import EmbeddedPostgres
    from store.settings import DatabaseSettings

    embedded: EmbeddedPostgres | None = None
    try:
        if args.database_url is None:
            settings = DatabaseSettings()
            embedded = EmbeddedPostgres(
                settings.embedded_pg_dir, system_user=settings.embedded_pg_user
            )
            args.database_url = embedded.start()
        _log.info("migrating database", extra={"url": redact_url(args.database_url)})
        asyncio.run(_cli(args))
    except Exception as exc:
        print(f"transcriber migrate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
