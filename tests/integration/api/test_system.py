"""Health, readiness, metrics, body limits, the sweeper and the ``python -m api`` process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from api.metrics import ApiMetrics
from api.sweeper import run_sweeper, sweep_once
from core.errors import StorageUnavailable
from store.enums import JobStatus, SessionStatus
from store.stores import Store
from tests.integration.api.conftest import Client, api_settings
from tests.integration.api.support import ADMIN_KEY, JWT_SECRET, user

REPO_ROOT = Path(__file__).resolve().parents[3]


async def test_health_and_ready(client: Client) -> None:
    assert await (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status == 200 and await ready.json() == {"status": "ready"}


async def test_body_over_the_limit_is_413(client: Client) -> None:
    response = await client.post("/api/sessions", json={"title": "x" * 5000}, headers=user("alice"))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_over_long_fields_are_422(client: Client) -> None:
    for body in ({"title": "x" * 501}, {"language": "english-please"}, {"title": 5}):
        response = await client.post("/api/sessions", json=body, headers=user("alice"))
        assert response.status == 422, body


async def test_metrics_after_traffic(client: Client) -> None:
    await client.get("/api/sessions", headers=user("alice"))
    await client.get("/api/sessions")
    text = await (await client.get("/metrics")).text()
    assert (
        'transcriber_http_requests_total{method="GET",route="/api/sessions",status="200"} 1.0'
        in text
    )
    assert 'route="/api/sessions",status="401"' in text
    assert "transcriber_http_request_duration_seconds_count" in text


async def test_sweeper_ends_inactive_and_expires_unstarted(repo: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    idle = await repo.sessions.create_session(space_id="s", created_by="u")
    await repo.sessions.participant_joined(idle.id, "u", now=now - dt.timedelta(minutes=45))
    await repo.jobs.request_transcription(idle.id)
    busy = await repo.sessions.create_session(space_id="s", created_by="u")
    await repo.sessions.participant_joined(busy.id, "u", now=now)
    stale = await repo.sessions.create_session(
        space_id="s", created_by="u", now=now - dt.timedelta(hours=25)
    )
    fresh = await repo.sessions.create_session(space_id="s", created_by="u")
    settings = api_settings(session_inactive_minutes=30, session_expire_hours=24)
    metrics = ApiMetrics()
    result = await sweep_once(repo, settings, metrics=metrics)
    assert (result.ended, result.expired) == ([idle.slug], [stale.slug])
    statuses = {
        s.slug: s.status
        for s in await repo.sessions.list_sessions(space_id="s", include_expired=True)
    }
    assert statuses == {
        idle.slug: SessionStatus.ENDED,
        busy.slug: SessionStatus.LIVE,
        stale.slug: SessionStatus.EXPIRED,
        fresh.slug: SessionStatus.CREATED,
    }
    job = await repo.jobs.get_job(idle.id)
    assert job is not None and job.status is JobStatus.STOPPED
    assert metrics.sweeps.labels("ended")._value.get() == 1
    assert (await sweep_once(repo, settings)).ended == []


async def test_sweeper_exports_jobs_by_status_and_keeps_them_when_the_database_fails(
    repo: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = [await repo.sessions.create_session(space_id="s", created_by="u") for _ in range(3)]
    for s in sessions:
        await repo.jobs.request_transcription(s.id)
    assert await repo.jobs.claim_job("w1") is not None
    metrics = ApiMetrics()
    settings = api_settings(session_sweep_interval_seconds=0.02)

    def jobs(status: str) -> float | None:
        return metrics.registry.get_sample_value("transcriber_jobs", {"status": status})

    async def settled(requested: float, running: float) -> None:
        for _ in range(250):
            if (jobs("REQUESTED"), jobs("RUNNING")) == (requested, running):
                return
            await asyncio.sleep(0.02)
        raise AssertionError((jobs("REQUESTED"), jobs("RUNNING")))

    sweeper = asyncio.create_task(run_sweeper(repo, settings, metrics))
    try:
        await settled(2, 1)
        assert 'transcriber_jobs{status="REQUESTED"} 2.0' in metrics.render().text
        await repo.jobs.stop_transcription(sessions[0].id)  # the oldest: the one w1 holds
        await settled(2, 0)

        async def unreachable() -> dict[JobStatus, int]:
            raise StorageUnavailable("down")

        before = (jobs("REQUESTED"), jobs("RUNNING"))
        monkeypatch.setattr(repo.jobs, "count_active", unreachable)
        for s in sessions[1:]:
            await repo.jobs.stop_transcription(s.id)
        await asyncio.sleep(0.2)  # several sweep intervals
        assert (jobs("REQUESTED"), jobs("RUNNING")) == before, "the last figures stay"
        assert not sweeper.done(), "a failing database does not stop the sweeper"
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_python_m_api_serves_and_stops_on_sigterm(database_url: str) -> None:
    port = _free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_JWT_SECRET": JWT_SECRET,
        "API_ADMIN_KEY": ADMIN_KEY,
        "LOG_FORMAT": "json",  # readable text by default; JSON lines for log shippers
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the API did not become ready")
            async with http.get(
                f"http://127.0.0.1:{port}/api/sessions", headers=user("alice")
            ) as response:
                assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert '"message": "api listening"' in log and JWT_SECRET not in log
        # one JSON line per request, by route template (no raw paths, queries or tokens)
        assert '"message": "request", "method": "GET", "route": "/api/sessions"' in log
        assert "Bearer" not in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_python_m_api_refuses_to_start_without_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("API_JWT_SECRET", "API_ADMIN_KEY")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 2 and b"API_JWT_SECRET" in err
