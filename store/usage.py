"""Usage and billing: per-track usage rows (open, checkpoint, close), session usage, reports,
space quotas and the limits checked when a track's transcription starts.

* **Billing per participant track.** ``billed_minutes = ceil(audio_seconds / 60)`` per row and
  ``total_cost = billed_minutes x cost_per_minute`` are generated columns (``store.money``
  mirrors them); totals are sums of per-row billed minutes and costs, per currency. The bot
  checkpoints *increments*, so a worker that takes over a session after a crash adds to the row
  instead of overwriting it.
* **Limits.** A track counts as transcribed until closed, unless its last checkpoint is older
  than ``stale_after`` (its worker died). :meth:`UsageStore.open_track_usage` checks the
  per-session and per-user limits and the space's monthly quota (UTC calendar month, tracks by
  start time) under advisory locks, so concurrent starts cannot overshoot.
* **Reports** are built in :mod:`store.reports`; those of one space (the API's) run
  statements built once, without a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Numeric,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import LimitExceeded, NotFound
from store.base import (
    AnySelect,
    RowMapper,
    StoreBase,
    labelled,
    lock_active_session,
    lock_sessions,
    sql_interval,
    sql_time,
    touch_sessions,
    upsert_space_row,
)
from store.models import Participant, Session, SpaceQuota, TrackUsage
from store.money import DEFAULT_CURRENCY, quantize_seconds
from store.records import (
    LimitCheck,
    LimitReason,
    SessionUsage,
    TranscriptionLimits,
    UsageCheckpoint,
    UsageGroupBy,
    UsageRecord,
    UsageReport,
    UsageSummary,
)
from store.reports import (
    SPACE_REPORTS,
    report_statement,
    sum_totals,
    summary_statement,
    totals_of_rows,
    usage_group,
)

__all__ = ["UsageStore"]

_SECONDS: Final = Numeric(14, 3)

# a usage row's columns (with its participant's), labelled as UsageRecord's fields
_USAGE_COLUMNS: Final = labelled(
    {
        "id": TrackUsage.id,
        "session_id": TrackUsage.session_id,
        "participant_id": TrackUsage.participant_id,
        "participant_identity": Participant.identity,
        "participant_name": Participant.name,
        "space_id": TrackUsage.space_id,
        "user_id": TrackUsage.user_id,
        "track_sid": TrackUsage.track_sid,
        "model": TrackUsage.model,
        "audio_seconds": TrackUsage.audio_seconds,
        "speech_seconds": TrackUsage.speech_seconds,
        "partial_count": TrackUsage.partial_count,
        "final_count": TrackUsage.final_count,
        "error_count": TrackUsage.error_count,
        "billed_minutes": TrackUsage.billed_minutes,
        "cost_per_minute": TrackUsage.cost_per_minute,
        "total_cost": TrackUsage.total_cost,
        "currency": TrackUsage.currency,
        "started_at": TrackUsage.started_at,
        "ended_at": TrackUsage.ended_at,
        "updated_at": TrackUsage.updated_at,
    }
)
_usage = RowMapper(UsageRecord)


_QUOTA_OVERRIDE: Final = select(SpaceQuota.monthly_minutes).where(
    SpaceQuota.space_id == bindparam("space_id")
)


class UsageStore(StoreBase):
    """Usage rows, reports, quotas and limits, each method one transaction (or one read)."""

    async def open_track_usage(
        self,
        *,
        session_id: int,
        participant_identity: str,
        track_sid: str,
        model: str,
        cost_per_minute: Decimal,
        currency: str = DEFAULT_CURRENCY,
        limits: TranscriptionLimits | None = None,
        now: datetime | None = None,
    ) -> UsageRecord:
        """Start billing a track (the bot, when it starts transcribing it).

        With ``limits``, the per-session and per-user concurrent-track limits and the space's
        monthly quota are checked atomically (advisory locks on the session and the user), and
        :class:`LimitExceeded` refuses the track. Re-opening the same track (a worker taking the
        session over) reuses its row: counters continue, the first price stays."""
        if cost_per_minute < 0:
            raise ValueError("cost_per_minute must not be negative")
        async with self._tx() as s:
            session_row = await lock_active_session(s, session_id, Session.space_id)
            participant = (
                await s.execute(
                    select(Participant.id, Participant.user_id).where(
                        Participant.session_id == session_id,
                        Participant.identity == participant_identity,
                    )
                )
            ).first()
            if participant is None:
                raise NotFound("participant not found")
            existing = (
                await s.execute(
                    select(TrackUsage.id, TrackUsage.ended_at).where(
                        TrackUsage.session_id == session_id, TrackUsage.track_sid == track_sid
                    )
                )
            ).first()
            if limits is not None and (existing is None or existing.ended_at is not None):
                await s.execute(
                    select(func.pg_advisory_xact_lock(_lock_key(f"session:{session_id}")))
                )
                if participant.user_id is not None:
                    await s.execute(
                        select(func.pg_advisory_xact_lock(_lock_key(f"user:{participant.user_id}")))
                    )
                check = await self._limit_check(
                    s,
                    session_id=session_id,
                    user_id=participant.user_id,
                    space_id=session_row.space_id,
                    limits=limits,
                    now=now,
                )
                if not check.allowed:
                    raise LimitExceeded(check)
            ts = sql_time(now)
            stmt = pg_insert(TrackUsage).values(
                session_id=session_id,
                participant_id=participant.id,
                space_id=session_row.space_id,
                user_id=participant.user_id,
                track_sid=track_sid,
                model=model,
                cost_per_minute=cost_per_minute,
                currency=currency,
                started_at=ts,
                updated_at=ts,
            )
            upsert = stmt.on_conflict_do_update(
                index_elements=[TrackUsage.session_id, TrackUsage.track_sid],
                set_={"ended_at": null(), "updated_at": ts, "model": stmt.excluded.model},
            ).returning(TrackUsage.id)
            usage_id = (await s.execute(upsert)).scalar_one()
            await touch_sessions(s, [session_id], now)
            row = (await s.execute(_usage_select().where(TrackUsage.id == usage_id))).one()
        return _usage(row)

    async def checkpoint_usage(
        self, checkpoints: Sequence[UsageCheckpoint], *, now: datetime | None = None
    ) -> int:
        """Add each checkpoint's increments to its track's row (``ended`` also closes it);
        returns how many rows were found. Unknown tracks (session deleted) are skipped."""
        if not checkpoints:
            return 0
        for cp in checkpoints:
            if (
                min(cp.audio_seconds, cp.speech_seconds) < 0
                or min(cp.partial_count, cp.final_count, cp.error_count) < 0
            ):
                raise ValueError("usage increments must not be negative")
        ts = sql_time(now)
        stmt = (
            update(TrackUsage)
            .where(
                TrackUsage.session_id == bindparam("b_session_id"),
                TrackUsage.track_sid == bindparam("b_track_sid"),
            )
            .values(
                audio_seconds=TrackUsage.audio_seconds + bindparam("b_audio", type_=_SECONDS),
                speech_seconds=TrackUsage.speech_seconds + bindparam("b_speech", type_=_SECONDS),
                partial_count=TrackUsage.partial_count + bindparam("b_partials"),
                final_count=TrackUsage.final_count + bindparam("b_finals"),
                error_count=TrackUsage.error_count + bindparam("b_errors"),
                updated_at=ts,
                ended_at=case(
                    (
                        bindparam("b_ended", type_=Boolean),
                        func.coalesce(TrackUsage.ended_at, ts),
                    ),
                    else_=TrackUsage.ended_at,
                ),
            )
            .returning(TrackUsage.session_id)
        )
        found: list[int] = []
        async with self._tx() as s:
            # the sessions' rows first, in id order: ending a session locks its row, then its
            # usage rows; the opposite order here would deadlock with it
            await lock_sessions(s, {cp.session_id for cp in checkpoints})
            for cp in checkpoints:
                params = {
                    "b_session_id": cp.session_id,
                    "b_track_sid": cp.track_sid,
                    "b_audio": quantize_seconds(cp.audio_seconds),
                    "b_speech": quantize_seconds(cp.speech_seconds),
                    "b_partials": cp.partial_count,
                    "b_finals": cp.final_count,
                    "b_errors": cp.error_count,
                    "b_ended": cp.ended,
                }
                found.extend(
                    sid for sid in (await s.execute(stmt, params)).scalars() if sid is not None
                )
            await touch_sessions(s, found, now)
        return len(found)

    async def close_track_usage(
        self, session_id: int, track_sid: str, *, now: datetime | None = None
    ) -> bool:
        """Stop billing a track (unsubscribed, muted for good, participant left)."""
        closing = UsageCheckpoint(session_id=session_id, track_sid=track_sid, ended=True)
        return await self.checkpoint_usage([closing], now=now) == 1

    async def session_usage(self, session_id: int) -> SessionUsage:
        """Usage rows of one session (one per participant track) and their totals."""
        stmt = (
            _usage_select()
            .where(TrackUsage.session_id == session_id)
            .order_by(TrackUsage.started_at, TrackUsage.id)
        )
        async with self._tx() as s:
            rows = _usage.many((await s.execute(stmt)).all())
        return SessionUsage(rows=rows, totals=totals_of_rows(rows))

    async def usage_report(
        self,
        *,
        start: datetime,
        end: datetime,
        group_by: UsageGroupBy,
        space_id: str | None = None,
        user_id: str | None = None,
        session_id: int | None = None,
        tz: str = "UTC",
    ) -> UsageReport:
        """Usage of tracks that started in ``[start, end)``, filtered by space, user and/or
        session, grouped by day (in ``tz``), participant, user, session or space. Each group and
        the report's totals (per currency) sum per-track billed minutes and costs."""
        _check_window(start, end)
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        if (
            space_id is not None
            and session_id is None
            and tz == "UTC"
            and group_by in SPACE_REPORTS
        ):
            # the API's report of one space (optionally one user): a statement built once, run
            # without a transaction
            params: dict[str, Any] = {"start": start, "end": end, "space_id": space_id}
            if user_id is not None:
                params["user_id"] = user_id
            async with self._read() as conn:
                rows = (
                    await conn.execute(SPACE_REPORTS[group_by][user_id is not None], params)
                ).all()
        else:
            # rendered inline (quoted) so SELECT and GROUP BY carry the very same expression
            zone: Any = bindparam("tz", tz, literal_execute=True)
            where = _track_filter(start, end, space_id, user_id, session_id)
            stmt = report_statement(group_by, zone, where)
            async with self._tx() as s:
                rows = (await s.execute(stmt)).all()
        groups = [usage_group(group_by, row) for row in rows]
        return UsageReport(
            group_by=group_by,
            start=start,
            end=end,
            groups=groups,
            totals=sum_totals(g.totals for g in groups),
        )

    async def usage_summary(
        self,
        *,
        start: datetime,
        end: datetime,
        space_id: str | None = None,
        user_id: str | None = None,
        session_id: int | None = None,
    ) -> list[UsageSummary]:
        """Totals of the tracks that started in ``[start, end)`` (filtered like
        :meth:`usage_report`), per currency: sessions, tracks, billed minutes, cost (Decimal)
        and the average length of the sessions that ended."""
        _check_window(start, end)
        where = _track_filter(start, end, space_id, user_id, session_id)
        async with self._read() as conn:
            rows = (await conn.execute(summary_statement(where))).all()
        return [
            UsageSummary(
                currency=r.currency,
                sessions=int(r.sessions),
                tracks=int(r.tracks),
                audio_seconds=r.audio_seconds,
                billed_minutes=int(r.billed_minutes),
                total_cost=r.total_cost,
                average_session_seconds=r.average_session_seconds,
            )
            for r in rows
        ]

    # -- limits and quotas ---------------------------------------------------------------------

    async def check_transcription_allowed(
        self,
        *,
        session_id: int,
        limits: TranscriptionLimits,
        user_id: str | None = None,
        now: datetime | None = None,
    ) -> LimitCheck:
        """Would one more track be allowed (e.g. before ``POST .../transcription/start``)?
        Advisory: :meth:`open_track_usage` re-checks atomically."""
        async with self._tx() as s:
            space_id = (
                await s.execute(select(Session.space_id).where(Session.id == session_id))
            ).scalar_one_or_none()
            if space_id is None:
                raise NotFound("session not found")
            return await self._limit_check(
                s, session_id=session_id, user_id=user_id, space_id=space_id, limits=limits, now=now
            )

    async def monthly_minutes_used(self, space_id: str, *, now: datetime | None = None) -> int:
        """Billed minutes of tracks of ``space_id`` started in the current UTC calendar month."""
        async with self._tx() as s:
            return int((await s.execute(_month_minutes(space_id, sql_time(now)))).scalar_one())

    async def set_space_quota(
        self, space_id: str, monthly_minutes: int | None, *, now: datetime | None = None
    ) -> None:
        """Override the default monthly quota of one space (None = unlimited)."""
        if monthly_minutes is not None and monthly_minutes < 0:
            raise ValueError("monthly_minutes must not be negative")
        stmt = upsert_space_row(SpaceQuota, space_id, {"monthly_minutes": monthly_minutes}, now)
        async with self._tx() as s:
            await s.execute(stmt)

    async def clear_space_quota(self, space_id: str) -> None:
        """Back to the default quota."""
        async with self._tx() as s:
            await s.execute(delete(SpaceQuota).where(SpaceQuota.space_id == space_id))

    async def space_quota_override(self, space_id: str) -> tuple[bool, int | None]:
        """``(True, minutes)`` when the space has its own quota (None = unlimited), else
        ``(False, None)`` (:meth:`effective_quota` folds "no row" and the default together, so
        a caller could not say where an effective quota comes from)."""
        async with self._read() as conn:
            row = (await conn.execute(_QUOTA_OVERRIDE, {"space_id": space_id})).first()
        return (False, None) if row is None else (True, row.monthly_minutes)

    async def effective_quota(self, space_id: str, *, default: int | None) -> int | None:
        """The space's override if it has one, else ``default`` (None = unlimited)."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    select(SpaceQuota.monthly_minutes).where(SpaceQuota.space_id == space_id)
                )
            ).first()
        return default if row is None else row.monthly_minutes

    @staticmethod
    async def _limit_check(
        s: AsyncSession,
        *,
        session_id: int,
        user_id: str | None,
        space_id: str,
        limits: TranscriptionLimits,
        now: datetime | None,
    ) -> LimitCheck:
        ts = sql_time(now)
        fresh = TrackUsage.updated_at > ts - sql_interval(limits.stale_after)
        active = and_(TrackUsage.ended_at.is_(None), fresh)
        session_tracks = (
            select(func.count())
            .select_from(TrackUsage)
            .where(TrackUsage.session_id == session_id, active)
            .scalar_subquery()
        )
        user_tracks: Any = literal(None)
        if user_id is not None:
            user_tracks = (
                select(func.count())
                .select_from(TrackUsage)
                .where(TrackUsage.user_id == user_id, active)
                .scalar_subquery()
            )
        override = (
            select(SpaceQuota.monthly_minutes, literal(True).label("present"))
            .where(SpaceQuota.space_id == space_id)
            .subquery()
        )
        row = (
            await s.execute(
                select(
                    session_tracks.label("session_tracks"),
                    user_tracks.label("user_tracks"),
                    _month_minutes(space_id, ts).scalar_subquery().label("used"),
                    select(override.c.monthly_minutes).scalar_subquery().label("quota"),
                    select(override.c.present).scalar_subquery().label("has_override"),
                )
            )
        ).one()
        quota = row.quota if row.has_override else limits.monthly_minutes_quota
        used = int(row.used)
        reason: LimitReason | None = None
        if (
            limits.max_tracks_per_session is not None
            and row.session_tracks >= limits.max_tracks_per_session
        ):
            reason = LimitReason.SESSION_TRACKS
        elif (
            limits.max_tracks_per_user is not None
            and row.user_tracks is not None
            and row.user_tracks >= limits.max_tracks_per_user
        ):
            reason = LimitReason.USER_TRACKS
        elif quota is not None and used >= quota:
            reason = LimitReason.MONTHLY_QUOTA
        return LimitCheck(
            reason=reason,
            session_tracks=int(row.session_tracks),
            user_tracks=None if row.user_tracks is None else int(row.user_tracks),
            used_minutes=used,
            quota_minutes=quota,
        )

    # -- transcription jobs --------------------------------------------------------------------


def _lock_key(name: str) -> ColumnElement[int]:
    return func.hashtextextended(literal(f"transcriber:{name}"), 0)


def _month_minutes(space_id: str, ts: ColumnElement[datetime]) -> Select[int]:
    month = func.date_trunc("month", ts, "UTC")
    return select(func.coalesce(func.sum(TrackUsage.billed_minutes), 0)).where(
        TrackUsage.space_id == space_id,
        TrackUsage.started_at >= month,
        TrackUsage.started_at < month + text("interval '1 month'"),
    )


def _usage_select() -> AnySelect:
    return (
        select(*_USAGE_COLUMNS)
        .select_from(TrackUsage)
        .outerjoin(Participant, Participant.id == TrackUsage.participant_id)
    )


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        raise ValueError("end must be after start")


def _track_filter(
    start: datetime,
    end: datetime,
    space_id: str | None,
    user_id: str | None,
    session_id: int | None,
) -> list[ColumnElement[bool]]:
    """The WHERE of reports and summaries: tracks started in ``[start, end)``, filtered."""
    where = [TrackUsage.started_at >= start, TrackUsage.started_at < end]
    if space_id is not None:
        where.append(TrackUsage.space_id == space_id)
    if user_id is not None:
        where.append(TrackUsage.user_id == user_id)
    if session_id is not None:
        where.append(TrackUsage.session_id == session_id)
    return where
