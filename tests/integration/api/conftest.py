"""The API on a real socket over a real, migrated PostgreSQL (fixtures of tests/integration)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.settings import ApiSettings
from tests.integration.api.support import ADMIN_KEY, JWT_SECRET, LIVEKIT_KEY, LIVEKIT_SECRET

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "api_jwt_secret": JWT_SECRET,
        "api_admin_key": ADMIN_KEY,
        "livekit_url": "ws://livekit.test:7880",
        "livekit_api_key": LIVEKIT_KEY,
        "livekit_api_secret": LIVEKIT_SECRET,
        "api_max_body_bytes": 4096,
        "max_tracks_per_session": 0,
        "max_tracks_per_user": 0,
        "space_monthly_minutes_quota": 0,
    }
    values.update(overrides)
    return ApiSettings.model_validate(values)


@pytest.fixture
async def make_client(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[MakeClient]:
    """Start the app (settings overridable per test) on 127.0.0.1 and an ephemeral port."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> Client:
            app = create_app(api_settings(**overrides), sessionmaker)
            return await stack.enter_async_context(TestClient(TestServer(app)))

        yield make


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()
