"""Foreign exceptions become storage errors at the store's edge (store.base)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import StorageUnavailable
from store.engine import create_engine, create_sessionmaker, normalize_database_url, redact_url
from store.notify import JobListener
from store.stores import Store


async def test_unreachable_database_is_retryable() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/nothing", pool=False)
    try:
        repo = Store(create_sessionmaker(engine))
        with pytest.raises(StorageUnavailable) as err:
            await repo.sessions.get_session("x")
        assert err.value.retryable
    finally:
        await engine.dispose()


async def test_listener_reports_a_lost_connection(database_url: str, db: AsyncSession) -> None:
    async with JobListener(database_url) as listener:
        await db.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            )
        )
        with pytest.raises(StorageUnavailable):
            await listener.wait(timeout_s=10)
        with pytest.raises(StorageUnavailable):  # and stays failed
            await listener.wait(timeout_s=0.1)


async def test_listener_on_unreachable_server() -> None:
    with pytest.raises(StorageUnavailable):
        async with JobListener("postgresql://postgres@127.0.0.1:1/nothing"):
            pass


def test_urls_are_normalised_and_redacted() -> None:
    assert normalize_database_url("postgres://u:p@h/db").drivername == "postgresql+asyncpg"
    assert normalize_database_url("postgresql+psycopg://u@h/db").drivername == (
        "postgresql+asyncpg"
    )
    assert "secret" not in redact_url("postgresql://u:secret@h:5432/db")
    with pytest.raises(ValueError):
        normalize_database_url("mysql://u@h/db")
