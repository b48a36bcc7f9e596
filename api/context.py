"""What every handler needs, built once per app and stored under :data:`CONTEXT`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import Authenticator, Principal
from api.livekit import LiveKitGateway
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from store.records import TranscriptionLimits
from store.stores import Store

if TYPE_CHECKING:
    from api.ratelimit import RateLimits


@dataclass(slots=True)
class ApiContext:
    settings: ApiSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    store: Store
    authenticator: Authenticator
    livekit: LiveKitGateway
    metrics: ApiMetrics
    openapi: dict[str, Any]
    rate_limits: RateLimits
    # CPU-bound renders (DOCX), one at a time per process, off the event loop
    render_executor: ThreadPoolExecutor

    @property
    def limits(self) -> TranscriptionLimits:
        """The settings' limits (0 = none) as the stores take them."""
        return self.settings.transcription_limits()


CONTEXT: web.AppKey[ApiContext] = web.AppKey("api_context", ApiContext)
_PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("api_principal", Principal)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def principal(request: web.Request) -> Principal:
    """The authenticated caller (authenticated once per request, on first use)."""
    if _PRINCIPAL in request:
        return request[_PRINCIPAL]
    found = context(request).authenticator.authenticate(request)
    request[_PRINCIPAL] = found
    return found
