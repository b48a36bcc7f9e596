"""The aiohttp application: ``create_app(settings, sessionmaker)``.

The database engine is built by the caller (``api.__main__`` or a test) and passed in as a
sessionmaker; nothing here opens connections at import time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import Authenticator
from api.context import CONTEXT, ApiContext
from api.errors import error_middleware
from api.livekit import LiveKitGateway
from api.metrics import ApiMetrics
from api.openapi import Callback, Operation, build_document
from api.routes import sessions, system, transcripts, usage, webhook_endpoints, webhooks
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
        *usage.OPERATIONS,
        *webhooks.OPERATIONS,
        *webhook_endpoints.OPERATIONS,
        *system.OPERATIONS,
    ]


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
    ctx = ApiContext(
        settings=settings,
        sessionmaker=sessionmaker,
        store=Store(sessionmaker),
        authenticator=Authenticator(
            settings.api_jwt_secret.get_secret_value() if settings.api_jwt_secret else None,
            settings.api_admin_key.get_secret_value() if settings.api_admin_key else None,
        ),
        livekit=LiveKitGateway(
            settings.livekit_url,
            settings.livekit_api_key,
            secret.get_secret_value() if secret else None,
            token_ttl=dt.timedelta(minutes=settings.api_join_token_ttl_minutes),
        ),
        metrics=metrics,
        openapi=build_document(ops, title=TITLE, version=VERSION, callbacks=callbacks()),
    )
    app = web.Application(
        middlewares=[metrics.middleware(), error_middleware],
        client_max_size=settings.api_max_body_bytes,
    )
    app[CONTEXT] = ctx
    for op in ops:
        app.router.add_route(op.method, op.path, op.handler, name=op.operation_id)
    return app
