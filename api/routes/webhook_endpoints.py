"""The host app's outbound webhook endpoints, per space, and their delivery log.

Admins of a space (or the admin key naming it with ``X-Space-Id``) manage its endpoints; an
endpoint of another space is a 404 like a missing one. The signing secret appears only in the
replies of create and rotate-secret. Delivery, signatures and the SSRF rules: ``api.webhooks``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from api.auth import Role
from api.context import context, principal
from api.errors import NotFound, ValidationFailed
from api.http import json_model, parse_body, parse_query
from api.openapi import Operation, Reply
from api.schemas import (
    WebhookAttemptOut,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookDeliveryQuery,
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointOut,
    WebhookEndpointSecretOut,
    WebhookEndpointUpdate,
    WebhookSecretRotate,
)
from api.webhooks import check_url
from store.enums import DeliveryStatus
from store.records import WebhookDeliveryRecord, WebhookEndpointRecord

_MAX_ID = 2**63 - 1
ENDPOINT_ID = re.compile(r"^whe_[0-9a-f]{1,28}$")


def _space(request: web.Request) -> str:
    who = principal(request)
    who.require(Role.ADMIN)
    return who.require_space()


def _endpoint_id(request: web.Request) -> str:
    value = request.match_info["endpoint_id"]
    if not ENDPOINT_ID.match(value):
        raise NotFound("no such webhook endpoint")  # cannot exist
    return value


def _checked_url(request: web.Request, url: str) -> str:
    reason = check_url(url, allow_private=context(request).settings.webhook_allow_private_addresses)
    if reason is not None:
        raise ValidationFailed(f"url: {reason}")
    return url


def _out(endpoint: WebhookEndpointRecord) -> WebhookEndpointOut:
    return WebhookEndpointOut.model_validate(endpoint, from_attributes=True)


def _with_secret(endpoint: WebhookEndpointRecord, secret: str) -> WebhookEndpointSecretOut:
    return WebhookEndpointSecretOut(**_out(endpoint).model_dump(), secret=secret)


async def create_endpoint(request: web.Request) -> web.Response:
    space_id = _space(request)
    body = await parse_body(request, WebhookEndpointCreate)
    endpoint, secret = await context(request).store.webhooks.create_endpoint(
        space_id=space_id,
        url=_checked_url(request, body.url),
        description=body.description,
        event_types=list(body.event_types) if body.event_types is not None else None,
        enabled=body.enabled,
    )
    return json_model(_with_secret(endpoint, secret), status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    rows = await context(request).store.webhooks.list_endpoints(_space(request))
    return json_model(WebhookEndpointList(items=[_out(e) for e in rows]))


async def get_endpoint(request: web.Request) -> web.Response:
    space_id = _space(request)
    found = await context(request).store.webhooks.get_endpoint(space_id, _endpoint_id(request))
    if found is None:
        raise NotFound("no such webhook endpoint")
    return json_model(_out(found))


async def update_endpoint(request: web.Request) -> web.Response:
    space_id = _space(request)
    endpoint_id = _endpoint_id(request)
    body = await parse_body(request, WebhookEndpointUpdate)
    values: dict[str, Any] = body.model_dump(exclude_unset=True)
    for name in ("url", "description", "enabled"):
        if name in values and values[name] is None:
            raise ValidationFailed(f"{name}: must not be null")
    if "url" in values:
        _checked_url(request, values["url"])
    updated = await context(request).store.webhooks.update_endpoint(space_id, endpoint_id, values)
    if updated is None:
        raise NotFound("no such webhook endpoint")
    return json_model(_out(updated))


async def delete_endpoint(request: web.Request) -> web.Response:
    space_id = _space(request)
    if not await context(request).store.webhooks.delete_endpoint(space_id, _endpoint_id(request)):
        raise NotFound("no such webhook endpoint")
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    space_id = _space(request)
    endpoint_id = _endpoint_id(request)
    body = await parse_body(request, WebhookSecretRotate)
    ctx = context(request)
    grace = (
        dt.timedelta(minutes=body.grace_minutes)
        if body.grace_minutes is not None
        else dt.timedelta(hours=ctx.settings.webhook_secret_grace_hours)
    )
    rotated = await ctx.store.webhooks.rotate_secret(space_id, endpoint_id, grace=grace)
    if rotated is None:
        raise NotFound("no such webhook endpoint")
    return json_model(_with_secret(*rotated))


def _delivery_out(d: WebhookDeliveryRecord) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        event_id=d.event_id,
        event_type=d.event_type,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.status is DeliveryStatus.PENDING else None,
        created_at=d.created_at,
        finished_at=d.finished_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        attempt_log=[
            WebhookAttemptOut.model_validate(a, from_attributes=True) for a in d.attempt_log
        ],
    )


async def list_deliveries(request: web.Request) -> web.Response:
    space_id = _space(request)
    endpoint_id = _endpoint_id(request)
    query = parse_query(request, WebhookDeliveryQuery)
    before_id = None
    if query.cursor is not None:
        if not query.cursor.isdigit() or not 0 < int(query.cursor) <= _MAX_ID:
            raise ValidationFailed("cursor: invalid cursor")
        before_id = int(query.cursor)
    rows = await context(request).store.webhooks.list_deliveries(
        space_id, endpoint_id, before_id=before_id, limit=query.limit + 1
    )
    if rows is None:
        raise NotFound("no such webhook endpoint")
    page = rows[: query.limit]
    next_cursor = str(page[-1].id) if len(rows) > query.limit else None
    return json_model(
        WebhookDeliveryPage(items=[_delivery_out(d) for d in page], next_cursor=next_cursor)
    )


_E = "/api/webhooks/endpoints"
_ONE = f"{_E}/{{endpoint_id}}"
_ENDPOINT = Reply(200, "The endpoint (without its secret)", WebhookEndpointOut)

OPERATIONS = [
    Operation(
        "POST", _E, create_endpoint, "createWebhookEndpoint",
        "Register an outbound webhook endpoint of the space (admin)", "outbound webhooks",
        replies=(Reply(201, "Created; the reply carries the signing secret, shown only now",
                       WebhookEndpointSecretOut),),
        body=WebhookEndpointCreate,
        description="Events (session.live, session.ended, transcript.ready, usage.updated; "
        "payloads under the document's `webhooks`) are POSTed as JSON with "
        "`Transcriber-Event-Id` (dedupe on it: delivery is at-least-once), "
        "`Transcriber-Event-Type` and `Transcriber-Signature: t=<unix>,v1=<hex>`, the hex "
        "HMAC-SHA256 of `<t>.<raw body>` with the secret. Verify it, and refuse a `t` more "
        "than 5 minutes from your clock. A 2xx acknowledges; anything else is retried with "
        "exponential back-off up to WEBHOOK_MAX_ATTEMPTS. Only http/https URLs; loopback, "
        "private and link-local addresses are refused (see api/README.md).",
    ),
    Operation(
        "GET", _E, list_endpoints, "listWebhookEndpoints",
        "The space's webhook endpoints (admin)", "outbound webhooks",
        replies=(Reply(200, "Endpoints, oldest first", WebhookEndpointList),),
    ),
    Operation(
        "GET", _ONE, get_endpoint, "getWebhookEndpoint", "A webhook endpoint (admin)",
        "outbound webhooks", replies=(_ENDPOINT,),
    ),
    Operation(
        "PATCH", _ONE, update_endpoint, "updateWebhookEndpoint",
        "Change an endpoint's URL, description, event types or enabled flag (admin)",
        "outbound webhooks", replies=(_ENDPOINT,), body=WebhookEndpointUpdate,
        description="A disabled endpoint keeps its pending deliveries; they go out once it is "
        "enabled again. Events that happen while it is disabled are not queued for it.",
    ),
    Operation(
        "DELETE", _ONE, delete_endpoint, "deleteWebhookEndpoint",
        "Delete an endpoint with its pending deliveries and its log (admin)", "outbound webhooks",
        replies=(Reply(204, "Deleted"),),
    ),
    Operation(
        "POST", f"{_ONE}/rotate-secret", rotate_secret, "rotateWebhookSecret",
        "New signing secret; the old one keeps signing during a grace period (admin)",
        "outbound webhooks",
        replies=(Reply(200, "The endpoint with its new secret, shown only now",
                       WebhookEndpointSecretOut),),
        body=WebhookSecretRotate,
        description="During the grace period every delivery carries two v1= signatures, the "
        "new secret's first: a receiver that accepts either switches secrets without losing "
        "an event.",
    ),
    Operation(
        "GET", f"{_ONE}/deliveries", list_deliveries, "listWebhookDeliveries",
        "The endpoint's delivery log, newest first (admin)", "outbound webhooks",
        replies=(Reply(200, "One page of deliveries, each with its attempts",
                       WebhookDeliveryPage),),
        query=WebhookDeliveryQuery,
    ),
]  # fmt: skip
