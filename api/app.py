"""The aiohttp application: ``create_app(settings, sessionmaker)``.

The database engine is built by the caller (``api.__main__`` or a test) and passed in as a
sessionmaker; nothing here opens connections at import time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import SERVICE_USER, Authenticator, ReservedIdentities
from api.context import CONTEXT, ApiContext
from api.errors import error_middleware
from api.livekit import LiveKitGateway
from api.metrics import ApiMetrics
from api.openapi import Callback, Operation, build_document
from api.ratelimit import RateLimiter, RateLimits
from api.routes import (
    retention,
    search,
    sessions,
    system,
    transcripts,
    usage,
    webhook_endpoints,
    webhooks,
)
from api.schemas import (
    SessionEndedEvent,
    SessionLiveEvent,
    TranscriptReadyEvent,
    UsageUpdatedEvent,
)
from api.settings import ApiSettings
from api.webhooks import ATTEMPT_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER
from store.stores import Store

TITLE = "livekit-transcriber API"
VERSION = "0.1.0"


def operations() -> Sequence[Operation]:
    """Every route of the API, in documentation order."""
    return [
        *sessions.OPERATIONS,
        *transcripts.OPERATIONS,
        *search.OPERATIONS,
        *usage.OPERATIONS,
        *retention.OPERATIONS,
        *webhooks.OPERATIONS,
        *webhook_endpoints.OPERATIONS,
        *system.OPERATIONS,
    ]


async def _stop_renders(app: web.Application) -> None:
    # queued renders are dropped; a running one is capped (API_EXPORT_DOCX_MAX_SEGMENTS) and
    # stops at its next cancellation check once its client is gone
    app[CONTEXT].render_executor.shutdown(wait=False, cancel_futures=True)


def rate_limits(settings: ApiSettings) -> RateLimits:
    """The per-caller limits of the settings (a rate of 0 leaves that kind unlimited)."""
    limiters = {}
    if settings.api_rate_search_per_minute:
        limiters["search"] = RateLimiter(
            settings.api_rate_search_per_minute, settings.api_rate_search_burst
        )
    if settings.api_rate_export_per_minute:
        limiters["export"] = RateLimiter(
            settings.api_rate_export_per_minute, settings.api_rate_export_burst
        )
    return RateLimits(limiters)


_HEADERS = (
    (EVENT_ID_HEADER, "The event id: the same on every attempt; dedupe on it"),
    (EVENT_TYPE_HEADER, "The event type"),
    (ATTEMPT_HEADER, "1 on the first attempt"),
    (
        SIGNATURE_HEADER,
        "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<raw body>' with the endpoint's secret>; "
        "a second v1= during a secret rotation's grace period",
    ),
)


def callbacks() -> Sequence[Callback]:
    """The outbound webhooks (api.webhooks), documented under the document's ``webhooks``."""
    return [
        Callback("session.live", "The first participant joined", SessionLiveEvent, _HEADERS),
        Callback("session.ended", "The session ended", SessionEndedEvent, _HEADERS),
        Callback(
            "transcript.ready",
            "The session ended and every final segment is stored",
            TranscriptReadyEvent,
            _HEADERS,
        ),
        Callback(
            "usage.updated", "The session's final usage and cost", UsageUpdatedEvent, _HEADERS
        ),
    ]


def create_app(
    settings: ApiSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> web.Application:
    ops = operations()
    metrics = ApiMetrics()
    secret = settings.livekit_api_secret
    reserved = ReservedIdentities([SERVICE_USER, settings.bot_identity])
    ctx = ApiContext(
        settings=settings,
        sessionmaker=sessionmaker,
        store=Store(sessionmaker),
        authenticator=Authenticator(
            settings.api_jwt_secret.get_secret_value() if settings.api_jwt_secret else None,
            settings.api_admin_key.get_secret_value() if settings.api_admin_key else None,
            reserved=reserved,
            jwt_max_ttl=dt.timedelta(minutes=settings.api_jwt_max_ttl_minutes),
        ),
        livekit=LiveKitGateway(
            settings.livekit_url,
            settings.livekit_api_key,
            secret.get_secret_value() if secret else None,
            token_ttl=dt.timedelta(minutes=settings.api_join_token_ttl_minutes),
            reserved=reserved,
        ),
        metrics=metrics,
        openapi=build_document(ops, title=TITLE, version=VERSION, callbacks=callbacks()),
        rate_limits=rate_limits(settings),
        render_executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-render"),
    )
    app = web.Application(
        middlewares=[metrics.middleware(), error_middleware],
        client_max_size=settings.api_max_body_bytes,
    )
    app[CONTEXT] = ctx
    app.on_cleanup.append(_stop_renders)
    for op in ops:
        app.router.add_route(op.method, op.path, op.handler, name=op.operation_id)
    return app
