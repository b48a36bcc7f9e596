"""The worker's price gauge: what dashboards multiply active tracks by for spend per hour."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import REGISTRY, generate_latest

from bot import metrics
from tests.unit.bot.fakes import engine


def test_publish_price_exports_the_configured_cost_per_minute() -> None:
    metrics.publish_price(Decimal("0.025"), "EUR")
    assert REGISTRY.get_sample_value("transcriber_cost_per_minute", {"currency": "EUR"}) == 0.025
    assert b'transcriber_cost_per_minute{currency="EUR"} 0.025' in generate_latest()


def test_worker_readiness_is_exported() -> None:
    from bot.config import BotSettings
    from bot.worker import Worker

    worker = Worker(BotSettings(), None, None, None, "")  # type: ignore[arg-type]
    assert REGISTRY.get_sample_value("transcriber_worker_ready") == 0
    worker.ready = True
    assert REGISTRY.get_sample_value("transcriber_worker_ready") == 1
    worker.ready = False
    assert not worker.ready
    assert REGISTRY.get_sample_value("transcriber_worker_ready") == 0


async def test_bot_ready_endpoint_follows_the_worker() -> None:
    from types import SimpleNamespace

    from aiohttp.test_utils import TestClient, TestServer

    from bot.__main__ import health_app

    worker = SimpleNamespace(ready=False)
    async with TestClient(TestServer(health_app(worker))) as client:
        assert (await client.get("/health")).status == 200
        assert (await client.get("/ready")).status == 503
        worker.ready = True
        assert (await client.get("/ready")).status == 200
        assert b"transcriber_worker_ready" in await (await client.get("/metrics")).read()


async def test_bot_metrics_behind_the_metrics_token_when_set() -> None:
    from types import SimpleNamespace

    from aiohttp.test_utils import TestClient, TestServer

    from bot.__main__ import health_app

    token = "metrics-token-for-tests-0123456789abcdef"
    async with TestClient(TestServer(health_app(SimpleNamespace(ready=True), token))) as client:
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer no"})).status == 401
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200
        assert (await client.get("/health")).status == 200  # probes stay open


def test_active_tracks_sum_every_room_of_the_worker() -> None:
    """One worker holds several rooms: the gauge is their sum, and a room that ends leaves it."""
    from bot.config import BotSettings
    from bot.worker import Worker, _RoomHandle

    worker = Worker(BotSettings(), None, engine(), None, "")  # type: ignore[arg-type]
    worker.rooms = {1: _RoomHandle(None, live_tracks=2), 2: _RoomHandle(None, live_tracks=3)}  # type: ignore[arg-type]
    worker._export_tracks()
    assert REGISTRY.get_sample_value("transcriber_active_tracks") == 5
    worker.rooms.pop(1)
    worker._export_tracks()
    assert REGISTRY.get_sample_value("transcriber_active_tracks") == 3


def test_speaking_streams_are_exported_with_the_tracks() -> None:
    """``transcriber_speaking_streams`` is the engine's count, exported with the active tracks."""
    from bot.config import BotSettings
    from bot.worker import Worker

    eng = engine()
    worker = Worker(BotSettings(), None, eng, None, "")  # type: ignore[arg-type]
    worker._export_tracks()
    assert REGISTRY.get_sample_value("transcriber_speaking_streams") == 0
    eng._set_speaking("a:1", True)
    eng._set_speaking("b:1", True)
    worker._export_tracks()
    assert REGISTRY.get_sample_value("transcriber_speaking_streams") == 2
    eng._set_speaking("a:1", False)
    worker._export_tracks()
    assert REGISTRY.get_sample_value("transcriber_speaking_streams") == 1
