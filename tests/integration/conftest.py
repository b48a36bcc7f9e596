"""Database fixtures for integration tests (tests/integration/store and tests/integration/api).

* ``database_url`` (session): a fresh database of this run, migrated to head, dropped at the end;
  on ``DATABASE_URL``'s server when set, else on the embedded server.
* ``engine`` (test): an engine on it; every application table is truncated before the test, so
  code under test may commit like in production.
* ``sessionmaker``, ``db`` (an ``AsyncSession``), ``repo`` (a :class:`Store`).
* ``db_server`` (session) and ``empty_database_url`` (test: a new, unmigrated database).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store.engine import create_engine, create_sessionmaker
from store.migrate import upgrade_url
from store.stores import Store
from tests.support.db import (
    TestServer,
    create_database,
    drop_database,
    drop_stale_databases,
    start_test_server,
    truncate_all,
    unique_database_name,
)


@pytest.fixture(scope="session")
def db_server() -> Iterator[TestServer]:
    server = start_test_server()
    try:
        asyncio.run(drop_stale_databases(server.admin_url))
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def database_url(db_server: TestServer) -> Iterator[str]:
    name = unique_database_name()

    async def _create() -> str:
        url = await create_database(db_server.admin_url, name)
        await upgrade_url(url)
        return url

    url = asyncio.run(_create())
    try:
        yield url
    finally:
        asyncio.run(drop_database(db_server.admin_url, name))


@pytest.fixture
def empty_database_url(db_server: TestServer) -> Iterator[str]:
    name = unique_database_name()
    url = asyncio.run(create_database(db_server.admin_url, name))
    try:
        yield url
    finally:
        asyncio.run(drop_database(db_server.admin_url, name))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5, max_overflow=20)
    await truncate_all(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def repo(sessionmaker: async_sessionmaker[AsyncSession]) -> Store:
    return Store(sessionmaker)
