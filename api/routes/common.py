"""Helpers shared by the session-scoped handlers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from api.auth import Principal, Role
from api.context import context, principal
from api.errors import Conflict, Forbidden, NotFound
from api.schemas import SessionOut, TranscriptionOut
from store.enums import SessionStatus
from store.records import JobRecord, SessionRecord

# slugs are generated ([a-z2-9]{12}); room names from LiveKit are looked up with the same rule
SLUG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ACTIVE = (SessionStatus.CREATED, SessionStatus.LIVE)


@dataclass(frozen=True, slots=True)
class Scoped:
    """A session the caller may see, with its job."""

    who: Principal
    session: SessionRecord
    job: JobRecord | None

    def require_active(self) -> None:
        if self.session.status not in ACTIVE:
            raise Conflict(
                f"the session is {self.session.status.value.lower()}", code="session_not_active"
            )

    def require_owner_or(self, role: Role) -> None:
        """The session's creator, or a caller with at least ``role``."""
        if self.who.user_id != self.session.created_by and self.who.role < role:
            raise Forbidden("only the session's creator or an admin may do this")


async def scoped_session(request: web.Request) -> Scoped:
    """Authenticate, then load ``{slug}``; another space's session is a 404 like a missing one."""
    who = principal(request)
    slug = request.match_info["slug"]
    found = None
    if SLUG_RE.match(slug):
        found = await context(request).store.sessions.get_session_with_job(slug)
    if found is None or not who.can_see_space(found[0].space_id):
        raise NotFound("no such session")
    return Scoped(who, found[0], found[1])


def session_out(session: SessionRecord, job: JobRecord | None) -> SessionOut:
    return SessionOut(
        slug=session.slug,
        title=session.title,
        space_id=session.space_id,
        created_by=session.created_by,
        status=session.status,
        language=session.language,
        hotwords=session.hotwords,
        initial_prompt=session.initial_prompt,
        model=session.asr_model,
        diarization=session.diarization,
        created_at=session.created_at,
        started_at=session.started_at,
        ended_at=session.ended_at,
        last_activity_at=session.last_activity_at,
        transcription=None
        if job is None
        else TranscriptionOut(
            status=job.status,
            requested_at=job.requested_at,
            claimed_at=job.claimed_at,
            stopped_at=job.stopped_at,
            stop_reason=job.stop_reason,
        ),
    )
