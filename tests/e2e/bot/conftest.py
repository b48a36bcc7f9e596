"""Fixtures: a LiveKit server (ours, then the official one) in a network namespace, a migrated
database, worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from lkserver import LiveKitServer
from store.engine import create_engine, create_sessionmaker
from store.stores import Store
from tests.e2e.bot.helpers import WorkerProcess
from tests.integration.conftest import database_url, db_server  # noqa: F401 - fixtures
from tests.support.db import truncate_all
from tests.support.livekit import API_KEY, API_SECRET, SERVER_KINDS, start_server
from tests.support.netns import VethNamespace, unavailable_reason, veth_namespace

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def bot_netns() -> Iterator[VethNamespace]:
    if (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    with veth_namespace("lkb") as namespace:
        yield namespace


@pytest.fixture(scope="session", params=SERVER_KINDS)
def livekit(request: pytest.FixtureRequest, bot_netns: VethNamespace) -> Iterator[LiveKitServer]:
    """Every bot test runs against our dev server and against the official LiveKit server."""
    server = start_server(request.param, bot_netns, departure_timeout_s=2)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[Store]:  # noqa: F811
    engine = create_engine(database_url, pool_size=5, max_overflow=10)
    await truncate_all(engine)
    try:
        yield Store(create_sessionmaker(engine))
    finally:
        await engine.dispose()


def worker_env_for(livekit_url: str, database_url: str, tmp_path: Path) -> dict[str, str]:  # noqa: F811
    """A worker's settings for the tests: tiny.en, short leases and timeouts."""
    return {
        "DATABASE_URL": database_url,
        "LIVEKIT_URL": livekit_url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "ASR_MODEL": "tiny.en",
        "JOB_POLL_S": "1",
        "JOB_LEASE_S": "6",
        "ROOM_EMPTY_TIMEOUT_S": "3",
        # the bot joins before the test's clients: browsers on a loaded machine take seconds
        "ROOM_FIRST_JOIN_TIMEOUT_S": "60",
        "USAGE_CHECKPOINT_S": "1",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "MODEL_CACHE_DIR": str(tmp_path / "models"),
        # what each track received (kept with the test's tmp_path when a test fails)
        "AUDIO_DUMP_DIR": str(tmp_path / "audio"),
    }


@pytest.fixture
def worker_env(livekit: LiveKitServer, database_url: str, tmp_path: Path) -> dict[str, str]:  # noqa: F811
    return worker_env_for(livekit.url, database_url, tmp_path)


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(worker_id: str = "w1", **overrides: str) -> WorkerProcess:
        worker = WorkerProcess(worker_id, {**worker_env, **overrides}, tmp_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
