"""Sessions (create, read, list, update, end, delete), the lifecycle sweeper, participants, and
the per-space settings (``space_settings``: who may end a session).

Deleting a session deletes its participants, segments and job; its usage rows stay as billing
history: closed, detached (``session_id``/``participant_id`` NULL), keeping ``space_id`` and
``user_id``, so space and user reports over past months do not change. Activity (joins, leaves,
finals, usage checkpoints) feeds the sweeper, which ends LIVE sessions without any and expires
CREATED ones never started. Turning LIVE and ENDED write their outbound webhook events
(``session.live``, ``session.ended``, then ``transcript.ready`` when no worker has finals left to
store) in the same transaction (:mod:`store.webhooks`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, literal_column, null, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound, SlugTaken
from store.base import (
    AnySelect,
    RowMapper,
    StoreBase,
    labelled,
    lock_sessions,
    sql_interval,
    sql_time,
    touch_sessions,
    upsert_space_row,
)
from store.enums import DiarizationMode, JobStatus, ParticipantRole, SessionStatus
from store.jobs import job_columns, notify_jobs
from store.models import (
    Participant,
    Segment,
    Session,
    SpaceSettings,
    TrackUsage,
    TranscriptionJob,
    search_config,
)
from store.records import (
    JobRecord,
    ParticipantRecord,
    SessionCursor,
    SessionRecord,
    SpaceSettingsRecord,
    SweepResult,
)
from store.webhooks import (
    SESSION_ENDED,
    SESSION_LIVE,
    emit_session_event,
    emit_transcripts_ready,
)

__all__ = ["SESSION_COLUMNS", "SessionStore", "SessionWithJob", "new_slug"]

# a session and its transcription job (None when never requested)
SessionWithJob = tuple[SessionRecord, JobRecord | None]

_SLUG_ALPHABET: Final = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1
_SLUG_LEN: Final = 12
_UNSET: Final = object()

# a session's columns labelled as SessionRecord's fields
SESSION_COLUMNS: Final = labelled(
    {
        "id": Session.id,
        "slug": Session.slug,
        "title": Session.title,
        "space_id": Session.space_id,
        "created_by": Session.created_by,
        "status": Session.status,
        "language": Session.language,
        "created_at": Session.created_at,
        "started_at": Session.started_at,
        "ended_at": Session.ended_at,
        "last_activity_at": Session.last_activity_at,
        "hotwords": Session.hotwords,
        "initial_prompt": Session.initial_prompt,
        "asr_model": Session.asr_model,
        "diarization": Session.diarization,
        "transcript_version": Session.transcript_version,
        "diarized_at": Session.diarized_at,
    }
)
_PARTICIPANT_COLUMNS: Final = labelled(
    {
        "id": Participant.id,
        "session_id": Participant.session_id,
        "identity": Participant.identity,
        "name": Participant.name,
        "user_id": Participant.user_id,
        "role": Participant.role,
        "joined_at": Participant.joined_at,
        "left_at": Participant.left_at,
    }
)
_session = RowMapper(SessionRecord)
_participant = RowMapper(ParticipantRecord)
_job = RowMapper(JobRecord, "job_")


def new_slug() -> str:
    """A random, URL- and room-name-safe session slug (about 60 bits)."""
    return "".join(secrets.choice(_SLUG_ALPHABET) for _ in range(_SLUG_LEN))


async def _reindex_segments(s: AsyncSession, session_id: int, language: str | None) -> None:
    """Give a session's stored segments the text search configuration of its (new) language;
    the generated ``search_vector`` follows. One UPDATE per detected language of its segments,
    touching only the rows whose configuration changes."""
    detected = (
        await s.execute(select(Segment.language).where(Segment.session_id == session_id).distinct())
    ).scalars()
    for segment_language in list(detected):
        config = search_config(language, segment_language)
        await s.execute(
            update(Segment)
            .where(
                Segment.session_id == session_id,
                Segment.language.is_not_distinct_from(segment_language),
                Segment.search_config != literal_column(f"'{config}'::regconfig"),
            )
            .values(search_config=literal_column(f"'{config}'::regconfig"))
        )


class SessionStore(StoreBase):
    """Sessions, the sweeper and participants, each method one transaction."""

    async def create_session(
        self,
        *,
        space_id: str,
        created_by: str | None,
        title: str = "",
        language: str | None = None,
        hotwords: str | None = None,
        initial_prompt: str | None = None,
        asr_model: str | None = None,
        diarization: DiarizationMode = DiarizationMode.OFF,
        slug: str | None = None,
        now: datetime | None = None,
    ) -> SessionRecord:
        """Insert a CREATED session. A given ``slug`` that exists raises :class:`SlugTaken`;
        without one a random slug is drawn (and redrawn on the rare collision)."""
        for _ in range(1 if slug is not None else 5):
            candidate = slug if slug is not None else new_slug()
            stmt = (
                pg_insert(Session)
                .values(
                    slug=candidate,
                    title=title,
                    space_id=space_id,
                    created_by=created_by,
                    language=language,
                    hotwords=hotwords,
                    initial_prompt=initial_prompt,
                    asr_model=asr_model,
                    diarization=diarization,
                    created_at=sql_time(now),
                    last_activity_at=sql_time(now),
                )
                .on_conflict_do_nothing(index_elements=[Session.slug])
                .returning(*SESSION_COLUMNS)
            )
            async with self._tx() as s:
                row = (await s.execute(stmt)).one_or_none()
            if row is not None:
                return _session(row)
        raise SlugTaken("a session with this slug exists")

    async def get_session(self, slug: str) -> SessionRecord | None:
        async with self._tx() as s:
            row = (await s.execute(select(*SESSION_COLUMNS).where(Session.slug == slug))).first()
        return _session(row) if row is not None else None

    async def get_session_by_id(self, session_id: int) -> SessionRecord | None:
        async with self._tx() as s:
            row = (
                await s.execute(select(*SESSION_COLUMNS).where(Session.id == session_id))
            ).first()
        return _session(row) if row is not None else None

    async def list_sessions(
        self,
        *,
        space_id: str | None = None,
        created_by: str | None = None,
        status: SessionStatus | None = None,
        include_expired: bool = True,
        before: SessionCursor | None = None,
        limit: int = 50,
    ) -> list[SessionRecord]:
        """Sessions newest first; pass the last row as ``before`` for the next page. Served by
        the (space_id | created_by, created_at, id) indexes."""
        stmt = _filter_sessions(
            select(*SESSION_COLUMNS),
            space_id=space_id,
            created_by=created_by,
            status=status,
            include_expired=include_expired,
            before=before,
        ).limit(limit)
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        return _session.many(rows)

    async def list_sessions_with_jobs(
        self,
        *,
        space_id: str | None = None,
        created_by: str | None = None,
        status: SessionStatus | None = None,
        include_expired: bool = True,
        before: SessionCursor | None = None,
        limit: int = 50,
    ) -> list[SessionWithJob]:
        """:meth:`list_sessions` with each session's job, in one query."""
        stmt = _filter_sessions(
            select(*SESSION_COLUMNS, *job_columns("job_")).outerjoin(
                TranscriptionJob, TranscriptionJob.session_id == Session.id
            ),
            space_id=space_id,
            created_by=created_by,
            status=status,
            include_expired=include_expired,
            before=before,
        ).limit(limit)
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        return [_session_with_job(row) for row in rows]

    async def get_session_with_job(self, slug: str) -> SessionWithJob | None:
        stmt = (
            select(*SESSION_COLUMNS, *job_columns("job_"))
            .outerjoin(TranscriptionJob, TranscriptionJob.session_id == Session.id)
            .where(Session.slug == slug)
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
        return _session_with_job(row) if row is not None else None

    async def update_session(
        self,
        session_id: int,
        *,
        title: str | None = None,
        language: Any = _UNSET,
        hotwords: Any = _UNSET,
        initial_prompt: Any = _UNSET,
        asr_model: Any = _UNSET,
        diarization: DiarizationMode | None = None,
    ) -> SessionRecord | None:
        """Change the title and/or speech settings; an omitted argument keeps the stored value,
        None clears a nullable one (``language=None``: automatic detection, ``asr_model=None``:
        the worker's default model). The bot reads them when a track's pipeline starts."""
        values: dict[str, Any] = {}
        if title is not None:
            values["title"] = title
        if diarization is not None:
            values["diarization"] = diarization
        for name, value in (
            ("language", language),
            ("hotwords", hotwords),
            ("initial_prompt", initial_prompt),
            ("asr_model", asr_model),
        ):
            if value is not _UNSET:
                values[name] = value
        if not values:
            return await self.get_session_by_id(session_id)
        stmt = (
            update(Session)
            .where(Session.id == session_id)
            .values(**values)
            .returning(*SESSION_COLUMNS)
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
            if row is not None and "language" in values:
                await _reindex_segments(s, session_id, row.language)
        return _session(row) if row is not None else None

    async def end_session(
        self, session_id: int, *, reason: str = "session_ended", now: datetime | None = None
    ) -> SessionRecord | None:
        """CREATED/LIVE -> ENDED; also stops its job and closes its open usage rows. Idempotent:
        an ENDED or EXPIRED session is returned unchanged. None if it does not exist."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(Session)
                    .where(
                        Session.id == session_id,
                        Session.status.in_([SessionStatus.CREATED, SessionStatus.LIVE]),
                    )
                    .values(status=SessionStatus.ENDED, ended_at=sql_time(now))
                    .returning(*SESSION_COLUMNS)
                )
            ).first()
            if row is None:
                row = (
                    await s.execute(select(*SESSION_COLUMNS).where(Session.id == session_id))
                ).first()
                return _session(row) if row is not None else None
            await self._close_session_work(s, [session_id], reason=reason, now=now)
            ended = _session(row)
            await emit_session_event(s, SESSION_ENDED, ended, now=now, reason=reason)
            await emit_transcripts_ready(s, [session_id], now=now)
        return ended

    async def delete_session(self, session_id: int, *, now: datetime | None = None) -> bool:
        """Delete a session with its participants, segments and job. Its usage rows remain as
        billing history: closed if still open, detached (session_id/participant_id NULL)."""
        async with self._tx() as s:
            await lock_sessions(s, [session_id])  # as end_session: the session, then its usage
            await s.execute(
                update(TrackUsage)
                .where(TrackUsage.session_id == session_id, TrackUsage.ended_at.is_(None))
                .values(ended_at=sql_time(now))
            )
            result = await s.execute(
                delete(Session).where(Session.id == session_id).returning(Session.id)
            )
            return result.first() is not None

    async def touch_session(self, session_id: int, *, now: datetime | None = None) -> None:
        """Record activity (the sweeper ends LIVE sessions without any for a while)."""
        async with self._tx() as s:
            await touch_sessions(s, [session_id], now)

    async def sweep_sessions(
        self,
        *,
        inactive_after: timedelta,
        expire_after: timedelta,
        now: datetime | None = None,
        batch_size: int = 500,
    ) -> SweepResult:
        """The lifecycle sweeper: LIVE sessions without activity (joins, leaves, finals, usage
        checkpoints) for ``inactive_after`` end; CREATED sessions older than ``expire_after``
        expire. Their jobs stop and open usage rows close. ``SKIP LOCKED`` lets several API
        replicas sweep at once; call again while a result is full (``batch_size`` rows)."""
        ts = sql_time(now)
        async with self._tx() as s:
            live = (
                select(Session.id)
                .where(
                    Session.status == SessionStatus.LIVE,
                    Session.last_activity_at < ts - sql_interval(inactive_after),
                )
                .order_by(Session.last_activity_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            ended = (
                await s.execute(
                    update(Session)
                    .where(Session.id.in_(live))
                    .values(status=SessionStatus.ENDED, ended_at=ts)
                    .returning(*SESSION_COLUMNS)
                )
            ).all()
            pending = (
                select(Session.id)
                .where(
                    Session.status == SessionStatus.CREATED,
                    Session.created_at < ts - sql_interval(expire_after),
                )
                .order_by(Session.created_at)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            expired = (
                await s.execute(
                    update(Session)
                    .where(Session.id.in_(pending))
                    .values(status=SessionStatus.EXPIRED)
                    .returning(Session.id, Session.slug)
                )
            ).all()
            await self._close_session_work(s, [r.id for r in ended], reason="inactive", now=now)
            await self._close_session_work(s, [r.id for r in expired], reason="expired", now=now)
            for r in ended:
                await emit_session_event(s, SESSION_ENDED, _session(r), now=now, reason="inactive")
            await emit_transcripts_ready(s, [r.id for r in ended], now=now)
        return SweepResult(ended=[r.slug for r in ended], expired=[r.slug for r in expired])

    async def _close_session_work(
        self, s: AsyncSession, session_ids: Sequence[int], *, reason: str, now: datetime | None
    ) -> None:
        if not session_ids:
            return
        ts = sql_time(now)
        await s.execute(
            update(TrackUsage)
            .where(TrackUsage.session_id.in_(session_ids), TrackUsage.ended_at.is_(None))
            .values(ended_at=ts)
        )
        stopped = (
            await s.execute(
                update(TranscriptionJob)
                .where(
                    TranscriptionJob.session_id.in_(session_ids),
                    TranscriptionJob.status != JobStatus.STOPPED,
                )
                .values(
                    status=JobStatus.STOPPED,
                    stopped_at=ts,
                    stop_reason=reason,
                    worker_id=None,
                    lease_expires_at=None,
                )
                .returning(TranscriptionJob.id, TranscriptionJob.session_id)
            )
        ).all()
        await notify_jobs(s, "stopped", [(r.id, r.session_id) for r in stopped])

    # -- participants --------------------------------------------------------------------------

    async def participant_joined(
        self,
        session_id: int,
        identity: str,
        *,
        name: str | None = None,
        user_id: str | None = None,
        role: ParticipantRole | None = None,
        now: datetime | None = None,
    ) -> ParticipantRecord:
        """Upsert on join (webhook, registration or the bot): insert, or on a rejoin clear
        ``left_at`` and update the given fields (None keeps the stored value; ``joined_at`` stays
        the first join). The first join turns a CREATED session LIVE. Do not call it for the
        bot's own (agent) participant. Raises :class:`NotFound` for an unknown session."""
        ts = sql_time(now)
        async with self._tx() as s:
            found = (
                await s.execute(
                    select(Session.id)
                    .where(Session.id == session_id)
                    .with_for_update(key_share=True)
                )
            ).scalar_one_or_none()
            if found is None:
                raise NotFound("session not found")
            stmt = pg_insert(Participant).values(
                session_id=session_id,
                identity=identity,
                name=name or "",
                user_id=user_id,
                role=role or ParticipantRole.GUEST,
                joined_at=ts,
            )
            upsert = stmt.on_conflict_do_update(
                index_elements=[Participant.session_id, Participant.identity],
                set_={
                    "left_at": null(),
                    "name": stmt.excluded.name if name is not None else Participant.name,
                    "user_id": func.coalesce(stmt.excluded.user_id, Participant.user_id),
                    "role": stmt.excluded.role if role is not None else Participant.role,
                },
            ).returning(*_PARTICIPANT_COLUMNS)
            row = (await s.execute(upsert)).one()
            record = _participant(row)
            went_live = (
                await s.execute(
                    update(Session)
                    .where(Session.id == session_id, Session.status == SessionStatus.CREATED)
                    .values(status=SessionStatus.LIVE, started_at=ts, last_activity_at=ts)
                    .returning(*SESSION_COLUMNS)
                )
            ).first()
            if went_live is None:
                await touch_sessions(s, [session_id], now)
            else:
                await emit_session_event(s, SESSION_LIVE, _session(went_live), now=now)
            if record.user_id is not None:
                # usage opened before the participant registered gets its user for billing
                await s.execute(
                    update(TrackUsage)
                    .where(TrackUsage.participant_id == record.id, TrackUsage.user_id.is_(None))
                    .values(user_id=record.user_id)
                )
        return record

    async def participant_left(
        self, session_id: int, identity: str, *, now: datetime | None = None
    ) -> ParticipantRecord | None:
        """Set ``left_at``; None if the participant is unknown."""
        async with self._tx() as s:
            row = (
                await s.execute(
                    update(Participant)
                    .where(Participant.session_id == session_id, Participant.identity == identity)
                    .values(left_at=sql_time(now))
                    .returning(*_PARTICIPANT_COLUMNS)
                )
            ).first()
            if row is not None:
                await touch_sessions(s, [session_id], now)
        return _participant(row) if row is not None else None

    async def list_participants(
        self, session_id: int, *, active: bool | None = None
    ) -> list[ParticipantRecord]:
        """Participants in join order; ``active`` True: only those in the room now (not left),
        False: only those who left, None: all."""
        stmt = select(*_PARTICIPANT_COLUMNS).where(Participant.session_id == session_id)
        if active is not None:
            stmt = stmt.where(
                Participant.left_at.is_(None) if active else Participant.left_at.is_not(None)
            )
        stmt = stmt.order_by(Participant.joined_at, Participant.id)
        async with self._tx() as s:
            rows = (await s.execute(stmt)).all()
        return _participant.many(rows)

    async def get_participant(self, session_id: int, identity: str) -> ParticipantRecord | None:
        stmt = select(*_PARTICIPANT_COLUMNS).where(
            Participant.session_id == session_id, Participant.identity == identity
        )
        async with self._tx() as s:
            row = (await s.execute(stmt)).first()
        return _participant(row) if row is not None else None

    # -- space settings ------------------------------------------------------------------------

    async def get_space_settings(self, space_id: str) -> SpaceSettingsRecord:
        """The space's switches; the defaults when it never set any."""
        stmt = select(SpaceSettings.participants_may_end).where(SpaceSettings.space_id == space_id)
        async with self._tx() as s:
            may_end = (await s.execute(stmt)).scalar_one_or_none()
        return SpaceSettingsRecord(space_id, participants_may_end=bool(may_end))

    async def set_space_settings(
        self, space_id: str, *, participants_may_end: bool, now: datetime | None = None
    ) -> SpaceSettingsRecord:
        stmt = upsert_space_row(
            SpaceSettings, space_id, {"participants_may_end": participants_may_end}, now
        )
        async with self._tx() as s:
            await s.execute(stmt)
        return SpaceSettingsRecord(space_id, participants_may_end=participants_may_end)


def _filter_sessions(
    stmt: AnySelect,
    *,
    space_id: str | None,
    created_by: str | None,
    status: SessionStatus | None,
    include_expired: bool,
    before: SessionCursor | None,
) -> AnySelect:
    if space_id is not None:
        stmt = stmt.where(Session.space_id == space_id)
    if created_by is not None:
        stmt = stmt.where(Session.created_by == created_by)
    if status is not None:
        stmt = stmt.where(Session.status == status)
    if not include_expired:
        stmt = stmt.where(Session.status != SessionStatus.EXPIRED)
    if before is not None:
        stmt = stmt.where(
            tuple_(Session.created_at, Session.id) < tuple_(before.created_at, before.id)
        )
    return stmt.order_by(Session.created_at.desc(), Session.id.desc())


def _session_with_job(row: Any) -> SessionWithJob:
    job = _job(row) if row.job_id is not None else None
    return _session(row), job
