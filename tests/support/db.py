"""Test databases on real PostgreSQL.

The server is ``DATABASE_URL``'s when set, else an embedded one under ``EMBEDDED_PG_DIR`` (default
``.data/postgres-test``, kept apart from the demo's data and run without fsync). Each test session
creates its own database, named ``transcriber_test_<UTC time>_<pid>_<random>``, so concurrent
runs by different people never collide; it is migrated with the real Alembic chain and dropped at
the end. Databases of this naming older than a day are dropped when a later run starts (runs that
were killed before their cleanup).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from store.embedded import EmbeddedPostgres
from store.engine import asyncpg_dsn, normalize_database_url

__all__ = [
    "TABLES",
    "TestServer",
    "create_database",
    "database_url_for",
    "drop_database",
    "drop_stale_databases",
    "start_test_server",
    "truncate_all",
    "unique_database_name",
]

_log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DB_PREFIX = "transcriber_test_"
_NAME_RE = re.compile(rf"^{TEST_DB_PREFIX}(\d{{8}}T\d{{6}})_\d+_[0-9a-f]+$")
STALE_AFTER = timedelta(days=1)
# every application table; alembic_version is left alone
TABLES = (
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "segments",
    "track_usage",
    "participants",
    "transcription_jobs",
    "space_quotas",
    "space_settings",
    "space_retention",
    "sessions",
    "webhook_events",
)


@dataclass
class TestServer:
    """Where test databases are created: ``admin_url`` points at a maintenance database."""

    __test__ = False  # not a pytest test class

    admin_url: str
    embedded: EmbeddedPostgres | None = None

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def start_test_server() -> TestServer:
    url = os.environ.get("DATABASE_URL")
    if url:
        return TestServer(normalize_database_url(url).render_as_string(hide_password=False))
    root = Path(os.environ.get("EMBEDDED_PG_DIR") or REPO_ROOT / ".data" / "postgres-test")
    embedded = EmbeddedPostgres(root, durable=False)
    embedded.start()
    return TestServer(embedded.url("postgres"), embedded)


def unique_database_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{TEST_DB_PREFIX}{stamp}_{os.getpid()}_{secrets.token_hex(3)}"


def database_url_for(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def create_database(admin_url: str, name: str) -> str:
    """Create an empty database; return its URL."""
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url_for(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def drop_stale_databases(admin_url: str, *, older_than: timedelta = STALE_AFTER) -> None:
    """Drop test databases left by killed runs (by the time in their name); skip busy ones."""
    cutoff = datetime.now(UTC) - older_than
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", TEST_DB_PREFIX + "%"
        )
        for record in names:
            match = _NAME_RE.match(record["datname"])
            if match is None:
                continue
            created = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            if created < cutoff:
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{record["datname"]}"')
                except asyncpg.PostgresError:
                    _log.warning("could not drop a stale test database")
    finally:
        await conn.close()


async def truncate_all(engine: AsyncEngine) -> None:
    """Empty every application table (and restart identities): each test starts clean, and code
    under test may commit as it does in production."""
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
