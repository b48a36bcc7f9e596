"""The Alembic chain: empty -> head -> base -> head, models == migrations, the CLI entry."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import cli
from store import migrate
from store.database import open_database
from store.engine import create_engine
from store.models import Base
from store.settings import DatabaseSettings
from tests.support.db import REPO_ROOT, TABLES


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return {r[0] for r in rows}


async def _constraints(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                " WHERE n.nspname = 'public' AND c.contype IN ('c', 'u', 'f', 'p')"
                " AND conrelid <> 'alembic_version'::regclass"
            )
        )
        return {r[0] for r in rows}


def _diff(connection: Connection) -> list[object]:
    ctx = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(ctx, Base.metadata))


def test_chain_is_linear_and_date_prefixed() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = list(script.walk_revisions())
    assert len(script.get_heads()) == 1
    assert len(revisions) >= 3
    for rev in revisions:
        assert rev.path is not None
        name = rev.path.rsplit("/", 1)[-1]
        assert name[:8].isdigit() and name[8] == "_", name


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url, pool=False)
    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        assert set(TABLES) <= await _tables(engine)

        # the models describe exactly what the migrations built: columns, types, defaults,
        # indexes, unique constraints (autogenerate), and every named constraint
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        expected = {
            str(c.name)
            for table in Base.metadata.tables.values()
            for c in table.constraints
            if c.name is not None
        }
        assert await _constraints(engine) == expected

        # step down one revision at a time to empty, then up again
        script = ScriptDirectory.from_config(migrate.alembic_config())
        for rev in script.walk_revisions():
            await migrate.downgrade(engine, rev.down_revision or "base")  # type: ignore[arg-type]
        assert await migrate.current_revision(engine) is None
        assert await _tables(engine) == {"alembic_version"}

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_sessions_owned_by_service_lose_their_owner(empty_database_url: str) -> None:
    """7d1207000001: a JWT with sub=service owned every session the admin key created."""
    engine = create_engine(empty_database_url, pool=False)
    try:
        await migrate.upgrade(engine, "0f1180beca67")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO sessions (slug, space_id, created_by) VALUES"
                    " ('by-service', 's', 'service'), ('by-alice', 's', 'alice')"
                )
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT slug, created_by FROM sessions ORDER BY slug"))
            assert [tuple(r) for r in rows] == [("by-alice", "alice"), ("by-service", None)]
    finally:
        await engine.dispose()


async def test_concurrent_upgrades_in_one_process(empty_database_url: str) -> None:
    engines = [create_engine(empty_database_url, pool=False) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        assert await migrate.current_revision(engines[0]) == migrate.head_revision()
    finally:
        for e in engines:
            await e.dispose()


def test_concurrent_migrate_processes_serialise(empty_database_url: str) -> None:
    """An API and a bot starting together both migrate; the advisory lock makes one wait."""
    cmd = [sys.executable, "-m", "bot.cli", "migrate", "--database-url", empty_database_url]
    procs = [
        subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert migrate.head_revision() in out.decode()


async def test_open_database_migrates_the_given_url(empty_database_url: str) -> None:
    async with open_database(DatabaseSettings(database_url=empty_database_url)) as db:
        assert await migrate.current_revision(db.engine) == migrate.head_revision()
        created = await db.store.sessions.create_session(space_id="s", created_by="u")
        assert await db.store.sessions.get_session(created.slug) == created


def test_transcriber_migrate_cli(
    empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["migrate", "--database-url", empty_database_url]) == 0
    assert migrate.head_revision() in capsys.readouterr().out
    assert cli.main(["migrate", "--database-url", empty_database_url, "--current"]) == 0
    assert capsys.readouterr().out.strip() == migrate.head_revision()
    assert cli.main(["migrate", "--database-url", empty_database_url, "--downgrade", "base"]) == 0
    assert cli.main(["migrate", "--database-url", empty_database_url, "--current"]) == 0
    assert capsys.readouterr().out.strip() == "(empty)"


def test_transcriber_migrate_reports_unreachable_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing"
    assert cli.main(["migrate", "--database-url", url]) == 1
    assert "transcriber migrate" in capsys.readouterr().err
