"""Process and documentation endpoints: health, readiness, metrics, OpenAPI, docs page."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import text

from api.context import context
from api.errors import ServiceUnavailable, Unauthorized
from api.openapi import Operation, Reply, document_json, render_docs
from core.credentials import bearer_matches

logger = logging.getLogger("api")

READY_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: str


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    maker = context(request).sessionmaker
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), maker() as db:
            await db.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready"
        logger.warning("readiness check failed", extra={"error": type(exc).__name__})
        raise ServiceUnavailable("database is not reachable") from exc
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics; with ``METRICS_TOKEN`` set, only for ``Bearer <METRICS_TOKEN>``."""
    ctx = context(request)
    token = ctx.settings.metrics_token
    if token is not None and not bearer_matches(
        request.headers.get("Authorization"), token.get_secret_value()
    ):
        raise Unauthorized("metrics need the metrics bearer token")
    return ctx.metrics.render()


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        body=document_json(context(request).openapi), content_type="application/json"
    )


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=render_docs(context(request).openapi), content_type="text/html")


OPERATIONS = [
    Operation(
        "GET", "/health", health, "health", "Process is up", "system",
        replies=(Reply(200, "The process is serving requests", Health),), security="none",
    ),
    Operation(
        "GET", "/ready", ready, "ready", "Database is reachable", "system",
        replies=(Reply(200, "Ready to serve", Health),), security="none", errors=(503,),
    ),
    Operation(
        "GET", "/metrics", metrics, "metrics", "Prometheus metrics", "system",
        replies=(Reply(200, "Prometheus text format", media={"text/plain": {"type": "string"}}),),
        security="none", errors=(401,),
        description="Open unless METRICS_TOKEN is set; then Authorization: Bearer <METRICS_TOKEN>.",
    ),
    Operation(
        "GET", "/api/openapi.json", openapi_json, "openapi", "This OpenAPI document", "system",
        replies=(Reply(200, "OpenAPI 3.1 document", media={"application/json": {}}),),
        security="none",
    ),
    Operation(
        "GET", "/api/docs", docs, "docs", "Human-readable API reference", "system",
        replies=(Reply(200, "HTML page", media={"text/html": {"type": "string"}}),),
        security="none",
    ),
]  # fmt: skip
