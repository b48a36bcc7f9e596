"""Fixtures: the API as a real process, reached by a LiveKit server's own webhooks.

The API listens on the root side of the veth pair, so a server inside the namespace (ours or the
official one) can deliver its signed webhooks to it; the SDK participants join the server from
the root namespace, as in the bot's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from lkserver import LiveKitServer, free_port
from store.engine import create_engine, create_sessionmaker
from store.stores import Store
from tests.integration.conftest import database_url, db_server  # noqa: F401 - fixtures
from tests.support.db import truncate_all
from tests.support.livekit import API_KEY, API_SECRET, SERVER_KINDS, start_server
from tests.support.netns import VethNamespace, unavailable_reason, veth_namespace

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[3]
ADMIN_KEY = "e2e-admin-key-0123456789abcdefghij"
JWT_SECRET = "e2e-jwt-secret-0123456789abcdefghijkl"


class ApiProcess:
    """``python -m api`` bound to ``host``, with its log in a file."""

    def __init__(self, host: str, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port(host)
        self.base = f"http://{host}:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api", "--no-migrate"],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                **env,
                "API_HOST": host,
                "API_PORT": str(self.port),
                "API_ADMIN_KEY": ADMIN_KEY,
                "API_JWT_SECRET": JWT_SECRET,
                "LIVEKIT_API_KEY": API_KEY,
                "LIVEKIT_API_SECRET": API_SECRET,
                "PYTHONPATH": str(REPO_ROOT),
                "PYTHONUNBUFFERED": "1",
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"api exited: {self.log()[-3000:]}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.base}/ready", timeout=2) as reply,
            ):
                if reply.status == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"api not ready: {self.log()[-3000:]}")

    async def call(
        self, method: str, path: str, *, user: str = "host", body: object = None
    ) -> object:
        headers = {"X-Api-Key": ADMIN_KEY, "X-Space-Id": "space-1", "X-User-Id": user}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base + path, json=body, headers=headers) as reply,
        ):
            payload = await reply.json()
            assert reply.status < 400, (method, path, reply.status, payload)
            return payload

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def api_netns() -> Iterator[VethNamespace]:
    if (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    with veth_namespace("lka") as namespace:
        yield namespace


@pytest.fixture(scope="module", params=SERVER_KINDS)
def api_and_livekit(
    request: pytest.FixtureRequest,
    api_netns: VethNamespace,
    database_url: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ApiProcess, LiveKitServer]]:
    """The API, and a LiveKit server whose webhooks go to it (ours, then the official one)."""
    logs = tmp_path_factory.mktemp(f"api-{request.param}")
    api = ApiProcess(api_netns.host_address, {"DATABASE_URL": database_url}, logs / "api.log")
    try:
        api.wait_ready()
        server = start_server(
            request.param,
            api_netns,
            webhook_urls=[f"{api.base}/webhooks/livekit"],
            departure_timeout_s=1,
        )
        try:
            yield api, server
        finally:
            server.cleanup()
    finally:
        api.stop()


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[Store]:  # noqa: F811
    engine = create_engine(database_url, pool_size=2, max_overflow=2)
    await truncate_all(engine)
    try:
        yield Store(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def poll(check: object, timeout_s: float = 30.0) -> None:
    """Await ``check()`` (an async callable returning bool) until it is true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.3)
