"""The app without a database: error bodies, routing, OpenAPI parity, metrics, docs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from api.app import create_app, operations
from api.openapi import build_document
from api.settings import ApiSettings

SETTINGS = ApiSettings(
    api_jwt_secret="jwt-secret-for-tests-0123456789abcdef",  # type: ignore[arg-type]
    api_admin_key="admin-key",  # type: ignore[arg-type]
    api_max_body_bytes=2048,
    livekit_api_key="devkey",
    livekit_api_secret="devsecret-devsecret-devsecret-0123",  # type: ignore[arg-type]
)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    # nothing listens on port 1: the database is unreachable, which /ready must report
    engine = create_async_engine("postgresql+asyncpg://x@127.0.0.1:1/none")
    app = create_app(SETTINGS, async_sessionmaker(engine))
    async with TestClient(TestServer(app)) as c:
        yield c
    await engine.dispose()


async def _error(response: ClientResponse) -> tuple[int, str]:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return response.status, body["error"]["code"]


async def test_health(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_is_503_json_when_database_is_down(
    client: TestClient[web.Request, web.Application],
) -> None:
    assert await _error(await client.get("/ready")) == (503, "unavailable")


async def test_unknown_path_and_method_are_json(
    client: TestClient[web.Request, web.Application],
) -> None:
    assert await _error(await client.get("/nope")) == (404, "not_found")
    response = await client.delete("/health")
    assert await _error(response) == (405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


async def test_openapi_document_matches_routes(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    routed = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert documented == routed


async def test_docs_page_is_self_contained_html(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/api/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert "/api/openapi.json" in page and "<script" not in page and "://" not in page


async def test_metrics_count_requests_by_route_template(
    client: TestClient[web.Request, web.Application],
) -> None:
    await client.get("/health")
    await client.get("/no/such/path")
    text = await (await client.get("/metrics")).text()
    assert 'transcriber_http_requests_total{method="GET",route="/health",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "transcriber_http_request_duration_seconds_bucket" in text


def test_every_reference_in_the_document_resolves() -> None:
    document = build_document(operations(), title="t", version="1")
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]


def test_query_enums_are_inlined_with_the_field_description() -> None:
    document = build_document(operations(), title="t", version="1")
    params = {p["name"]: p for p in document["paths"]["/api/sessions"]["get"]["parameters"]}
    assert params["status"]["schema"]["enum"] == ["CREATED", "LIVE", "ENDED", "EXPIRED"]
    assert params["status"]["description"] == "Only sessions in this status"
    assert "required" not in params["cursor"]["schema"] and not params["cursor"]["required"]
