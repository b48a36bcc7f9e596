"""The aiohttp application: ``create_app(settings, sessionmaker)``.

The database engine is built by the caller (``api.__main__`` or a test) and passed in as a
sessionmaker; nothing here opens connections at import time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import SERVICE_USER, Authenticator, ReservedIdentities
from api.context import CONTEXT, ApiContext
from api.errors import error_middleware
from api.livekit import LiveKitGateway
from api.metrics import ApiMetrics
from api.openapi import Operation, build_document
from api.routes import retention, search, sessions, system, transcripts, usage, webhooks
from api.settings import ApiSettings
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
        *system.OPERATIONS,
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
        openapi=build_document(ops, title=TITLE, version=VERSION),
    )
    app = web.Application(
        middlewares=[metrics.middleware(), error_middleware],
        client_max_size=settings.api_max_body_bytes,
    )
    app[CONTEXT] = ctx
    for op in ops:
        app.router.add_route(op.method, op.path, op.handler, name=op.operation_id)
    return app
