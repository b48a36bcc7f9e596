"""The HTTP server of ``python -m api`` (api.server) on a real socket: header-read timeout and
connection cap, probed with raw sockets."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.server import GuardedSite, make_runner
from core.logs import JsonFormatter, TextFormatter
from tests.integration.api.conftest import api_settings

# generous bound for "the server closed it" (the timeout under test is 0.3 s): a hang fails
CLOSE_WAIT_S = 30


@pytest.fixture
async def serve(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> tuple[int, web.AppRunner]:
        settings = api_settings(**overrides)
        runner = make_runner(create_app(settings, sessionmaker), settings)
        await runner.setup()
        runners.append(runner)
        site = GuardedSite(runner, "127.0.0.1", 0, max_connections=settings.api_max_connections)
        await site.start()
        assert site.bound_port is not None
        return site.bound_port, runner

    yield start
    for runner in runners:
        await runner.cleanup()


async def _until(check: Callable[[], bool]) -> None:
    """Poll the server's state (a failure, not a hang, when it never holds)."""
    async with asyncio.timeout(CLOSE_WAIT_S):
        for _ in itertools.count():
            if check():
                return
            await asyncio.sleep(0.01)


async def _request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), CLOSE_WAIT_S)
    writer.close()
    return data


async def test_a_partial_header_is_cut_after_the_header_timeout(serve: Any) -> None:
    port, _ = await serve(api_header_timeout_seconds=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")  # never finished
    await writer.drain()
    # the server closes without answering: EOF, not a hang
    assert await asyncio.wait_for(reader.read(), CLOSE_WAIT_S) == b""
    writer.close()
    # a silent connection too
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), CLOSE_WAIT_S) == b""
    writer.close()
    # complete requests are served
    assert (await _request(port)).startswith(b"HTTP/1.1 200")


async def test_keep_alive_then_a_trickled_header_is_cut(serve: Any) -> None:
    port, _ = await serve(api_header_timeout_seconds=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WAIT_S)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(b"GET /health HT")  # the next request never completes
    assert await asyncio.wait_for(reader.read(), CLOSE_WAIT_S) == b""
    writer.close()


async def test_connections_past_the_cap_get_503_and_are_closed(serve: Any) -> None:
    port, runner = await serve(api_max_connections=2, api_header_timeout_seconds=60)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    await _until(lambda: len(runner.server.connections) == 2)  # the server accepted both
    data = await _request(port)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in head
    assert json.loads(body)["error"]["code"] == "too_many_connections"
    for _, writer in held:
        writer.close()
        await writer.wait_closed()
    await _until(lambda: not runner.server.connections)  # the server noticed the closes
    assert (await _request(port)).startswith(b"HTTP/1.1 200")


async def test_a_malformed_request_gets_the_json_error_and_no_request_data_in_logs(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = await serve()
    secret = "findme-secret-search-text"
    line = f"GET /api/sessions?q={secret}&pad={'x' * 9000} HTTP/1.1\r\nHost: t\r\n\r\n"
    with caplog.at_level(logging.DEBUG):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(line.encode())
        data = await asyncio.wait_for(reader.read(), CLOSE_WAIT_S)
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400" and b"application/json" in head
    assert json.loads(body)["error"]["code"] == "bad_request"
    logged = "\n".join(
        JsonFormatter().format(r) + TextFormatter().format(r) for r in caplog.records
    )
    assert "Error handling request" in logged and "LineTooLong" in logged
    assert secret not in logged and "xxxxxxxx" not in logged
