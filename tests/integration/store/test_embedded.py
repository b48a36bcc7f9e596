"""The embedded PostgreSQL (the fresh-machine default), started in a temporary folder."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from core.errors import EmbeddedPostgresError
from store.database import open_database
from store.embedded import EmbeddedPostgres
from store.engine import asyncpg_dsn
from store.settings import DatabaseSettings


@pytest.fixture
def pg_root() -> Iterator[Path]:
    # not pytest's tmp_path: its parents are 0700, and as root the server runs as another user
    base = Path(tempfile.mkdtemp(prefix="transcriber-embedded-"))
    base.chmod(0o711)
    try:
        yield base / "pg"
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_start_attach_stop_restart(pg_root: Path) -> None:
    first = EmbeddedPostgres(pg_root, durable=False)
    url = await first.astart()
    second = EmbeddedPostgres(pg_root, durable=False)
    try:
        assert await second.astart() == url  # attaches to the running server
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            assert await conn.fetchval("SELECT current_database()") == "transcriber"
            assert (await conn.fetchval("SHOW server_version")).startswith("18")
            # builtin C.UTF-8 collation: Cyrillic case folding without OS locales
            assert await conn.fetchval("SELECT lower('ЁЛКА Straße')") == "ёлка straße"
            assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        finally:
            await conn.close()

        # password authentication: the URL's password is required
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host="127.0.0.1", port=first.port, user="postgres", password="wrong"
            )
        secret = pg_root / "password"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        if os.geteuid() == 0:  # PostgreSQL runs as an unprivileged user
            assert (pg_root / "data").stat().st_uid != 0

        await first.astop()
        assert second._running_port() is not None  # still used by `second`
    finally:
        await second.astop()
    assert not (pg_root / "data" / "postmaster.pid").exists()

    # a restart reuses the data folder (and its password), on a fresh port
    again = EmbeddedPostgres(pg_root, durable=False)
    url2 = await again.astart()
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url2))
        await conn.close()
    finally:
        await again.astop()


async def test_open_database_without_database_url(pg_root: Path) -> None:
    """No DATABASE_URL: embedded server, migrations applied, store usable, then stopped."""
    settings = DatabaseSettings(database_url=None, embedded_pg_dir=pg_root)
    async with open_database(settings) as db:
        session = await db.store.sessions.create_session(space_id="s", created_by="u", title="x")
        assert (await db.store.sessions.get_session(session.slug)) == session
    assert not (pg_root / "data" / "postmaster.pid").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_root_refuses_a_folder_the_server_user_cannot_enter() -> None:
    base = Path(tempfile.mkdtemp(prefix="transcriber-embedded-"))  # mode 0700
    try:
        with pytest.raises(EmbeddedPostgresError, match="cannot enter"):
            EmbeddedPostgres(base / "pg").start()
    finally:
        shutil.rmtree(base, ignore_errors=True)
