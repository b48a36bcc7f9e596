"""Outbound webhooks: endpoints per space, the durable outbox, its claims and its delivery log.

Events are written by the transaction of the state change that causes them (:func:`enqueue_event`
is called with that transaction's session): a session that turns LIVE or ENDED commits with
its ``session.live`` / ``session.ended`` rows or not at all. One row per (event, endpoint) in
``webhook_deliveries``; an event for a space without endpoints writes nothing.

Event types and when they are written:

* ``session.live``: the first participant joined (``SessionStore.participant_joined``: the
  LiveKit ``participant_joined`` webhook, participant registration, the bot's own join report);
* ``session.ended``: the session ENDED (the API's ``.../end``, LiveKit's ``room_finished``, the
  inactivity sweeper);
* ``transcript.ready`` then ``usage.updated``: the session ENDED *and* every final is stored.
  Finals are stored by the bot (through its spool); a worker that left the room and saw its
  spool drain records it on the job (``JobStore.finals_stored``: ``finals_attempt`` = the claim's
  attempt). The session's transcript is complete when it ended and its job was never claimed, or
  is STOPPED with ``finals_attempt = attempts`` (the last claim's worker flushed). Both moments
  (session end, finals stored) check it, under the session's row lock, so exactly one of them
  writes the events (``sessions.transcript_ready_at``). A worker that died before flushing never
  reports: :meth:`WebhookStore.overdue_transcripts` (run by the sweeper) writes the events for
  sessions ended longer ago than a timeout, with ``"complete": false``.

Delivery (see ``api.webhooks``): :meth:`WebhookStore.claim_due` takes due PENDING rows with
``FOR UPDATE SKIP LOCKED`` (several API processes run the loop) and pushes ``next_attempt_at``
past a lease, so a loop that dies leaves its rows due again after the lease: nothing is lost,
an event may arrive twice (at-least-once; receivers dedupe on the event id).
:meth:`WebhookStore.record_attempt` logs the attempt and settles the row, fenced by the attempt
number so a late result of a reclaimed row changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import and_, case, delete, exists, func, literal, null, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.base import RowMapper, StoreBase, labelled, sql_interval, sql_time
from store.enums import DeliveryStatus, JobStatus, SessionStatus
from store.models import (
    Segment,
    Session,
    TrackUsage,
    TranscriptionJob,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from store.records import (
    ClaimedDelivery,
    SessionRecord,
    WebhookAttemptRecord,
    WebhookDeliveryRecord,
    WebhookEndpointRecord,
)

__all__ = [
    "EVENT_TYPES",
    "WebhookStore",
    "emit_session_event",
    "emit_transcripts_ready",
    "enqueue_event",
    "new_secret",
]

SESSION_LIVE: Final = "session.live"
SESSION_ENDED: Final = "session.ended"
TRANSCRIPT_READY: Final = "transcript.ready"
USAGE_UPDATED: Final = "usage.updated"
EVENT_TYPES: Final = (SESSION_LIVE, SESSION_ENDED, TRANSCRIPT_READY, USAGE_UPDATED)

_ERROR_LEN: Final = 256

_ENDPOINT_COLUMNS: Final = labelled(
    {
        "id": WebhookEndpoint.id,
        "space_id": WebhookEndpoint.space_id,
        "url": WebhookEndpoint.url,
        "description": WebhookEndpoint.description,
        "event_types": WebhookEndpoint.event_types,
        "enabled": WebhookEndpoint.enabled,
        "previous_secret_expires_at": WebhookEndpoint.previous_secret_expires_at,
        "created_at": WebhookEndpoint.created_at,
        "updated_at": WebhookEndpoint.updated_at,
    }
)
_DELIVERY_COLUMNS: Final = labelled(
    {
        "id": WebhookDelivery.id,
        "event_id": WebhookDelivery.event_id,
        "event_type": WebhookDelivery.event_type,
        "status": WebhookDelivery.status,
        "attempts": WebhookDelivery.attempts,
        "next_attempt_at": WebhookDelivery.next_attempt_at,
        "created_at": WebhookDelivery.created_at,
        "finished_at": WebhookDelivery.finished_at,
        "last_status_code": WebhookDelivery.last_status_code,
        "last_error": WebhookDelivery.last_error,
        "body": WebhookDelivery.body,
    }
)
_endpoint = RowMapper(WebhookEndpointRecord)
_delivery = RowMapper(WebhookDeliveryRecord)
_session = RowMapper(SessionRecord)


def new_secret() -> str:
    """A signing secret (256 bits, URL-safe)."""
    return "whsec_" + secrets.token_urlsafe(32)


def _new_endpoint_id() -> str:
    return "whe_" + secrets.token_hex(12)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def enqueue_event(
    s: AsyncSession,
    *,
    space_id: str,
    event_type: str,
    data: dict[str, Any],
    now: datetime | None = None,
) -> str:
    """Write one event for every enabled endpoint of the space that wants ``event_type``, in
    the caller's transaction; returns the event id (also when no endpoint wants it)."""
    event_id = "evt_" + uuid.uuid4().hex
    created = now or datetime.now(dt.UTC)
    body = json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": created,
            "space_id": space_id,
            "data": data,
        },
        default=_json_default,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    wanted = select(
        literal(event_id),
        WebhookEndpoint.id,
        WebhookEndpoint.space_id,
        literal(event_type),
        literal(body),
        func.now(),  # due now on the database clock, whatever ``now`` the caller simulates
        sql_time(now),
    ).where(
        WebhookEndpoint.space_id == space_id,
        WebhookEndpoint.enabled.is_(True),
        or_(
            WebhookEndpoint.event_types.is_(None),
            WebhookEndpoint.event_types.has_key(event_type),
        ),
    )
    await s.execute(
        pg_insert(WebhookDelivery).from_select(
            [
                "event_id",
                "endpoint_id",
                "space_id",
                "event_type",
                "body",
                "next_attempt_at",
                "created_at",
            ],
            wanted,
        )
    )
    return event_id


def session_data(session: SessionRecord) -> dict[str, Any]:
    """What every session event says about its session."""
    return {
        "slug": session.slug,
        "title": session.title,
        "status": session.status.value,
        "created_by": session.created_by,
        "language": session.language,
        "created_at": session.created_at,
        "started_at": session.started_at,
        "ended_at": session.ended_at,
    }


async def emit_session_event(
    s: AsyncSession,
    event_type: str,
    session: SessionRecord,
    *,
    now: datetime | None = None,
    **extra: Any,
) -> str:
    return await enqueue_event(
        s,
        space_id=session.space_id,
        event_type=event_type,
        data={"session": session_data(session), **extra},
        now=now,
    )


def _bot_done() -> Any:
    """SQL: the session's finals are all stored (no claimed job, or the last claim flushed)."""
    job = TranscriptionJob
    return ~exists().where(
        job.session_id == Session.id,
        job.attempts > 0,
        or_(
            job.status != JobStatus.STOPPED,
            job.finals_attempt.is_(None),
            job.finals_attempt != job.attempts,
        ),
    )


async def emit_transcripts_ready(
    s: AsyncSession,
    session_ids: Sequence[int],
    *,
    now: datetime | None = None,
    force: bool = False,
) -> list[str]:
    """Write ``transcript.ready`` and ``usage.updated`` for each of the sessions that ended,
    has its finals stored (unless ``force``) and has not had them yet; returns their slugs.
    Call it after locking the sessions' rows (an UPDATE of them in this transaction)."""
    if not session_ids:
        return []
    from store.sessions import SESSION_COLUMNS  # store.sessions imports this module

    conditions = [
        Session.id.in_(sorted(set(session_ids))),
        Session.status == SessionStatus.ENDED,
        Session.transcript_ready_at.is_(None),
    ]
    if not force:
        conditions.append(_bot_done())
    rows = (
        await s.execute(
            update(Session)
            .where(*conditions)
            .values(transcript_ready_at=sql_time(now))
            .returning(*SESSION_COLUMNS)
        )
    ).all()
    for row in rows:
        session = _session(row)
        segments = (
            await s.execute(
                select(func.count(), func.coalesce(func.max(Segment.end_ms), 0)).where(
                    Segment.session_id == session.id
                )
            )
        ).one()
        await emit_session_event(
            s,
            TRANSCRIPT_READY,
            session,
            now=now,
            complete=not force,
            segment_count=int(segments[0]),
            duration_ms=int(segments[1]),
            transcript_url=f"/api/sessions/{session.slug}/transcript",
        )
        usage = (
            await s.execute(
                select(
                    TrackUsage.currency,
                    func.count(),
                    func.sum(TrackUsage.audio_seconds),
                    func.sum(TrackUsage.speech_seconds),
                    func.sum(TrackUsage.final_count),
                    func.sum(TrackUsage.billed_minutes),
                    func.sum(TrackUsage.total_cost),
                )
                .where(TrackUsage.session_id == session.id)
                .group_by(TrackUsage.currency)
                .order_by(TrackUsage.currency)
            )
        ).all()
        await emit_session_event(
            s,
            USAGE_UPDATED,
            session,
            now=now,
            usage_url=f"/api/sessions/{session.slug}/usage",
            totals=[
                {
                    "currency": u[0],
                    "tracks": int(u[1]),
                    "audio_seconds": u[2],
                    "speech_seconds": u[3],
                    "final_count": int(u[4]),
                    "billed_minutes": int(u[5]),
                    "total_cost": u[6],
                }
                for u in usage
            ],
        )
    return [row.slug for row in rows]


class WebhookStore(StoreBase):
    """Endpoints (per space), claims and results of deliveries, the delivery log."""

    # -- endpoints ------------------------------------------------------------------------------

    async def create_endpoint(
        self,
        *,
        space_id: str,
        url: str,
        description: str = "",
        event_types: list[str] | None = None,
        enabled: bool = True,
    ) -> tuple[WebhookEndpointRecord, str]:
        """A new endpoint and its signing secret (shown once: only the API's create and
        rotate replies carry it)."""
        secret = new_secret()
        stmt = (
            pg_insert(WebhookEndpoint)
            .values(
                id=_new_endpoint_id(),
                space_id=space_id,
                url=url,
                description=description,
                event_types=event_types if event_types is not None else null(),
                enabled=enabled,
                secret=secret,
            )
            .returning(*_ENDPOINT_COLUMNS)
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).one()
        return _endpoint(row), secret

    async def list_endpoints(self, space_id: str) -> list[WebhookEndpointRecord]:
        stmt = (
            select(*_ENDPOINT_COLUMNS)
            .where(WebhookEndpoint.space_id == space_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        async with self._tx() as s:
            return _endpoint.many((await s.execute(stmt)).all())

    async def get_endpoint(self, space_id: str, endpoint_id: str) -> WebhookEndpointRecord | None:
        stmt = select(*_ENDPOINT_COLUMNS).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.space_id == space_id
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
        return _endpoint(row) if row is not None else None

    async def update_endpoint(
        self, space_id: str, endpoint_id: str, values: dict[str, Any]
    ) -> WebhookEndpointRecord | None:
        """Change ``url``, ``description``, ``event_types`` and/or ``enabled``."""
        allowed = {"url", "description", "event_types", "enabled"}
        if not set(values) <= allowed:
            raise ValueError(f"unknown endpoint fields: {sorted(set(values) - allowed)}")
        changes: dict[str, Any] = {**values, "updated_at": func.now()}
        if "event_types" in changes and changes["event_types"] is None:
            changes["event_types"] = null()
        stmt = (
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.space_id == space_id)
            .values(**changes)
            .returning(*_ENDPOINT_COLUMNS)
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
        return _endpoint(row) if row is not None else None

    async def delete_endpoint(self, space_id: str, endpoint_id: str) -> bool:
        """Delete an endpoint with its pending deliveries and its log."""
        async with self._tx() as s:
            result = await s.execute(
                delete(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.space_id == space_id)
                .returning(WebhookEndpoint.id)
            )
            return result.first() is not None

    async def rotate_secret(
        self,
        space_id: str,
        endpoint_id: str,
        *,
        grace: timedelta,
        now: datetime | None = None,
    ) -> tuple[WebhookEndpointRecord, str] | None:
        """A new secret; the current one stays valid (deliveries carry both signatures) for
        ``grace``. A rotation during a grace period drops the older secret."""
        secret = new_secret()
        ts = sql_time(now)
        stmt = (
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.space_id == space_id)
            .values(
                previous_secret=WebhookEndpoint.secret,
                previous_secret_expires_at=ts + sql_interval(grace),
                secret=secret,
                updated_at=ts,
            )
            .returning(*_ENDPOINT_COLUMNS)
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
        return (_endpoint(row), secret) if row is not None else None

    # -- delivery -------------------------------------------------------------------------------

    async def claim_due(
        self, *, limit: int, lease: timedelta, now: datetime | None = None
    ) -> list[ClaimedDelivery]:
        """Take up to ``limit`` due PENDING deliveries of enabled endpoints (``FOR UPDATE SKIP
        LOCKED``: concurrent loops take different rows), count the attempt and push
        ``next_attempt_at`` ``lease`` ahead: until then no other loop takes them."""
        ts = sql_time(now)
        due = (
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= ts,
                WebhookEndpoint.enabled.is_(True),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
            .with_for_update(of=WebhookDelivery, skip_locked=True)
            .scalar_subquery()
        )
        in_grace = and_(
            WebhookEndpoint.previous_secret.is_not(None),
            WebhookEndpoint.previous_secret_expires_at > ts,
        )
        stmt = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due), WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .values(
                attempts=WebhookDelivery.attempts + 1,
                next_attempt_at=ts + sql_interval(lease),
            )
            .returning(
                WebhookDelivery.id,
                WebhookDelivery.event_id,
                WebhookDelivery.event_type,
                WebhookDelivery.body,
                WebhookDelivery.attempts,
                WebhookEndpoint.id.label("endpoint_id"),
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
                case((in_grace, WebhookEndpoint.previous_secret), else_=null()).label("previous"),
            )
        )
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        return [
            ClaimedDelivery(
                id=r.id,
                event_id=r.event_id,
                event_type=r.event_type,
                body=r.body,
                attempt=r.attempts,
                endpoint_id=r.endpoint_id,
                url=r.url,
                secrets=(r.secret, r.previous) if r.previous else (r.secret,),
            )
            for r in sorted(rows, key=lambda r: r.id)
        ]

    async def record_attempt(
        self,
        claimed: ClaimedDelivery,
        *,
        status_code: int | None,
        latency_ms: int,
        error: str | None,
        delivered: bool,
        retry_in: timedelta | None,
        now: datetime | None = None,
    ) -> DeliveryStatus | None:
        """Log the attempt and settle the delivery: DELIVERED, PENDING again in ``retry_in``,
        or FAILED (``retry_in`` None). None when the claim was lost meanwhile (the row was
        reclaimed after its lease or its endpoint deleted): only the log line is written."""
        ts = sql_time(now)
        short_error = error[:_ERROR_LEN] if error else None
        if delivered:
            status = DeliveryStatus.DELIVERED
        else:
            status = DeliveryStatus.PENDING if retry_in is not None else DeliveryStatus.FAILED
        values: dict[str, Any] = {
            "status": status,
            "last_status_code": status_code,
            "last_error": short_error,
        }
        if status is DeliveryStatus.PENDING:
            assert retry_in is not None
            values["next_attempt_at"] = ts + sql_interval(retry_in)
        else:
            values["finished_at"] = ts
        async with self._tx() as s:
            exists_now = (
                await s.execute(
                    select(WebhookDelivery.id)
                    .where(WebhookDelivery.id == claimed.id)
                    .with_for_update()
                )
            ).first()
            if exists_now is None:
                return None
            await s.execute(
                pg_insert(WebhookAttempt).values(
                    delivery_id=claimed.id,
                    attempt=claimed.attempt,
                    attempted_at=ts,
                    status_code=status_code,
                    latency_ms=latency_ms,
                    error=short_error,
                )
            )
            row = (
                await s.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == claimed.id,
                        WebhookDelivery.attempts == claimed.attempt,
                        WebhookDelivery.status == DeliveryStatus.PENDING,
                    )
                    .values(**values)
                    .returning(WebhookDelivery.id)
                )
            ).first()
        return status if row is not None else None

    async def count_pending(self) -> int:
        """PENDING deliveries, due or backing off (``transcriber_webhook_deliveries_pending``)."""
        stmt = select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING)
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def list_deliveries(
        self,
        space_id: str,
        endpoint_id: str,
        *,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[WebhookDeliveryRecord] | None:
        """The endpoint's deliveries newest first, each with its attempts; None for an endpoint
        not in the space. Pass the last row's id as ``before_id`` for the next page."""
        stmt = select(*_DELIVERY_COLUMNS).where(WebhookDelivery.endpoint_id == endpoint_id)
        if before_id is not None:
            stmt = stmt.where(WebhookDelivery.id < before_id)
        stmt = stmt.order_by(WebhookDelivery.id.desc()).limit(limit)
        async with self._tx() as s:
            owned = (
                await s.execute(
                    select(WebhookEndpoint.id).where(
                        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.space_id == space_id
                    )
                )
            ).first()
            if owned is None:
                return None
            deliveries = _delivery.many((await s.execute(stmt)).all())
            attempts = (
                await s.execute(
                    select(
                        WebhookAttempt.delivery_id,
                        WebhookAttempt.attempt,
                        WebhookAttempt.attempted_at,
                        WebhookAttempt.status_code,
                        WebhookAttempt.latency_ms,
                        WebhookAttempt.error,
                    )
                    .where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
                    .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id)
                )
            ).all()
        by_delivery = {d.id: d for d in deliveries}
        for a in attempts:
            by_delivery[a.delivery_id].attempt_log.append(
                WebhookAttemptRecord(
                    attempt=a.attempt,
                    attempted_at=a.attempted_at,
                    status_code=a.status_code,
                    latency_ms=a.latency_ms,
                    error=a.error,
                )
            )
        return deliveries

    # -- the transcript.ready fallback ------------------------------------------------------------

    async def overdue_transcripts(
        self, *, after: timedelta, now: datetime | None = None, batch_size: int = 100
    ) -> list[str]:
        """``transcript.ready`` (``"complete": false``) and ``usage.updated`` for sessions ended
        more than ``after`` ago whose worker never reported its finals stored (it died); returns
        their slugs. ``SKIP LOCKED``: several sweepers may run it."""
        ts = sql_time(now)
        async with self._tx() as s:
            ids = (
                (
                    await s.execute(
                        select(Session.id)
                        .where(
                            Session.status == SessionStatus.ENDED,
                            Session.transcript_ready_at.is_(None),
                            Session.ended_at < ts - sql_interval(after),
                        )
                        .order_by(Session.ended_at)
                        .limit(batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            return await emit_transcripts_ready(s, list(ids), now=now, force=True)
